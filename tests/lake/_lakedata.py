"""Tiny contract-conformant lakes for the S3 tests (history + live, hive-partitioned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from fraudlake.contract import EVENT_SCHEMA, LAKE_SCHEMA, RULE_NAMES
from lake.layout import partition_dir, transactions_dir


def events(n: int, year: int, month: int, seed: int = 0) -> pl.DataFrame:
    """``n`` contract events in one month (all EVENT_SCHEMA columns, exact types)."""
    start = datetime(year, month, 1, tzinfo=UTC)
    rows = {
        "transaction_id": [f"{year}{month:02d}-{seed:03d}-{i:06d}" for i in range(n)],
        "user_id": [i % 7 for i in range(n)],
        "ts": [start + timedelta(minutes=17 * i) for i in range(n)],
        "amount": [Decimal(f"{(i * 37 + seed) % 2000}.{i % 100:02d}") for i in range(n)],
        "lat": [48.85 + i * 1e-3 for i in range(n)],
        "lon": [2.35 - i * 1e-3 for i in range(n)],
        "utc_offset_min": [60] * n,
        "is_fraud": [i % 11 == 0 for i in range(n)],
        "fraud_scenario": [("card_testing" if i % 11 == 0 else None) for i in range(n)],
    }
    for name in EVENT_SCHEMA:
        rows.setdefault(name, [f"{name}-{i % 5}" for i in range(n)])
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def write_history(root: Path, months: list[tuple[int, int]], rows: int = 50) -> int:
    """Write ``root/year=YYYY/month=MM/part-0.parquet`` per month; return the row count."""
    for year, month in months:
        folder = root / partition_dir(year, month)
        folder.mkdir(parents=True, exist_ok=True)
        events(rows, year, month).write_parquet(folder / "part-0.parquet")
    return rows * len(months)


def write_live(lake: Path, year: int, month: int, first: int, rows: int = 20) -> Path:
    """One live-lake file with rule columns, named like the lake sink names them."""
    df = events(rows, year, month, seed=first).with_columns(
        *(pl.lit(i % 2 == 0).alias(r) for i, r in enumerate(RULE_NAMES)), pl.lit(True).alias(
            "flagged")).select(list(LAKE_SCHEMA))
    folder = transactions_dir(lake) / partition_dir(year, month)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"transactions-p0-o{first:020d}-{first + rows - 1:020d}.parquet"
    df.write_parquet(path)
    return path
