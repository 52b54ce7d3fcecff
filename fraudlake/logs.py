"""Logging for every entry point: one format, one level flag, librdkafka's log routed in.

Library modules log through ``logging.getLogger(__name__)`` and never print. Entry points get
``--log-level`` (default env ``FRAUDLAKE_LOG_LEVEL``, else ``INFO``) from
``fraudlake.cli.ArgumentParser``, which calls ``configure`` once the arguments are parsed.
Records go to stderr as ``<UTC time> <LEVEL> <logger>: <message>``. Kafka clients get
``KAFKA_LOGGER`` as their ``logger`` config, so librdkafka's own lines land here too.
"""

from __future__ import annotations

import logging
import sys
import time

LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
#: librdkafka's log (``logger`` in a confluent-kafka client's config).
KAFKA_LOGGER = logging.getLogger("librdkafka")
#: The loggers ``--log-level`` sets: the project's packages and librdkafka's.
OUR_LOGGERS: tuple[str, ...] = ("fraudlake", "flagstore", "rules", "streaming", "batch", "lake",
                                "queries", "dashboard", "notebooks", "simulator", "librdkafka",
                                "__main__")


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _only_warnings_from_libraries(record: logging.LogRecord) -> bool:
    """Other libraries below WARNING stay out even when they set their own logger's level
    (trino's client sets ``trino`` to INFO on import and logs "failed after 3 attempts")."""
    ours = record.name.split(".", 1)[0] in OUR_LOGGERS
    return ours or record.levelno >= logging.WARNING


def configure(level: str = "INFO") -> None:
    """Root logging: one stderr handler with ``FORMAT`` at ``level`` (idempotent)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(h)
    handler = _Stderr()
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    if level.upper() != "DEBUG":
        handler.addFilter(_only_warnings_from_libraries)
    root.addHandler(handler)
    # our modules at ``level``; other libraries' chatter (botocore, werkzeug…) only from
    # WARNING up, unless DEBUG asks for everything
    root.setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())

