"""Replay a Kafka topic's offsets with the rule control log: every live decision again.

``replay_topic(records_by_partition, state, fallback)`` decides each partition's records (offset
order) with ``rule_switch.PartitionRules`` over a read-only control state, exactly as the live
consumer did: an offset is decided by the set its partition's latest switch at or before it
names (``fallback`` where no switch covers it, i.e. decided by a consumer with a fixed set), a new
set's engine warmed with every earlier event of the partition; the shadow set likewise. The
result has per event ``transaction_id, _partition, _offset`` and the lake's decision columns
(``rule_set_id, score, flagged, rules_fired`` and the ``shadow_*`` columns), so it compares
one to one with the lake. ``read_topic_records`` is the Kafka edge: every partition from its
start to its end as it is when the replay starts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

import polars as pl

from fraudlake.contract import DECISION_SCHEMA, EVENT_SCHEMA, SHADOW_SCHEMA
from rules.model import RuleSet
from streaming.decode import RawRecord
from streaming.rule_switch import PartitionRules, process_partition_batch
from streaming.rules_control import ControlState

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(), "_partition": pl.Int32(), "_offset": pl.Int64(),
    **DECISION_SCHEMA, **SHADOW_SCHEMA}


def replay_partition(topic: str, partition: int, records: Sequence[RawRecord],
                     state: ControlState, fallback: RuleSet,
                     batch_size: int = 20_000) -> pl.DataFrame:
    """One partition's records (offset order) decided as live; the ``OUTPUT_SCHEMA`` columns."""
    seen: list[pl.DataFrame] = []

    def history(below: int, columns: Sequence[str]) -> pl.DataFrame | None:
        if not seen:
            return None
        past = pl.concat(seen, how="vertical_relaxed").filter(pl.col("_offset") < below)
        return past.select(list(columns)) if past.height else None

    rules = PartitionRules(topic, partition, lambda: state, history, fallback, record=None)
    out: list[pl.DataFrame] = []
    for lo in range(0, len(records), batch_size):
        res = process_partition_batch(records[lo:lo + batch_size], rules)
        decided = res.events_with_rules
        seen.append(decided.select([c for c in (*EVENT_SCHEMA, "_offset")
                                    if c in decided.columns]))
        out.append(decided.select([pl.col(c).cast(t) for c, t in OUTPUT_SCHEMA.items()]))
    return pl.concat(out) if out else pl.DataFrame(schema=OUTPUT_SCHEMA)


def replay_topic(topic: str, records: Mapping[int, Sequence[RawRecord]], state: ControlState,
                 fallback: RuleSet, batch_size: int = 20_000) -> pl.DataFrame:
    parts = [replay_partition(topic, p, recs, state, fallback, batch_size)
             for p, recs in sorted(records.items())]
    return pl.concat(parts) if parts else pl.DataFrame(schema=OUTPUT_SCHEMA)


def read_topic_records(bootstrap: str, topic: str, extra: Mapping[str, str] = {},
                       timeout: float = 60.0) -> dict[int, list[RawRecord]]:
    """Every record of every partition of ``topic``, from its start to its end now."""
    from confluent_kafka import Consumer, TopicPartition

    from streaming.kafka_io import client_config, unpack

    consumer = Consumer(client_config(bootstrap, {
        "group.id": f"replay-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest"}, extra))
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise LookupError(f"no topic {topic!r} on {bootstrap}")
        ends: dict[int, tuple[int, int]] = {}
        for p in meta.partitions:
            ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        todo = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
        out: dict[int, list[RawRecord]] = {p: [] for p in ends}
        consumer.assign([TopicPartition(topic, p, lo) for p, (lo, _hi) in ends.items()])
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout:g} s")
            records, _created, errors = unpack(consumer.consume(5000, timeout=0.5))
            for err in errors:
                if err.fatal():
                    raise RuntimeError(f"{topic}: {err.str()}")
            for r in records:
                if r.offset < ends[r.partition][1]:
                    out[r.partition].append(r)
                if r.partition in todo and r.offset >= todo[r.partition] - 1:
                    del todo[r.partition]
        return out
    finally:
        consumer.close()
