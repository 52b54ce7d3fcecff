"""Random contract events with many timestamp ties, bursts and long jumps, for rule tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import polars as pl

from fraudlake.contract import EVENT_SCHEMA

START = datetime(2024, 3, 31, 22, 0, tzinfo=UTC)


def random_events(n: int, n_users: int = 20, seed: int = 0, span_s: int = 4 * 3600) -> pl.DataFrame:
    """Events sorted by ts; seconds drawn from few values per user so ties and bursts abound."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n)
    base = rng.integers(0, span_s, n)
    # bursts: a third of the events land within a few seconds of another event
    burst = rng.random(n) < 0.35
    src = rng.integers(0, n, burst.sum())
    base[burst] = base[src] + rng.integers(0, 8, burst.sum())
    user[burst] = user[src]
    base = base - base % rng.choice([1, 1, 5, 30], n)  # coarse seconds → exact ties
    micro = np.where(rng.random(n) < 0.1, rng.integers(0, 1_000_000, n), 0)
    ts_us = (int(START.timestamp()) + base) * 1_000_000 + micro
    cities = np.array([[48.85, 2.35], [51.5, -0.12], [40.71, -74.0], [48.86, 2.36],
                       [35.68, 139.69], [49.6, 2.9], [-33.9, 151.2]])
    city = rng.integers(0, len(cities), n)
    cents = rng.choice([100_000, 100_001, 99_999, 1, 250_000], n)
    cents = np.where(rng.random(n) < 0.5, rng.integers(0, 300_000, n), cents)
    df = pl.DataFrame({
        "transaction_id": [f"tx{i:06d}" for i in rng.permutation(n)],
        "user_id": user.astype(np.int64),
        "ts": pl.Series(ts_us).cast(pl.Datetime("us", "UTC")),
        "amount": [Decimal(int(c)) / 100 for c in cents],
        "lat": cities[city, 0] + rng.normal(0, 0.01, n),
        "lon": cities[city, 1] + rng.normal(0, 0.01, n),
        "utc_offset_min": rng.choice([0, 60, 120, -300, 330, 540, -600], n).astype(np.int32),
        "is_fraud": rng.random(n) < 0.05,
        "fraud_scenario": pl.Series([None] * n, dtype=pl.String),
    })
    df = df.with_columns(pl.col("amount").cast(pl.Decimal(18, 2)))
    extras = {k: pl.lit("x").cast(v) for k, v in EVENT_SCHEMA.items() if k not in df.columns}
    return df.with_columns(**extras).sort("ts", "transaction_id")


def random_batches(df: pl.DataFrame, seed: int, max_size: int = 50) -> list[pl.DataFrame]:
    """Cut a ts-ordered frame into random-size micro-batches, shuffling rows within each."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < df.height:
        size = int(rng.integers(1, max_size + 1))
        chunk = df.slice(i, size)
        out.append(chunk.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(1 << 30))))
        i += size
    return out
