"""Helpers for the Trino tests: lake folders under the server's root, Parquet writers, the
rule edge cases as one event set, and the DuckDB side of every comparison."""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from fraudlake.contract import CORE_SCHEMA
from lake.layout import partition_dir
from queries import sql
from queries.staging import connect, open_source, resolve_input
from rules.model import RuleSet, load_rule_set

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
ONE_DEGREE_KM = 6371.0 * math.pi / 180


def lake_folder(root: Path) -> Iterator[Path]:
    """A fresh folder below the Trino server's lake root, removed afterwards."""
    folder = root / f".pytest-trino-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_partitioned(df: pl.DataFrame, folder: Path) -> Path:
    """``folder/year=YYYY/month=MM/part-0.parquet`` per month of ``ts`` (UTC)."""
    keyed = df.with_columns(_y=pl.col("ts").dt.year(), _m=pl.col("ts").dt.month())
    for (y, m), part in keyed.group_by("_y", "_m"):
        out = folder / partition_dir(int(y), int(m)) / "part-0.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        part.drop("_y", "_m").write_parquet(out)
    return folder


def _ev(tid: str, user: int, seconds: float = 0.0, amount: str = "10.00", lat: float = 0.0,
        lon: float = 0.0, offset: int = 0, ts: datetime = T0, fraud: bool | None = False,
        micros: int = 0) -> dict:
    return {"transaction_id": tid, "user_id": user,
            "ts": ts + timedelta(seconds=seconds, microseconds=micros),
            "amount": Decimal(amount), "lat": lat, "lon": lon, "utc_offset_min": offset,
            "is_fraud": fraud, "fraud_scenario": "x" if fraud else None}


def _at(hh: int, mm: int, day: int = 10, month: int = 3) -> datetime:
    return datetime(2024, month, day, hh, mm, tzinfo=UTC)


def edge_cases() -> pl.DataFrame:
    """The hand-built boundary cases of DESIGN.md's four rules, one user per case."""
    ev: list[dict] = []
    ev += [_ev(f"amt{i}", 1, i, amount=a, fraud=i == 2)
           for i, a in enumerate(["999.99", "1000.00", "1000.01", "1000000.00", "0.29"])]
    ev += [_ev(f"win{i}", 2, 15 * i) for i in range(5)]  # 5th exactly 60 s later: fires
    ev += [_ev(f"late{i}", 3, 15 * i, micros=1 if i == 4 else 0) for i in range(5)]  # +1 us
    ev += [_ev(t, 4) for t in ["t3", "t6", "t1", "t5", "t2", "t4"]]  # six ties
    ev += [_ev(f"causal{i}", 5, i) for i in range(4)] + [_ev("causal_late", 5, 10)]
    offsets = [(_at(9, 59), -300), (_at(10, 0), -300), (_at(4, 30), -300), (_at(5, 0), -300),
               (_at(23, 0), 330), (_at(23, 30), 330), (_at(18, 29), 330), (_at(18, 30), 330),
               (_at(3, 30), -210), (_at(3, 29), -210), (_at(8, 29), -210), (_at(8, 30), -210),
               (_at(22, 59), 0), (_at(23, 0), 0), (_at(0, 0), 0), (_at(4, 59), 0),
               (_at(5, 0), 0), (_at(20, 0), 180), (_at(23, 59, 31), 840), (_at(0, 1, 1), -720)]
    ev += [_ev(f"hour{i:02d}", 100 + i, ts=ts, offset=off) for i, (ts, off) in
           enumerate(offsets)]
    ev += [_ev("geo_a", 6), _ev("geo_b", 6, 60, lon=1.0), _ev("geo_c", 6, 3660, lon=2.0)]
    ev += [_ev("floor_a", 7), _ev("floor_b", 7, 10, lon=1.0), _ev("floor_c", 7, 10, lon=2.0)]
    ev += [_ev("dist_a", 8), _ev("dist_b", 8, 60, lon=0.9)]  # 100.08 km
    ev += [_ev("near_a", 9), _ev("near_b", 9, 60, lon=0.899)]  # 99.97 km
    ev += [_ev("order_b", 10, lat=51.5074, lon=-0.1278), _ev("order_a", 10, lat=48.8566,
           lon=2.3522), _ev("order_c", 10, 30, lat=48.8566, lon=2.3522)]
    ev += [_ev("month_a", 11, ts=_at(23, 59, 31, 3), lat=40.7128, lon=-74.006),  # across months
           _ev("month_b", 11, ts=_at(0, 10, 1, 4), lat=51.5074, lon=-0.1278)]
    ev += [_ev(f"frac{i}", 12, 14.999999 * i) for i in range(5)]  # microsecond timestamps
    return pl.DataFrame(ev, schema=CORE_SCHEMA)


def _haversine(lon: float) -> float:
    """km from (0, 0) to (0, lon), as the reference computes it."""
    from tests.reference_rules import haversine_km

    return haversine_km(0.0, 0.0, 0.0, lon, 6371.0)


#: Parameter variants the edge cases run under (each on both engines).
DEFAULT_SET = load_rule_set(None)
PARAM_VARIANTS: dict[str, RuleSet] = {
    "default": DEFAULT_SET,
    "wrap_23_to_5": DEFAULT_SET.with_overrides(["unusual_hour.start_hour=23",
                                                   "unusual_hour.end_hour=5"]),
    "count3_window2": DEFAULT_SET.with_overrides(["high_frequency.count=3",
                                                     "high_frequency.window_seconds=2"]),
    "threshold_0_29_speed_6600": DEFAULT_SET.with_overrides(
        ["high_amount.threshold=0.29", "geo_mismatch.speed_kmh=6600"]),
    "speed_7000": DEFAULT_SET.with_overrides(["geo_mismatch.speed_kmh=7000"]),
    # ulp boundaries (the JVM's trigonometry could differ from glibc's in the last bit here)
    "distance_exactly_dist_b": DEFAULT_SET.with_overrides(
        [f"geo_mismatch.distance_km={_haversine(0.9)!r}"]),
    "distance_one_ulp_above": DEFAULT_SET.with_overrides(
        [f"geo_mismatch.distance_km={math.nextafter(_haversine(0.9), math.inf)!r}"]),
    "speed_exactly_geo_b": DEFAULT_SET.with_overrides(
        [f"geo_mismatch.speed_kmh={_haversine(1.0) * 60!r}"]),
    "speed_one_ulp_below": DEFAULT_SET.with_overrides(
        [f"geo_mismatch.speed_kmh={math.nextafter(_haversine(1.0) * 60, 0.0)!r}"]),
}


def duckdb_query(folder: Path, name: str, params: RuleSet = DEFAULT_SET,
                 extra: dict[str, str] | None = None) -> pl.DataFrame:
    con = connect()
    open_source(con, resolve_input(str(folder)))
    return pl.from_arrow(sql.execute(con, name, params, extra))  # type: ignore[return-value]


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in a fixed order, timestamps in UTC (Trino hands back the session's zone)."""
    out = df.with_columns([pl.col(c).dt.convert_time_zone("UTC") for c, t in df.schema.items()
                           if isinstance(t, pl.Datetime) and t.time_zone])
    return out.sort(out.columns, nulls_last=True)
