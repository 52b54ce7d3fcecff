"""Small synthetic lakes for backtest tests: hive month folders, month-straddling bursts and
trips, long-idle users, overlapping files."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from fraudlake.contract import CORE_SCHEMA
from lake.layout import partition_dir

CITIES = [(48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006), (35.6762, 139.6503),
          (48.9, 2.4)]
SCENARIOS = ["card_testing", "big_ticket", "night_spend"]


def synthetic_events(n: int = 1500, seed: int = 3) -> list[dict]:
    """Events over Jan..Apr 2024 for 25 users, with bursts that straddle month ends."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    span = (datetime(2024, 5, 1, tzinfo=UTC) - start).total_seconds()
    events: list[dict] = []

    def add(user: int, ts: datetime, amount: str | None = None, city=None) -> None:
        fraud = rng.random() < 0.1
        lat, lon = city or rng.choice(CITIES)
        events.append({
            "transaction_id": f"tx{len(events):05d}-{rng.randrange(100):02d}", "user_id": user,
            "ts": ts, "amount": Decimal(amount or f"{rng.choice([5, 50, 999, 1000, 4000])}."
                                                 f"{rng.choice(['00', '01', '99'])}"),
            "lat": lat, "lon": lon, "utc_offset_min": rng.choice([-300, -210, 0, 330, 60]),
            "is_fraud": fraud, "fraud_scenario": rng.choice(SCENARIOS) if fraud else None})

    for _ in range(n):
        add(rng.randrange(25), start + timedelta(seconds=rng.randrange(int(span))))
    for month_end in (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)):
        for k in range(7):  # a burst from 40 s before to 30 s after midnight
            add(100, month_end + timedelta(seconds=-40 + 10 * k), city=CITIES[0])
        add(101, month_end - timedelta(seconds=5), city=CITIES[0])  # trip across the boundary
        add(101, month_end + timedelta(seconds=5), city=CITIES[2])
        for _ in range(6):  # ties at the boundary's first second
            add(102, month_end, city=CITIES[1])
        add(104, month_end - timedelta(seconds=10), city=CITIES[1])  # tie at a chunk's end:
        add(104, month_end - timedelta(seconds=10), city=CITIES[0])  # the larger id is last
        add(104, month_end + timedelta(seconds=10), city=CITIES[4])
    add(103, datetime(2024, 1, 3, tzinfo=UTC), city=CITIES[0])  # idle for months, then far
    add(103, datetime(2024, 4, 20, tzinfo=UTC), city=CITIES[3])
    return events


def write_hive(events: list[dict], root: Path, labels: bool = True) -> Path:
    df = pl.DataFrame(events, schema=CORE_SCHEMA)
    if not labels:
        df = df.drop("is_fraud", "fraud_scenario")
    df = df.with_columns(_y=pl.col("ts").dt.year(), _m=pl.col("ts").dt.month())
    for (y, m), part in df.group_by("_y", "_m"):
        folder = root / partition_dir(y, m)
        folder.mkdir(parents=True, exist_ok=True)
        part.drop("_y", "_m").sample(fraction=1.0, shuffle=True, seed=1).write_parquet(
            folder / "part-00000.parquet")
    return root
