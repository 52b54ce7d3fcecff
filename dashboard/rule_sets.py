"""Which rule sets are in force, and the live shadow comparison (issue 14 on the page).

- In force: with Kafka configured, the active and shadow sets of the rule control topic
  (``streaming.rules_control``; ``KAFKA_RULES_TOPIC``), read by a background ``ControlWatch``
  so a slow or absent broker never holds up a refresh; without Kafka, the rule set of the
  newest flag (embedded mode has no control topic).
- The shadow comparison: the lake rows of the chosen range that carry a shadow decision
  (``shadow_*`` columns, ``fraudlake.contract.SHADOW_SCHEMA``), read with DuckDB (month folders
  in range only), compared by ``streaming.shadow.compare`` — one definition with
  ``python -m streaming.rules compare``. ``None`` when no lake file has shadow columns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from dashboard import lake_queries
from lake.layout import HIVE_TYPES


@dataclass(frozen=True)
class InForce:
    """The rule sets deciding now, and where the page learnt it."""

    active: str | None
    shadow: str | None
    active_since: str | None = None  # when the pointer was published (control topic only)
    shadow_since: str | None = None
    origin: str = "newest flag"


def from_control(state, topic: str) -> InForce:
    """``InForce`` from a ``streaming.rules_control.ControlState``."""
    def pointer(role: str) -> tuple[str | None, str | None]:
        p = state.pointers.get(role)
        return (p.id, p.published_at) if p is not None and p.id else (None, None)

    (active, a_at), (shadow, s_at) = pointer("active"), pointer("shadow")
    return InForce(active, shadow, a_at, s_at, f"control topic {topic}")


def from_flags(newest_rule_set_id: str | None) -> InForce:
    return InForce(newest_rule_set_id, None, origin="newest flag (no Kafka control topic here)")


class ControlWatch:
    """Re-reads the control topic every ``every`` seconds in a daemon thread; ``latest()``
    never blocks. ``reader(bootstrap, topic, extra, timeout)`` is ``read_control``."""

    def __init__(self, bootstrap: str, topic: str, extra: Mapping[str, str] = {},
                 every: float = 5.0, timeout: float = 5.0,
                 reader: Callable[..., object] | None = None) -> None:
        # librdkafka logs every failed connect (many a second while a broker is away): the
        # page shows the one-line error instead
        self.bootstrap, self.topic = bootstrap, topic
        self.extra = {"log_level": "2", **extra}
        self.every, self.timeout = every, timeout
        self._reader = reader
        self._lock = threading.Lock()
        self._state: object | None = None
        self._error: str | None = None
        self._read_at = 0.0
        self._started = False

    def _read(self) -> None:
        reader = self._reader or _read_control
        try:
            state = reader(self.bootstrap, self.topic, self.extra, timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - shown as one line, retried
            with self._lock:
                self._error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        with self._lock:
            self._state, self._error, self._read_at = state, None, time.monotonic()

    def _loop(self) -> None:
        while True:
            self._read()
            time.sleep(self.every)

    def start(self, first_wait: float = 3.0) -> ControlWatch:
        """Start the thread; wait up to ``first_wait`` s for the first read (the page's first
        load then shows the sets instead of "not read yet")."""
        if not self._started:
            self._started = True
            threading.Thread(target=self._loop, name="control-watch", daemon=True).start()
            deadline = time.monotonic() + first_wait
            while time.monotonic() < deadline and self.latest() == (None, None):
                time.sleep(0.05)
        return self

    def latest(self) -> tuple[object | None, str | None]:
        """(the last state read or None, the last error or None)."""
        with self._lock:
            return self._state, self._error


def _read_control(bootstrap: str, topic: str, extra: Mapping[str, str],
                  timeout: float) -> object:
    """``streaming.rules_control.read_control`` (imported when first needed: Kafka only)."""
    from streaming.rules_control import read_control

    return read_control(bootstrap, topic, extra, timeout=timeout)


_SHADOW_SQL = f"""
SELECT rule_set_id, shadow_rule_set_id, flagged, shadow_flagged, is_fraud
FROM {lake_queries._SOURCE}
WHERE shadow_rule_set_id IS NOT NULL
  AND ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)
"""  # noqa: S608 - constant fragments; values bound


def shadow_rows(files: Sequence[Path], since: datetime | None, until: datetime | None,
                con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame | None:
    """The range's lake rows with a shadow decision (the columns the comparison reads);
    None when no lake file in range has shadow columns (no shadow set ran)."""
    files = lake_queries.files_in_range(files, since, until)
    if not files:
        return None
    con = con or lake_queries.connect()
    base = {"files": [str(p) for p in files], "ht": dict(HIVE_TYPES)}
    have = lake_queries.columns(files, con)
    if not {"shadow_rule_set_id", "shadow_flagged", "rule_set_id"} <= have:
        return None
    arrow = con.sql(_SHADOW_SQL, params={**base, "since": since, "until": until}).to_arrow_table()
    return pl.from_arrow(arrow)  # type: ignore[return-value]


def comparison(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (active, shadow) pair: alerts each raises, added/removed, precision/recall."""
    from streaming.shadow import compare

    return compare(rows)
