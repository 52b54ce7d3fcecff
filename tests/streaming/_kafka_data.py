"""Small deterministic event sets for the live-pipeline tests: bursts, same-ts ties, night
hours, impossible travel and big amounts, so every rule fires; plus poison messages."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from confluent_kafka import Consumer, Producer

from fraudlake.contract import EVENT_SCHEMA, conform
from lake.layout import data_files, transactions_dir
from streaming.consume_loop import ConsumeConfig, StreamConsumer
from streaming.kafka_io import producer_config
from streaming.produce import produce

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
CITIES = [(48.8566, 2.3522, 60), (40.7128, -74.006, -300), (35.6762, 139.6503, 540),
          (51.5072, -0.1276, 0), (-33.8688, 151.2093, 660), (19.076, 72.8777, 330)]


def make_events(n: int, users: int = 30, seed: int = 1) -> pl.DataFrame:
    """``n`` events over ``users`` users in ~2 h, in ts order, with many ties and bursts."""
    rng = np.random.default_rng(seed)
    user = rng.integers(1, users + 1, n)
    # coarse seconds (many exact ties) plus bursts: a third of events share a user's burst second
    secs = np.sort(rng.integers(0, 7200, n))
    burst = rng.random(n) < 0.3
    secs[burst] = (secs[burst] // 20) * 20
    city = rng.integers(0, len(CITIES), n)
    home = (user % len(CITIES))
    city = np.where(rng.random(n) < 0.85, home, city)
    cents = rng.integers(100, 30_000, n)
    cents[rng.random(n) < 0.05] = 150_000  # > 1000.00: high_amount
    order = np.lexsort((np.arange(n), secs))
    rows = {
        "transaction_id": [f"e{seed}-{i:06d}" for i in range(n)],
        "user_id": user[order].astype(np.int64),
        "ts": [T0 + timedelta(seconds=int(s)) for s in secs[order]],
        "amount": [f"{c // 100}.{c % 100:02d}" for c in cents[order]],
        "lat": [CITIES[c][0] for c in city[order]],
        "lon": [CITIES[c][1] for c in city[order]],
        "utc_offset_min": [CITIES[c][2] for c in city[order]],
        "is_fraud": (rng.random(n) < 0.1).tolist(),
        "fraud_scenario": None,
        "currency": "USD",
        "merchant_id": [f"m{int(x)}" for x in rng.integers(0, 50, n)],
        "channel": "pos",
        "city": "somewhere",
    }
    df = pl.DataFrame(rows).with_columns(
        pl.col("amount").str.to_decimal(scale=2), pl.col("fraud_scenario").cast(pl.String))
    return conform(df.select([c for c in EVENT_SCHEMA if c in df.columns]))


POISON: list[bytes] = [
    b"not json",
    b'{"transaction_id": "p1"}',
    b'[1, 2, 3]',
    json.dumps({"transaction_id": "p2", "user_id": 1, "ts": "2025-01-01T00:00:00+00:00",
                "amount": "-5.00", "lat": 1.0, "lon": 1.0, "utc_offset_min": 0}).encode(),
    json.dumps({"transaction_id": "p3", "user_id": 1, "ts": "2025-01-01T00:00:00+00:00",
                "amount": "5.00", "lat": 123.0, "lon": 1.0, "utc_offset_min": 0}).encode(),
    b'{"transaction_id": "p4", "user_id": 1, "ts": "2025-01-01T00:00:00+00:00", '
    b'"amount": NaN, "lat": 1.0, "lon": 1.0, "utc_offset_min": 0}',
]


def send(bootstrap: str, topic: str, events: pl.DataFrame, poison: list[bytes] = ()) -> None:
    """Produce the events (keyed by user) and then the poison messages (key b"poison")."""
    producer = Producer(producer_config(bootstrap))
    stats = produce(producer, topic, [events], progress=False)
    assert stats.failed == 0 and stats.events == events.height
    for value in poison:
        producer.produce(topic, value=value, key=b"poison")
    assert producer.flush(30) == 0


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list:
    """All messages of a topic (until ``expect`` arrived or the timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            got.extend(m for m in consumer.consume(1000, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return got


def consume_config(bootstrap: str, topic: str, lake: Path, **kw) -> ConsumeConfig:
    """The tests' consumer: dead letters to ``<topic>.dlq``, group ``g-<topic>``, stops after
    3 s without messages, metrics every second; ``kw`` sets any other field."""
    return ConsumeConfig(bootstrap, topic, f"{topic}.dlq", f"g-{topic}", lake,
                         **{"idle_timeout": 3.0, "metrics_interval": 1.0, **kw})


def run_consumer(cfg: ConsumeConfig, store) -> StreamConsumer:
    """Run a consumer (silent) until it stops; return it for its stats."""
    consumer = StreamConsumer(cfg, store, log=lambda _m: None)
    consumer.run()
    return consumer


def lake_events(lake: Path) -> pl.DataFrame:
    """Every row of the lake's data files (``lake.layout``), year/month included, by id."""
    files = [str(f) for f in data_files(transactions_dir(lake))]
    return duckdb.sql("select * from read_parquet($files, hive_partitioning = true) "
                      "order by transaction_id", params={"files": files}).pl()
