"""The live simulator API used by streaming.produce, and the time-zone tables under both."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraudlake import contract
from simulator import SCENARIOS, build_world, simulate
from simulator.cities import load_cities
from simulator.tz import offset_table

START = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world():
    return build_world(5, 3_000)


@pytest.fixture(scope="module")
def stream(world) -> list[pl.DataFrame]:
    return list(simulate(world, START, 60_000, seed=9, events_per_second=250.0,
                         chunk_rows=7_000))


def test_frames_have_exact_contract_types(stream):
    assert len(stream) == 9
    for df in stream:
        assert dict(df.schema) == contract.EVENT_SCHEMA


def test_ts_start_at_start_spaced_by_rate_and_increase(stream):
    ts = pl.concat(stream)["ts"]
    assert ts[0] == START
    assert ts.is_sorted() and ts.n_unique() == len(ts)
    assert ts[-1] - ts[0] == timedelta(seconds=(60_000 - 1) / 250.0)


def test_ids_unique_and_sortable_like_ts(stream):
    df = pl.concat(stream)
    assert df["transaction_id"].n_unique() == df.height
    assert df["transaction_id"].is_sorted()
    assert df["transaction_id"][0] == "L20261129030000000000-9-0000000000"


def test_all_scenarios_labelled(stream):
    df = pl.concat(stream)
    assert (df["is_fraud"] == df["fraud_scenario"].is_not_null()).all()
    assert set(df["fraud_scenario"].drop_nulls().unique()) == set(SCENARIOS)
    assert 0.001 <= df["is_fraud"].mean() <= 0.006


def test_night_spend_is_at_night_locally_and_offsets_are_real(stream):
    df = pl.concat(stream)
    night = df.filter(pl.col("fraud_scenario") == "night_spend")
    hours = night.select((pl.col("ts") + pl.duration(minutes=pl.col("utc_offset_min")))
                         .dt.hour())["ts"]
    assert night.height > 0 and (hours < 5).all()
    zone = dict(zip(load_cities().name, load_cities().zone, strict=True))
    for r in df.sample(300, seed=2).to_dicts():
        off = r["ts"].astimezone(zoneinfo.ZoneInfo(zone[r["city"]])).utcoffset()
        assert off == timedelta(minutes=r["utc_offset_min"])


def test_deterministic_for_a_seed(world):
    a = pl.concat(list(simulate(world, START, 5_000, seed=1, events_per_second=50.0)))
    b = pl.concat(list(simulate(world, START, 5_000, seed=1, events_per_second=50.0)))
    c = pl.concat(list(simulate(world, START, 5_000, seed=2, events_per_second=50.0)))
    assert a.equals(b) and not a.equals(c)


def test_same_world_as_history(world):
    df = pl.concat(list(simulate(world, START, 2_000, seed=1, events_per_second=10.0)))
    assert df["user_id"].is_between(100_001, 100_000 + world.n_users).all()
    assert set(df["city"].unique()) <= set(world.cities.name)


def test_bad_arguments_rejected(world):
    with pytest.raises(ValueError):
        next(simulate(world, START, 10, seed=1, events_per_second=0))
    with pytest.raises(ValueError):
        next(simulate(world, datetime(2026, 1, 1), 10, seed=1, events_per_second=1))


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Adelaide",
                                  "Asia/Kathmandu", "America/Santiago", "Asia/Tehran"])
def test_offset_table_matches_zoneinfo(zone):
    table = offset_table((zone,))
    rng = np.random.default_rng(0)
    secs = rng.integers(int(datetime(1999, 1, 1, tzinfo=UTC).timestamp()),
                        int(datetime(2031, 1, 1, tzinfo=UTC).timestamp()), 3_000)
    got = table.offset_min(np.zeros(len(secs), dtype=np.int32), secs)
    tz = zoneinfo.ZoneInfo(zone)
    want = [datetime.fromtimestamp(int(s), UTC).astimezone(tz).utcoffset() // timedelta(minutes=1)
            for s in secs]
    assert got.tolist() == want


def test_offset_grid_agrees_with_table_at_a_dst_switch():
    cities = load_cities()
    table = offset_table(cities.zones)
    start = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
    grid = table.grid(start, start + 31 * 86_400)
    zone = np.arange(len(cities.zones)).repeat(200)
    secs = np.tile(np.linspace(start, start + 31 * 86_400 - 1, 200).astype(np.int64),
                   len(cities.zones))
    assert (grid.offset_min(zone, secs) == table.offset_min(zone, secs)).all()
    ny = cities.zones.index("America/New_York")
    before = int(datetime(2024, 3, 10, 6, 59, tzinfo=UTC).timestamp())
    assert grid.offset_min(np.array([ny, ny]), np.array([before, before + 60])).tolist() == [
        -300, -240]
