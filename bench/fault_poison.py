"""Fault scenario "poison": a live stream with 1% malformed messages of every kind in
``tests/reliability/_poison.py`` (not JSON, bad UTF-8, wrong types, missing fields, NaN, ~1 MB
strings, negative amounts, impossible coordinates, far-future timestamps, duplicate keys, …).

``poison(events, workdir) -> dict`` (imported by ``bench/faults.py``) produces ``events`` valid
simulator events with the poison interleaved (each poison message keyed like its neighbour, so
it lands in the same partition), runs the consumer (in-process ``StreamConsumer``, flags into
FerretDB) over the real broker until every message is handled, and returns the row
``{scenario, events, lost, duplicated, recovery_s, notes}``:

* ``lost`` / ``duplicated``: counted by ``tests/reliability/_faults.audit`` exactly as for the
  other fault scenarios (lake rows and MongoDB flags by ``transaction_id`` against the rule
  engine run once over the valid events);
* ``recovery_s``: None, nothing is interrupted;
* ``notes``: ``"N poison → M in DLQ"`` (M counts DLQ messages whose reason matches the kind
  sent and whose position headers point at a poison message), decisions differing, throughput.

Standalone: ``.venv/bin/python -m bench.fault_poison --events 200000`` prints the row (servers
from ``FRAUDLAKE_KAFKA_PORT`` / ``FRAUDLAKE_MONGO_PORT``, started if needed and then stopped).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from flagstore.mongo import MongoFlagStore
from fraudlake import services
from fraudlake.cli import ArgumentParser, positive_count_arg
from streaming.consume_loop import ConsumeConfig, StreamConsumer
from streaming.dead_letters import DLQ_REASON_HEADER
from streaming.engine import RuleEngine
from streaming.kafka_io import ensure_topics, producer_config
from streaming.produce import encode_events, simulated_events
from tests.reliability._faults import audit, lake_rows, mongo_flags
from tests.reliability._poison import POISON, mix
from tests.streaming._kafka_data import read_topic

_ROOT = Path(__file__).resolve().parents[1]

FRACTION = 0.01
PARTITIONS = 4


def _events(count: int, seed: int = 7) -> pl.DataFrame:
    frames = list(simulated_events(seed, 10_000, count))  # the stream ends now
    return pl.concat(frames).head(count)


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list:
    producer = Producer({**producer_config(bootstrap), "message.max.bytes": 2_000_000})
    positions: list = [None] * len(messages)

    def delivered(i: int):
        def cb(err, msg) -> None:
            if err is None:
                positions[i] = (msg.partition(), msg.offset())
        return cb

    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return positions


def poison(events: int, workdir: Path) -> dict:
    """Run the scenario with ``events`` valid events (+1% poison); return the table row."""
    kafka, mongo = services.kafka_server(), services.mongo_server()
    services.up(kafka)
    services.up(mongo)
    frame = _events(events)
    keys, values = encode_events(frame)
    mixed = mix(values, FRACTION)
    messages, key = [], keys[0]
    for value, index, _reason in mixed:
        key = keys[index] if index is not None else key
        messages.append((key, value))
    topic = f"fault-poison-{uuid.uuid4().hex[:8]}"
    db = topic.replace("-", "_")
    lake = Path(workdir) / topic
    lake.mkdir(parents=True, exist_ok=True)
    ensure_topics(kafka.address, [topic], PARTITIONS)
    positions = _produce(kafka.address, topic, messages)
    expected_dlq = {positions[i]: reason for i, (_, _, reason) in enumerate(mixed)
                    if reason is not None}
    store = MongoFlagStore(mongo.address, db, "flags")
    try:
        cfg = ConsumeConfig(kafka.address, topic, f"{topic}.dlq", f"g-{topic}", lake,
                            max_messages=len(messages), idle_timeout=120.0)
        t0 = time.monotonic()
        consumer = StreamConsumer(cfg, store, log=lambda _m: None)
        consumer.run()
        seconds = time.monotonic() - t0
        expected = RuleEngine().process(
            frame.sort("ts", "transaction_id")).select("transaction_id", *_rule_columns())
        result = audit(expected, lake_rows(lake), mongo_flags(store.collection))
        dlq = read_topic(kafka.address, f"{topic}.dlq", len(expected_dlq), timeout=120)
    finally:
        store.close()
        AdminClient({"bootstrap.servers": kafka.address}).delete_topics(
            [topic, f"{topic}.dlq"])
        with MongoClient(mongo.address) as client:
            client.drop_database(db)
    matched = 0
    for m in dlq:
        h = dict(m.headers() or [])
        where = (int(h["fraudlake.partition"]), int(h["fraudlake.offset"]))
        if where in expected_dlq and expected_dlq.pop(where) in h[DLQ_REASON_HEADER].decode():
            matched += 1
    n_poison = sum(r is not None for _, _, r in mixed)
    return {
        "scenario": f"poison {FRACTION:.0%} ({min(n_poison, len(POISON))} kinds)",
        "events": events,
        "lost": result.lost,
        "duplicated": result.duplicated,
        "recovery_s": None,
        "notes": f"{n_poison} poison → {matched} in DLQ; decisions differing "
                 f"{result.mismatched}; {len(messages) / seconds:,.0f} msg/s",
    }


def _rule_columns() -> list[str]:
    from tests.reliability._faults import DECISION_COLUMNS

    return DECISION_COLUMNS


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.fault_poison",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_count_arg, default=50_000,
                        help="valid events (default 50000); 1%% poison is added")
    args = parser.parse_args(argv)
    kafka_up = services.up(services.kafka_server()).started
    mongo_up = services.up(services.mongo_server()).started
    try:
        with tempfile.TemporaryDirectory(prefix="fault-poison-") as tmp:
            row = poison(args.events, Path(tmp))
    finally:
        if kafka_up:
            services.down(services.kafka_server())
        if mongo_up:
            services.down(services.mongo_server())
    print(json.dumps(row, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
