"""The live simulator API used by streaming.produce, and the time-zone tables under both."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from fraudlake import contract
from simulator import DENSITY_PER_DAY, SCENARIOS, build_world, simulate
from simulator.cities import load_cities
from simulator.stream import live_span, rows_per_day
from simulator.tz import offset_table

END = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world():
    return build_world(5, 3_000, 2000, 2026)


@pytest.fixture(scope="module")
def stream(world) -> list[pl.DataFrame]:
    return list(simulate(world, END, 60_000, seed=9, chunk_rows=7_000))


def test_frames_have_exact_contract_types(stream):
    assert [df.height for df in stream] == [7_000] * 8 + [4_000]
    for df in stream:
        assert dict(df.schema) == contract.EVENT_SCHEMA


def test_event_time_ends_before_end_at_a_realistic_density(world, stream):
    df = pl.concat(stream)
    assert df["ts"].is_sorted() and df["ts"].max() < END
    start_s, end_s = live_span(world, END, 60_000)
    assert df["ts"].min() >= datetime.fromtimestamp(start_s, UTC)
    days = (end_s - start_s) / 86_400
    open_cards = df["user_id"].n_unique()
    assert 0.5 * DENSITY_PER_DAY <= df.height / (open_cards * days) <= 2 * DENSITY_PER_DAY
    assert rows_per_day(world, end_s) == pytest.approx(60_000 / days, rel=0.01)


def test_ids_unique_and_sortable_like_ts(stream):
    df = pl.concat(stream)
    assert df["transaction_id"].n_unique() == df.height
    assert df["transaction_id"].is_sorted()
    assert df["transaction_id"][0] == "L20261129030000-9-0000000000"


def test_all_scenarios_labelled(stream):
    df = pl.concat(stream)
    assert (df["is_fraud"] == df["fraud_scenario"].is_not_null()).all()
    assert set(df["fraud_scenario"].drop_nulls().unique()) == set(SCENARIOS)
    assert 0.001 <= df["is_fraud"].mean() <= 0.006


def test_offsets_are_real(stream):
    df = pl.concat(stream)
    zone = dict(zip(load_cities().name, load_cities().zone, strict=True))
    for r in df.sample(300, seed=2).to_dicts():
        off = r["ts"].astimezone(zoneinfo.ZoneInfo(zone[r["city"]])).utcoffset()
        assert off == timedelta(minutes=r["utc_offset_min"])


def test_deterministic_for_a_seed(world):
    a = pl.concat(list(simulate(world, END, 5_000, seed=1)))
    b = pl.concat(list(simulate(world, END, 5_000, seed=1)))
    c = pl.concat(list(simulate(world, END, 5_000, seed=2)))
    assert a.equals(b) and not a.equals(c)


def test_a_small_stream_spans_at_least_a_day(world):
    df = pl.concat(list(simulate(world, END, 50, seed=1)))
    assert df.height == 50 and df["ts"].max() < END
    assert df["ts"].min() >= END - timedelta(days=1)


def test_same_world_as_history(world):
    df = pl.concat(list(simulate(world, END, 2_000, seed=1)))
    assert df["user_id"].is_between(100_001, 100_000 + world.n_cards).all()
    assert set(df["city"].unique()) <= set(world.cities.name)


def test_bad_arguments_rejected(world):
    with pytest.raises(ValueError):
        next(simulate(world, END, 10, seed=1, chunk_rows=0))
    with pytest.raises(ValueError):
        next(simulate(world, datetime(2026, 1, 1), 10, seed=1))
    with pytest.raises(ValueError, match="fewer events or more cards"):
        next(simulate(build_world(5, 10, 2000, 2026), END, 10**9, seed=1))


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


@pytest.mark.parametrize("users, count, message", [(1, 10, "use more cards"),
                                                   (100, 10**9, "fewer events or more cards")])
def test_produce_refuses_a_stream_the_world_cannot_hold(capsys, users, count, message):
    from fraudlake.cli import run
    from streaming import produce

    argv = ["--bootstrap", "127.0.0.1:1", "--users", str(users), "--count", str(count)]
    assert run(produce.main, argv) == 2  # refused before any connection is tried
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
