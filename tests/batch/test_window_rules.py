"""batch.window_rules and batch.fast_flags: the array engine decides exactly like the reference.

Random small event sets (few users, many same-ts ties, bursts, far-apart user ids) in input
order and in ts order, under random parameters; then the same through the fast backtest engine
across time chunks (carry), and its fallback to the SQL engine when user_id/ts hold NULLs.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.backtest import BacktestConfig, run_backtest
from batch.window_rules import order_events, window_flags
from fraudlake.contract import CORE_SCHEMA, RULE_NAMES
from queries.params import DEFAULT_PARAMS, RuleParams
from tests.reference_rules import reference_flags

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
PLACES = [(0.0, 0.0), (0.0, 0.9), (48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006),
          (-33.8688, 151.2093), (35.6762, 139.6503), (0.5, 0.5)]
SECONDS = [0, 0, 1, 5, 15, 30, 59, 60, 61, 90, 120, 600, 3600, 7200, 18000, 86400]
USERS = [1, 2, 3, -7, 2**62]
COLUMNS = ["transaction_id", *RULE_NAMES, "flagged"]


def make_event(tid: str, user: int, ts: datetime, place: tuple[float, float],
               amount: str = "10.00", offset: int = 0) -> dict:
    return {"transaction_id": tid, "user_id": user, "ts": ts, "amount": Decimal(amount),
            "lat": place[0], "lon": place[1], "utc_offset_min": offset,
            "is_fraud": None, "fraud_scenario": None}


@st.composite
def event_sets(draw) -> list[dict]:
    n = draw(st.integers(1, 40))
    ids = draw(st.permutations(range(n)))
    return [make_event(
        f"t{ids[i]:02d}", draw(st.sampled_from(USERS)),
        T0 + timedelta(seconds=draw(st.sampled_from(SECONDS)),
                       microseconds=draw(st.sampled_from([0, 0, 1, 999_999]))),
        draw(st.sampled_from(PLACES))) for i in range(n)]


params_strategy = st.one_of(st.just(DEFAULT_PARAMS), st.builds(
    RuleParams,
    high_frequency_window_seconds=st.sampled_from([0, 1, 30, 60, 120]),
    high_frequency_count=st.sampled_from([1, 2, 3, 5]),
    geo_mismatch_distance_km=st.sampled_from([0.0, 50.0, 100.0, 1000.0]),
    geo_mismatch_speed_kmh=st.sampled_from([0.0, 900.0, 5000.0]),
    geo_mismatch_min_hours=st.sampled_from([1 / 60, 0.5]),
))


def arrays(events: list[dict]):
    ts = np.array([int((e["ts"] - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
                   for e in events], dtype=np.int64)
    return (np.array([e["user_id"] for e in events], dtype=np.int64), ts,
            np.array([e["lat"] for e in events]), np.array([e["lon"] for e in events]),
            pa.chunked_array([pa.array([e["transaction_id"] for e in events])]))


def bools(rows: np.ndarray, n: int) -> list[bool]:
    assert len(set(rows.tolist())) == len(rows)  # each row once
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return out.tolist()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), params=params_strategy, ts_sorted=st.booleans())
def test_window_flags_match_reference(events, params, ts_sorted):
    if ts_sorted:  # the packed-sort path (ties still in random id order)
        events = sorted(events, key=lambda e: e["ts"])
    user, ts, lat, lon, tid = arrays(events)
    got = window_flags(user, ts, lat, lon, tid, params)
    expected = reference_flags(events, params)
    assert bools(got.high_frequency, len(events)) == expected["high_frequency"].to_list()
    assert bools(got.geo_mismatch, len(events)) == expected["geo_mismatch"].to_list()
    perm, us, tss = order_events(user, ts, tid)
    keys = [(e["user_id"], e["ts"], e["transaction_id"]) for e in events]
    assert [keys[i] for i in perm] == sorted(keys)
    assert us.tolist() == user[perm].tolist() and tss.tolist() == ts[perm].tolist()
    # carry: each user's last event plus the last window, in ts order
    last = {}
    for i in perm:
        last[keys[i][0]] = i
    window = timedelta(seconds=params.high_frequency_window_seconds)
    newest = max(e["ts"] for e in events)
    wanted = set(last.values()) | {i for i, e in enumerate(events) if e["ts"] >= newest - window}
    assert set(got.carry.tolist()) == wanted
    assert np.all(np.diff(ts[got.carry]) >= 0)


def test_empty_and_single_rows():
    empty = np.zeros(0, dtype=np.int64)
    got = window_flags(empty, empty, empty.astype(float), empty.astype(float),
                       pa.chunked_array([pa.array([], pa.string())]), DEFAULT_PARAMS)
    assert len(got.high_frequency) == 0 and len(got.carry) == 0
    one = window_flags(*arrays([make_event("a", 5, T0, PLACES[0])]),
                       DEFAULT_PARAMS.with_overrides(["high_frequency.count=1"]))
    assert one.high_frequency.tolist() == [0] and one.geo_mismatch.tolist() == []
    assert one.carry.tolist() == [0]


def random_lake(root: Path, seed: int, n: int = 600) -> list[dict]:
    """Three hive months of shuffled or ts-sorted events; bursts and ties at month ends."""
    rng = random.Random(seed)
    events: list[dict] = []
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(n):
        events.append(make_event(f"r{len(events):04d}", rng.randrange(12),
                                 start + timedelta(seconds=rng.randrange(90 * 86400)),
                                 rng.choice(PLACES), rng.choice(["5.00", "1000.01"]),
                                 rng.choice([-300, 0, 330])))
    for month_end in (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)):
        for k in range(12):  # ties and a burst across the boundary, far-apart places
            events.append(make_event(f"b{len(events):04d}-{rng.randrange(99)}", 100 + k % 2,
                                     month_end + timedelta(seconds=rng.choice([-20, -1, 0, 3])),
                                     rng.choice(PLACES)))
    df = pl.DataFrame(events, schema=CORE_SCHEMA).with_columns(
        is_fraud=pl.col("amount") > 1000, fraud_scenario=pl.when(pl.col("amount") > 1000)
        .then(pl.lit("big_ticket")))
    for month, part in df.with_columns(m=pl.col("ts").dt.month()).group_by("m"):
        folder = root / f"year=2024/month={month[0]:02d}"
        folder.mkdir(parents=True)
        part = part.drop("m")
        part = part.sort("ts") if seed % 2 else part.sample(fraction=1.0, shuffle=True, seed=seed)
        part.write_parquet(folder / "part-00000.parquet")
    return df.to_dicts()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_fast_engine_across_chunks_equals_sql_engine_and_reference(tmp_path, seed):
    events = random_lake(tmp_path / "lake", seed)
    params = DEFAULT_PARAMS.with_overrides(["high_frequency.count=3"])
    results = {}
    for engine in ("auto", "sql"):
        out = tmp_path / f"{engine}.parquet"
        results[engine] = run_backtest(BacktestConfig(
            input=str(tmp_path / "lake"), params=params, flags_out=out, chunk_rows=1,
            progress=False, engine=engine))
        flags = pl.read_parquet(out).sort("transaction_id")
        assert flags.equals(reference_flags(events, params).sort("transaction_id")
                            .select(COLUMNS)), engine
    assert results["auto"].engine == "fast" and results["sql"].engine == "sql"
    assert results["auto"].chunks == 3
    assert results["auto"].overall == results["sql"].overall


def test_null_user_falls_back_to_sql_and_null_place_stays_fast(tmp_path):
    events = random_lake(tmp_path / "lake", 5, n=200)
    df = pl.DataFrame(events, schema=CORE_SCHEMA)
    nulls = df.with_columns(lat=pl.when(pl.col("transaction_id") == "r0001").then(None)
                            .otherwise(pl.col("lat")))
    (tmp_path / "a").mkdir()
    nulls.write_parquet(tmp_path / "a" / "x.parquet")
    fast = run_backtest(BacktestConfig(input=str(tmp_path / "a"), progress=False))
    sql = run_backtest(BacktestConfig(input=str(tmp_path / "a"), progress=False, engine="sql"))
    assert fast.engine == "fast" and fast.overall == sql.overall
    (tmp_path / "b").mkdir()
    df.with_columns(user_id=pl.when(pl.col("transaction_id") == "r0001").then(None)
                    .otherwise(pl.col("user_id"))).write_parquet(tmp_path / "b" / "x.parquet")
    fallback = run_backtest(BacktestConfig(input=str(tmp_path / "b"), progress=False))
    assert fallback.engine == "sql"


def test_ids_take_across_parts_keeps_the_asked_order():
    from batch.fast_flags import _Ids
    from batch.window_rules import arrow_int64

    parts = [pa.array(["a0", "a1"]), pa.array([], pa.string()), pa.array(["b0", "b1", "b2"])]
    ids = _Ids(parts)
    assert ids.take(arrow_int64(np.array([4, 0, 2, 1, 3]))).to_pylist() == [
        "b2", "a0", "b0", "a1", "b1"]
    assert ids.take(arrow_int64(np.zeros(0, dtype=np.int64))).to_pylist() == []
    assert ids.tail(2).to_pylist() == ["b0", "b1", "b2"] and len(ids.tail(0)) == 5


def test_fast_engine_on_an_empty_file(tmp_path):
    pl.DataFrame(schema=CORE_SCHEMA).write_parquet(tmp_path / "empty.parquet")
    out = tmp_path / "out" / "flags.parquet"
    fast = run_backtest(BacktestConfig(input=str(tmp_path / "empty.parquet"), flags_out=out,
                                       progress=False))
    sql = run_backtest(BacktestConfig(input=str(tmp_path / "empty.parquet"), progress=False,
                                      engine="sql"))
    assert fast.engine == "fast" and fast.overall == sql.overall and fast.overall.rows == 0
    assert pl.read_parquet(out).columns == COLUMNS and pl.read_parquet(out).height == 0
