"""Kafka edges of the live pipeline: client configs, topic creation, raw records, retries.

Thin I/O shell over confluent-kafka; the pipeline core (decode → rules → sinks) never sees a
Kafka object, only ``RawRecord``s. SASL/TLS settings from the environment
(``Settings.kafka_extra``) are passed through to every client and never printed.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fraudlake.cli import EnvironmentFailure, UsageError
from fraudlake.logs import KAFKA_LOGGER
from fraudlake.settings import DEFAULT_RETRY_SECONDS
from streaming.decode import RawRecord

#: Errors that mean "no broker to talk to right now": librdkafka reconnects by itself.
BROKER_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                         KafkaError._RESOLVE})
#: Commit errors that mean "the group is rebalancing / this member is out of date": retrying
#: cannot help until the consumer polls again (rebalance callbacks), so ``retry_commit`` returns
#: False; the partitions are replayed from the last commit by whoever owns them next.
COMMIT_REBALANCING = frozenset({KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                                KafkaError.UNKNOWN_MEMBER_ID, KafkaError._ASSIGNMENT_LOST})
#: Commit errors worth retrying besides those librdkafka marks retriable.
COMMIT_TRANSIENT = BROKER_DOWN | {
    KafkaError._WAIT_COORD, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NETWORK_EXCEPTION,
}


log = logging.getLogger(__name__)


class _RateLimit(logging.Filter):
    """Passes at most one record per librdkafka facility (FAIL, REQTMOUT, …) per period."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.seconds) < self.seconds:
                return False
            self._last[key] = now
        return True


#: librdkafka's own log (``fraudlake.logs.KAFKA_LOGGER``, every client's ``logger``): at most
#: one line per facility a minute. Outages are told by ``BrokerWatch``; this is the detail.
KAFKA_LOGGER.addFilter(_RateLimit(60.0))
_QUIET_LOG = logging.getLogger("librdkafka.probe")
_QUIET_LOG.propagate = False
_QUIET_LOG.addHandler(logging.NullHandler())


def check_kafka(bootstrap: str, extra: Mapping[str, str] = {}, timeout: float = 30.0) -> None:
    """One metadata request before any work: a client setting librdkafka refuses is a
    ``UsageError`` (exit 2), no broker answering within ``timeout`` an ``EnvironmentFailure``
    naming the servers and the last connection error (exit 1). Silent while it waits."""
    errors: list[str] = []
    try:
        config: dict[str, Any] = {**extra, "bootstrap.servers": bootstrap, "logger": _QUIET_LOG,
                                  "error_cb": lambda err: errors.append(err.str())}
        admin = AdminClient(config)
    except KafkaException as exc:
        raise UsageError(f"Kafka client setting: {exc.args[0].str()}") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"Kafka client setting: {exc}") from None
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        reason = errors[-1] if errors else exc.args[0].str()
        raise EnvironmentFailure(f"cannot reach Kafka at {bootstrap}: {reason} "
                                 f"(waited {timeout:g} s)") from None


def log_warning(msg: str) -> None:
    """The default ``log`` callback of this module's classes: a warning in ``logging``."""
    log.warning(msg)


class KafkaStageError(EnvironmentFailure, RuntimeError):
    """A Kafka operation failed terminally; the message names the topic/operation."""


