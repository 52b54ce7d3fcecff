"""The Kafka consume loop: one micro-batch at a time, both sinks, THEN the offset commit.

``StreamConsumer(config, flag_store).run()``: ``consume(num_messages=…)`` → per partition:
decode (bad records → the DLQ topic, flushed) → that partition's rule engine → lake sink
(every event; on a background thread, overlapping the next batch's decoding and rules) → flag
store (flagged only; on a background thread too when the store is thread safe; both writes in
``streaming.sink_writes``) → a synchronous
commit of explicit offsets once both sinks hold the batch. A crash anywhere before the commit
replays the batch; both sinks are idempotent, so each event lands exactly once.

Every partition is decided by one rule set (``ConsumeConfig.rule_set``, ``--rules``), or, with
``ConsumeConfig.rules_topic``, by the sets the rule control topic assigns to its offsets
(``streaming.rule_switch``: a newly published set applies from the next micro-batch, recorded
before it decides; a shadow set runs beside); the deciding id is on every lake row and flag.
Rule state is per partition (the key is the user, so a user never changes partition). When a
partition is assigned, its engine is rebuilt from the lake (``streaming.lake_state``): files
at/after the committed offset are leftovers of a consumer that died before committing and are
removed (they will be rewritten); files before it are every event the partition delivered, and
warm the engine up. So a restarted or reassigned consumer decides exactly as an uninterrupted
one. Revoked partitions are committed first; lost ones are left to their new owner. A commit
the broker refuses because the group is rebalancing (another consumer joins or leaves) is not
an error: the offsets are kept and committed after the rebalance if the partition is still
ours, else its new owner replays from the last commit. The ``--timeout`` idle clock restarts
on every assignment, so a slow group join is not mistaken for an idle topic.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

from flagstore.protocols import FlagWriter
from fraudlake.atomic import write_text
from fraudlake.settings import DEFAULT_RETRY_SECONDS
from lake.layout import transactions_dir
from rules.model import RuleSet, load_rule_set
from streaming import lake_state
from streaming.control_watch import ControlWatcher
from streaming.dead_letters import DeadLetterProducer
from streaming.decode import RawRecord
from streaming.kafka_io import (
    COMMIT_REBALANCING,
    KafkaStageError,
    consumer_config,
    ensure_topics,
    next_offsets,
    retry_commit,
    unpack,
)
from streaming.lake_sink import LakeSink
from streaming.rule_switch import PartitionRules, process_partition_batch
from streaming.rules_control import ControlState
from streaming.sink_writes import LakePart, PendingBatch, SinkWrites
from streaming.watchdog import commit_watchdog_seconds, watchdog

#: Max messages per micro-batch. Only a backlog fills it (a poll returns what is waiting after
#: ``poll_timeout``); then large batches pay off: the rule state each batch reads is per user, so
#: its cost per event falls as more of a user's events share a batch (rules/example.toml on the
#: bench: ~5.7 engine CPU-µs per event at 20,000 messages per batch, ~2.5 at 100,000).
BATCH_SIZE = 100_000


@dataclass(frozen=True)
class ConsumeConfig:
    bootstrap: str
    topic: str
    dlq_topic: str
    group: str
    lake_dir: Path
    rule_set: RuleSet = field(default_factory=load_rule_set)
    batch_size: int = BATCH_SIZE
    poll_timeout: float = 0.1
    max_messages: int | None = None
    idle_timeout: float | None = None
    metrics_interval: float = 5.0
    metrics_path: Path | None = None  # JSON {lag, events, flags, dead_letters, updated_at}
    kafka_extra: dict[str, str] = field(default_factory=dict, repr=False)
    group_instance_id: str | None = None  # static membership (consumer only)
    kafka_retry_seconds: float = DEFAULT_RETRY_SECONDS  # commit / DLQ flush retry budget
    rules_topic: str | None = None  # the control topic to follow; None = rule_set, fixed


@dataclass
class ConsumeStats:
    messages: int = 0
    events: int = 0
    flags: int = 0
    dead_letters: int = 0
    batches: int = 0
    lag: int = 0
    started: float = field(default_factory=time.monotonic)


class StreamConsumer:
    """The consume loop over an already-built flag store. Builds its clients here, talks to
    the broker only from ``run`` (which first creates the DLQ topic if it is missing)."""

    def __init__(self, config: ConsumeConfig, flag_store: FlagWriter,
                 log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.flags = flag_store
        self.lake = LakeSink(config.lake_dir)
        self.transactions_dir = transactions_dir(config.lake_dir)
        self.dlq = DeadLetterProducer(config.bootstrap, config.dlq_topic, config.kafka_extra,
                                      retry_seconds=config.kafka_retry_seconds)
        self.engines: dict[int, PartitionRules] = {}  # per owned partition: its rule engines
        self.control = ControlWatcher(config.bootstrap, config.rules_topic, config.kafka_extra) \
            if config.rules_topic else None  # read from run(), not here
        self._fixed = ControlState()  # no control topic: every offset decided by rule_set
        self.stats = ConsumeStats()
        self._latency: deque[np.ndarray] = deque(maxlen=2000)  # ms, per recent batch
        self._writes = SinkWrites(self.lake, flag_store)  # lake and flags off this thread
        self._pending: PendingBatch | None = None
        self._deferred: list[TopicPartition] = []  # written, commit refused mid-rebalance
        self._deferred_logged = False
        self._commit_retry_s = config.kafka_retry_seconds
        self._commit_watchdog_s = commit_watchdog_seconds(self._commit_retry_s)
        self._last_data = time.monotonic()  # input or a new assignment: the idle clock restarts
        self.stopping = False
        self._log = log or logging.getLogger(__name__).info
        kafka = consumer_config(config.bootstrap, config.group, config.kafka_extra)
        if config.group_instance_id:
            kafka["group.instance.id"] = config.group_instance_id
        self.consumer = Consumer(kafka)

    # --- partition ownership -----------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._pending is not None:
            self._pending.wait()  # no lake write in flight while a partition's files are read
        for tp in consumer.committed(partitions, timeout=30):
            committed = tp.offset
            if committed == OFFSET_INVALID:  # a new group starts at the log start (earliest)
                committed, _high = consumer.get_watermark_offsets(tp, timeout=30)
            removed = lake_state.discard_uncommitted(self.transactions_dir, tp.topic,
                                                     tp.partition, committed)
            rules = self._partition_rules(tp.topic, tp.partition)
            warmed = rules.start(committed)
            self.engines[tp.partition] = rules
            self._log(f"consume: assigned {tp.topic}[{tp.partition}] at offset {committed}; "
                      f"state from {warmed} lake events"
                      + (f", removed {len(removed)} uncommitted lake files" if removed else ""))
        self._last_data = time.monotonic()  # a join that took long is not idle time

    def _partition_rules(self, topic: str, partition: int) -> PartitionRules:
        def history(below: int, columns) -> pl.DataFrame | None:
            if self._pending is not None:  # a set switched mid-stream: the previous batch's
                self._pending.lake.exception()  # lake files are part of the history it reads
            return lake_state.partition_history(self.transactions_dir, topic, partition, below,
                                                columns)
        control = self.control
        return PartitionRules(topic, partition,
                              (lambda: control.state) if control else (lambda: self._fixed),
                              history, self.config.rule_set,
                              control.record if control else None)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.settle()  # commit what is written before the partitions go
        self._forget(partitions)
        if partitions:
            self._log(f"consume: revoked {[tp.partition for tp in partitions]}")

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a chance to commit: the new owner replays them."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.wait()  # let the writes finish; their commit is not ours to make
        self._forget(partitions)
        self._log(f"consume: lost {[tp.partition for tp in partitions]} (not committed)")

    # --- one micro-batch ---------------------------------------------------------------------
    def handle(self, records: list[RawRecord], created_ms: np.ndarray | None = None) -> None:
        """Decode and decide; DLQ now; lake files and flags in the background. The PREVIOUS
        batch is committed once its lake files and flags are written (so Parquet encoding and
        FerretDB/MongoDB work overlap the next batch's decoding and rules); nothing is committed
        before both sinks hold it."""
        by_partition: dict[int, list[RawRecord]] = {}
        for r in records:  # no setdefault: its default list would be built for every record
            group = by_partition.get(r.partition)
            if group is None:
                by_partition[r.partition] = group = []
            group.append(r)
        results = []
        for partition, recs in sorted(by_partition.items()):
            engine = self.engines.get(partition)
            if engine is None:  # delivered before/after ownership changed: leave uncommitted
                continue
            results.append((partition, recs, process_partition_batch(recs, engine)))
        done: list[RawRecord] = []
        lake_parts: list[LakePart] = []
        for partition, recs, res in results:
            self.stats.dead_letters += self.dlq.send(res.dead_letters)
            if res.events_with_rules.height:
                lake_parts.append((res.events_with_rules, recs[0].topic, partition,
                                   recs[0].offset, recs[-1].offset))
            self.stats.events += res.events_with_rules.height
            done.extend(recs)
        flagged = [res.flagged for _, _, res in results if res.flagged.height]
        frame = pl.concat(flagged, how="diagonal_relaxed") if flagged else None
        self.settle()
        self._pending = self._writes.submit(lake_parts, frame, next_offsets(done), created_ms)
        self.stats.messages += len(done)
        self.stats.batches += 1

    def settle(self) -> None:
        """Wait for the pending batch's lake and flag writes (re-raising their errors), then
        commit it."""
        pending, self._pending = self._pending, None
        if pending is None:
            if self._deferred:
                self._commit([])
            return
        lake_ms = pending.lake.result()
        written, visible_ms = pending.flags.result()
        visible_ms = max(visible_ms, lake_ms)
        self.stats.flags += written
        if pending.created_ms is not None and len(pending.created_ms):
            self._latency.append(visible_ms - pending.created_ms)
        self._commit(pending.offsets)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        """Commit written offsets of the partitions this consumer still owns. While the group
        rebalances the broker refuses commits (rebalance in progress, old generation): those
        offsets are kept and committed with the next settle, once the poll has run the
        rebalance callbacks, if the partition is still ours; a partition that moved is replayed
        by its new owner from the last commit (both sinks are idempotent)."""
        merged = {(tp.topic, tp.partition): tp.offset for tp in self._deferred}
        for tp in offsets:
            key = (tp.topic, tp.partition)
            merged[key] = max(tp.offset, merged.get(key, tp.offset))
        owned = [TopicPartition(t, p, o) for (t, p), o in sorted(merged.items())
                 if p in self.engines]
        self._deferred = []
        if not owned:
            return
        try:
            with watchdog(self._commit_watchdog_s, "offset commit", self._log):
                self.consumer.commit(offsets=owned, asynchronous=False)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code in COMMIT_REBALANCING:
                if not self._deferred_logged:
                    self._log(f"consume: commit deferred, group rebalancing ({exc.args[0].str()})")
                self._deferred, self._deferred_logged = owned, True
                return
            # transient errors retried (bounded), others raised; refused mid-rebalance: keep them
            with watchdog(self._commit_watchdog_s, "offset commit retries", self._log):
                committed = retry_commit(self.consumer, owned,
                                         retry_seconds=self._commit_retry_s, log=self._log)
            if not committed:
                self._deferred = owned
                return
        self._deferred_logged = False

    def _forget(self, partitions: list[TopicPartition]) -> None:
        """Drop the rule state and any deferred commit of partitions no longer ours."""
        gone = {tp.partition for tp in partitions}
        for p in gone:
            self.engines.pop(p, None)
        self._deferred = [tp for tp in self._deferred if tp.partition not in gone]

    # --- the loop ----------------------------------------------------------------------------
    def run(self) -> ConsumeStats:
        cfg = self.config
        ensure_topics(cfg.bootstrap, [cfg.dlq_topic], 1, cfg.kafka_extra)
        if self.control is not None:
            state = self.control.start(seed=cfg.rule_set)  # read it to its end before deciding
            active, shadow = state.current("active"), state.current("shadow")
            self._log(f"consume: following {cfg.rules_topic}: active "
                      f"{active.id if active else '?'}, shadow "
                      f"{shadow.id if shadow else '(none)'}")
        self.consumer.subscribe([cfg.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        # the objects of start-up (modules of polars, numpy, pyarrow…: ~250k) live as long as
        # the process: out of the cyclic GC's full collections, which the loop's allocations
        # would otherwise make walk them again and again (``close`` unfreezes them)
        gc.collect()
        gc.freeze()
        self._last_data = last_metrics = time.monotonic()
        try:
            while not self.stopping:
                want = cfg.batch_size
                if cfg.max_messages is not None:
                    want = min(want, cfg.max_messages - self.stats.messages)
                    if want <= 0:
                        break
                if self.control is not None:
                    self.control.poll()  # a newly published set applies from the next batch
                records, created, errors = unpack(
                    self.consumer.consume(num_messages=want, timeout=cfg.poll_timeout))
                for err in errors:
                    if err.fatal():
                        raise KafkaStageError(f"consumer of {cfg.topic!r}: {err.str()}")
                    self._log(f"consume: kafka: {err.str()}")
                now = time.monotonic()
                if records:
                    created_ms = np.array(created, dtype=np.int64)
                    self.handle(records, created_ms[created_ms > 0])
                    self._last_data = now
                else:
                    self.settle()  # idle: do not leave a written batch uncommitted
                    idle = now - self._last_data
                    if cfg.idle_timeout is not None and idle >= cfg.idle_timeout:
                        break
                if now - last_metrics >= cfg.metrics_interval:
                    self._metrics(now - last_metrics)
                    last_metrics = now
            self.settle()
        finally:
            self.close()
        return self.stats

    def _metrics(self, _elapsed: float) -> None:
        s = self.stats
        secs = max(time.monotonic() - s.started, 1e-9)
        s.lag = self.lag()
        p50, p99 = self.latency_ms()
        if self.config.metrics_path is not None:
            write_metrics(self.config.metrics_path, s)
        self._log(f"consume: events={s.events} ({s.events / secs:,.0f}/s) flags={s.flags} "
                  f"({s.flags / secs:,.1f}/s) dlq={s.dead_letters} lag={s.lag} "
                  f"batches={s.batches} latency p50={p50:.0f}ms p99={p99:.0f}ms")

    def latency_ms(self) -> tuple[float, float]:
        """p50/p99 of produce time (Kafka CreateTime) → the batch is in both sinks (its flags
        visible in the flag store), over recent batches."""
        if not self._latency or not sum(len(a) for a in self._latency):
            return (float("nan"), float("nan"))
        lat = np.concatenate(list(self._latency))
        p50, p99 = np.percentile(lat, [50, 99])
        return float(p50), float(p99)

    def lag(self) -> int:
        try:
            assigned = self.consumer.assignment()
            positions = self.consumer.position(assigned)
        except Exception:  # noqa: BLE001 - metrics only
            return -1
        total = 0
        for tp in positions:
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                total += max(0, high - tp.offset)
        return total

    def stop(self, *_args) -> None:
        self.stopping = True

    def close(self) -> None:
        gc.unfreeze()
        try:
            self.consumer.close()
        finally:
            self._writes.close()
            self.dlq.close()
            if self.control is not None:
                self.control.close()


def write_metrics(path: Path, stats: ConsumeStats) -> None:
    """Atomically write the consumer's latest metrics (read by the dashboard for lag)."""
    doc = {"lag": stats.lag, "events": stats.events, "flags": stats.flags,
           "dead_letters": stats.dead_letters,
           "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        write_text(path, json.dumps(doc))
    except OSError:
        pass  # metrics only: never stop the consumer for them