class BrokerWatch:
    """Says in the log when a Kafka client loses its brokers and when it has them back.

    Installed as the client's ``error_cb`` and ``stats_cb`` (``config()``, statistics every
    second). Callbacks only run inside poll/consume/flush, so while the application is blocked
    (e.g. in a commit waiting for the coordinator) they queue up and arrive late, in order; the
    outage is therefore timed from the statistics reports themselves (librdkafka's own clock,
    ``ts``): the first report with no real broker UP starts it, the first with one UP again
    ends it. Lines: ``kafka <role>: broker down (…); retrying`` (on the first "all brokers
    down" / transport error or down report; librdkafka reconnects by itself, with backoff) and
    ``kafka <role>: reconnected after X.Xs``. Other errors are logged once per distinct text
    while they repeat. Never logs config, so SASL/TLS secrets cannot leak through it.
    """

    def __init__(self, role: str, log: Callable[[str], None] | None = None) -> None:
        self.role = role
        self.log = log or log_warning
        self.down = False
        self.down_ts: float | None = None  # librdkafka clock (s) of the first down report
        self.outages = 0
        self.fatal: KafkaError | None = None
        self._last_other = ""
        self._lock = threading.Lock()

    def config(self) -> dict[str, object]:
        return {"error_cb": self.on_error, "stats_cb": self.on_stats,
                "statistics.interval.ms": 1000}

    def on_error(self, err: KafkaError) -> None:
        with self._lock:
            if err.fatal():
                self.fatal = err
                self.log(f"kafka {self.role}: FATAL {err.str()}")
            elif err.code() in BROKER_DOWN:
                self._went_down(err.str())
            elif err.str() != self._last_other:
                self._last_other = err.str()
                self.log(f"kafka {self.role}: {err.str()}")

    def on_stats(self, stats_json: str) -> None:
        try:
            stats = json.loads(stats_json)
            ts = float(stats["ts"]) / 1e6
            real = [b for b in stats.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not real:  # only bootstrap/logical entries yet: nothing to say
            return
        up = any(b.get("state") == "UP" for b in real)
        with self._lock:
            if not up:
                if self.down_ts is None:
                    self.down_ts = ts
                self._went_down("no broker UP")
            elif self.down:
                took = f" after {ts - self.down_ts:.1f}s" if self.down_ts is not None else ""
                self.log(f"kafka {self.role}: reconnected{took}")
                self.down, self.down_ts, self._last_other = False, None, ""

    def _went_down(self, reason: str) -> None:
        if not self.down:
            self.down = True
            self.outages += 1
            self.log(f"kafka {self.role}: broker down ({reason}); retrying "
                     "(the client reconnects by itself, with backoff)")

    def mark_up(self) -> None:
        """The client talked to a broker again (a commit or a flush went through)."""
        with self._lock:
            if self.down:
                self.log(f"kafka {self.role}: reconnected")
                self.down, self.down_ts, self._last_other = False, None, ""


def client_config(bootstrap: str, settings: Mapping[str, object] = {},
                  extra: Mapping[str, str] = {}) -> dict[str, Any]:
    """A plain librdkafka client config: the servers, ``settings``, librdkafka's own log routed
    into ``logging`` (``KAFKA_LOGGER``), then the SASL/TLS passthrough ``extra``."""
    return {"bootstrap.servers": bootstrap, **settings, "logger": KAFKA_LOGGER, **extra}


def producer_config(bootstrap: str, extra: Mapping[str, str] = {}, *,
                    compression: str = "lz4", linger_ms: float = 5.0,
                    watch: BrokerWatch | None = None) -> dict[str, object]:
    """Idempotent, acks=all, compressed, lightly lingering producer. An idempotent producer
    keeps retrying through a broker restart (up to ``message.timeout.ms``, 5 min) without
    duplicating or reordering; ``watch`` logs the outage."""
    return {
        **(watch.config() if watch is not None else {}),
        "logger": KAFKA_LOGGER,  # librdkafka's own log lines into logging
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        **extra,
    }


def consumer_config(bootstrap: str, group: str, extra: Mapping[str, str] = {}, *,
                    from_beginning: bool = True,
                    watch: BrokerWatch | None = None) -> dict[str, object]:
    """Manual commits only; large fetches so a poll returns a whole micro-batch. A
    ``BrokerWatch("consumer")`` logs broker outages and reconnects unless one is given."""
    return {
        **(watch or BrokerWatch("consumer")).config(),
        "logger": KAFKA_LOGGER,  # librdkafka's own log lines into logging
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 50,
        "queued.min.messages": 200_000,
        "max.poll.interval.ms": 300_000,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        **extra,
    }


def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int,
                  extra: Mapping[str, str] = {}, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (the broker does not auto-create); return them."""
    admin = AdminClient(client_config(bootstrap, extra=extra))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing],
        operation_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaStageError(f"create topic {name!r}: {exc.args[0].str()}") from None
    return missing


def unpack(messages: list[Message]) -> tuple[list[RawRecord], list[int], list[KafkaError]]:
    """One pass over a polled batch: RawRecords, their Kafka CreateTimes (ms; 0 = unknown),
    and the error events (partition EOF dropped)."""
    records: list[RawRecord] = []
    created: list[int] = []
    errors: list[KafkaError] = []
    eof = KafkaError._PARTITION_EOF
    record, add, add_created = RawRecord, records.append, created.append  # a hot loop
    # one tuple per message and no reference cycles: without the cyclic GC running every 700
    # of them (and promoting them through its generations) the loop takes half the time
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for m in messages:
            err = m.error()
            if err is None:
                # a consumed message always has its topic, partition and offset
                add(record(m.value() or b"", m.key(), m.topic() or "", m.partition() or 0,
                           m.offset() or 0))
                add_created(m.timestamp()[1])
            elif err.code() != eof:
                errors.append(err)
    finally:
        if was_enabled:
            gc.enable()
    return records, created, errors


def next_offsets(records: Sequence[RawRecord]) -> list[TopicPartition]:
    """The offsets to commit after these records: per (topic, partition), last offset + 1."""
    top: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= top.get(key, -1):
            top[key] = r.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(top.items())]


def flush_within(producer: Producer, timeout: float, what: str,
                 log: Callable[[str], None] = log_warning, every: float = 10.0) -> int:
    """``producer.flush`` for up to ``timeout`` seconds, saying every ``every`` seconds how
    many messages still wait for the broker; returns how many are still undelivered."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    while True:
        remaining = producer.flush(max(0.0, min(every, deadline - time.monotonic())))
        if not remaining or time.monotonic() >= deadline:
            return remaining
        log(f"kafka: {what}: {remaining} messages still waiting for the broker after "
            f"{time.monotonic() - t0:.0f}s; retrying (up to {timeout:.0f}s)")


def retry_commit(consumer, offsets: list[TopicPartition], attempts: int | None = None, *,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 log: Callable[[str], None] = log_warning) -> bool:
    """Synchronous commit of explicit offsets, retried with bounded exponential backoff
    (0.2 s doubling to 5 s) on transient broker errors (broker or coordinator away, timeouts)
    for up to ``retry_seconds`` (env ``KAFKA_RETRY_SECONDS``, default 120) and, if given, at
    most ``attempts`` tries; then, or on any other error, ``KafkaStageError``. True once
    committed (or nothing to commit); False when the broker refused it because the group is
    rebalancing (``COMMIT_REBALANCING``, e.g. the session timed out while the broker was
    away): the caller may keep the offsets and commit them after the next poll if it still
    owns the partitions. Says in the log when it had to retry or wait, and when the commit
    went through again."""
    budget = retry_seconds
    t0 = time.monotonic()
    delay, tries = 0.2, 0
    while True:
        tries += 1
        t_call = time.monotonic()
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                return True
            if err.code() in COMMIT_REBALANCING:
                log(f"kafka: commit refused, the group is rebalancing ({err.str()}); not "
                    "committed: the next owner of these partitions replays them from the last "
                    "commit (both sinks are idempotent)")
                return False
            elapsed = time.monotonic() - t0
            transient = err.retriable() or err.code() in COMMIT_TRANSIENT
            if (not transient or elapsed + delay > budget
                    or (attempts is not None and tries >= attempts)):
                raise KafkaStageError(f"offset commit failed after {tries} tries in "
                                      f"{elapsed:.1f}s: {err.str()}") from None
            log(f"kafka: commit failed ({err.str()}); broker or coordinator away? "
                f"retrying in {delay:.1f}s (up to {budget:.0f}s)")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        waited = time.monotonic() - t_call
        if tries > 1 or waited >= 2.0:
            log(f"kafka: commit went through after {time.monotonic() - t0:.1f}s "
                f"({tries} tries); broker reachable again")
        return True
