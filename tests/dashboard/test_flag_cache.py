"""The page's flag cache answers exactly like the store: cold load, syncs, trimming, fallback."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata
from dashboard import flag_cache
from dashboard.cached_reader import MongoFlagSource
from dashboard.flag_cache import CacheConfig
from dashboard.page_flags import empty_page
from dashboard.sources import SqliteFlagSource
from flagstore.protocols import FlagReadError
from flagstore.query import FlagFilter, apply
from flagstore.schema import FLAG_SCHEMA

NOW = _dashdata.NOW
OVERLAP = timedelta(seconds=30)
FILTERS = _dashdata.FILTERS


@pytest.fixture
def flags(tmp_path: Path) -> pl.DataFrame:
    """90 events over the last hour (every 3rd flagged) + 30 sharing one ts; flagged_at
    stamped in insert order (one second apart per ten flags)."""
    live = pl.concat([
        _dashdata.events(90, NOW - timedelta(minutes=60), timedelta(seconds=40)),
        _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(0), seed=7),
    ])
    _dashdata.write_flags(tmp_path / "flags.sqlite", live)
    out = SqliteFlagSource(tmp_path / "flags.sqlite").export(FlagFilter())
    stamps = [NOW + timedelta(seconds=i // 10) for i in range(out.height)]
    return out.sample(fraction=1.0, shuffle=True, seed=3).with_columns(
        flagged_at=pl.Series(stamps, dtype=FLAG_SCHEMA["flagged_at"]))


def want(flags: pl.DataFrame, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
    got = apply(f, flags).sort(["ts", "transaction_id"], descending=True)
    return got if limit is None else got.head(limit)


def chunks(df: pl.DataFrame, size: int = 7) -> list[pl.DataFrame]:
    return list(df.iter_slices(size))


@pytest.mark.parametrize("f", FILTERS)
def test_cold_snapshot_answers_like_the_store(flags: pl.DataFrame, f: FlagFilter) -> None:
    snap = flag_cache.cold(chunks(flags), empty_page(), 10_000, OVERLAP)
    assert snap.complete_since is None and flag_cache.covers(snap, f)
    assert snap.watermark == flags["flagged_at"].max()
    assert flag_cache.view(snap, f).equals(want(flags, f))
    assert flag_cache.view(snap, f, 5).equals(want(flags, f, 5))
    assert flag_cache.count(snap, f) == want(flags, f).height
    assert flag_cache.matching(snap, f).equals(want(flags, f).reverse())


def test_trim_keeps_whole_ts_groups_and_says_from_when(flags: pl.DataFrame) -> None:
    # 30 flags share NOW-30min; a cut inside that group drops it whole
    newer = flags.filter(pl.col("ts") > NOW - timedelta(minutes=30)).height
    snap = flag_cache.cold(chunks(flags, 5), empty_page(), newer + 3, OVERLAP)
    assert snap.complete_since is not None and snap.frame.height == newer
    assert snap.complete_since > NOW - timedelta(minutes=30)
    assert not flag_cache.covers(snap, FlagFilter())
    recent = FlagFilter(since=snap.complete_since)
    assert flag_cache.covers(snap, recent)
    assert flag_cache.view(snap, recent).equals(want(flags, recent))
    older = flag_cache.older(FlagFilter(user_id=3), snap)
    assert older.until == snap.complete_since and older.user_id == 3
    # streaming trim (more than 2 * max_rows read) gives the same snapshot
    tiny = flag_cache.cold(chunks(flags, 1), empty_page(), 4, OVERLAP)
    assert tiny.frame.height <= 4
    assert flag_cache.view(tiny, FlagFilter()).equals(
        want(flags, FlagFilter(since=tiny.complete_since)))


def test_syncs_add_only_new_flags_late_ones_too(flags: pl.DataFrame) -> None:
    by_stamp = flags.sort("flagged_at")
    first, rest = by_stamp.head(40), by_stamp.slice(40)
    snap = flag_cache.cold(chunks(first), empty_page(), 10_000, OVERLAP)
    seen = first
    for lo in range(0, rest.height, 15):
        # what the store returns: everything stamped >= watermark - overlap (re-reads included)
        now_visible = pl.concat([seen, rest.slice(lo, 15)])
        delta = now_visible.filter(pl.col("flagged_at") >= snap.watermark - OVERLAP)
        snap = flag_cache.merge(snap, delta, 10_000, OVERLAP)
        seen = now_visible
        assert snap.frame.height == seen.height  # nothing doubled by the overlap
        for f in FILTERS:
            assert flag_cache.view(snap, f).equals(want(seen, f)), f
    assert flag_cache.merge(snap, empty_page(), 10_000, OVERLAP) is snap


def test_first_flags_into_an_empty_store_are_taken_once(flags: pl.DataFrame) -> None:
    snap = flag_cache.cold([], empty_page(), 100, OVERLAP)
    assert snap.frame.is_empty() and snap.watermark is None and snap.complete_since is None
    unstamped = flags.head(4).with_columns(flagged_at=pl.lit(None, FLAG_SCHEMA["flagged_at"]))
    snap = flag_cache.merge(snap, unstamped, 100, OVERLAP)  # read with no watermark: {}
    snap = flag_cache.merge(snap, unstamped, 100, OVERLAP)
    assert snap.frame.height == 4 and snap.watermark is None
    snap = flag_cache.merge(snap, pl.concat([unstamped, flags.slice(4, 6)]), 100, OVERLAP)
    assert snap.frame.height == 10 and snap.watermark == flags.slice(4, 6)["flagged_at"].max()


def test_merge_leaves_flags_older_than_the_held_range_to_the_store(flags: pl.DataFrame) -> None:
    newest = flags.sort("ts").tail(20)
    snap = flag_cache.cold(chunks(newest), empty_page(), 20, OVERLAP)
    late = flags.sort("ts").head(3).with_columns(flagged_at=pl.lit(NOW + timedelta(hours=1)))
    merged = flag_cache.merge(snap, late, 20, OVERLAP)
    assert merged.frame.height == 20 and merged.watermark == NOW + timedelta(hours=1)


def test_config_from_env() -> None:
    cfg = CacheConfig.from_env({"DASHBOARD_CACHE_FLAGS": "5", "DASHBOARD_SYNC": "inline",
                                "DASHBOARD_SYNC_OVERLAP_S": "2.5"})
    assert (cfg.max_rows, cfg.background, cfg.overlap) == (5, False, timedelta(seconds=2.5))
    with pytest.raises(ValueError, match="DASHBOARD_SYNC"):
        CacheConfig.from_env({"DASHBOARD_SYNC": "sometimes"})


def _answers(source, f: FlagFilter) -> tuple[list[str], int, list[str]]:
    return (source.recent(f, 7)["transaction_id"].to_list(), source.count(f, 1000),
            source.export(f)["transaction_id"].to_list())


def test_cached_mongo_source_matches_direct_queries(mongo_uri: str, mongo_db) -> None:
    """Real FerretDB, real sink: cached (whole, trimmed, inline and background syncs) and
    uncached sources give the same table, count and CSV rows, new flags included."""
    from flagstore.mongo import MongoFlagStore

    live = _dashdata.events(120, NOW - timedelta(minutes=60), timedelta(seconds=30))
    flagged = live.filter(pl.col("flagged"))
    sink = MongoFlagStore(mongo_uri, mongo_db.name, "flags", retry_seconds=10)
    sink.upsert(flagged.head(25))
    direct = MongoFlagSource(mongo_uri, mongo_db.name, "flags", cache=None)
    inline = MongoFlagSource(mongo_uri, mongo_db.name, "flags",
                             cache=CacheConfig(background=False, sync_seconds=0))
    trimmed = MongoFlagSource(mongo_uri, mongo_db.name, "flags",
                              cache=CacheConfig(max_rows=10, background=False, sync_seconds=0))
    background = MongoFlagSource(mongo_uri, mongo_db.name, "flags",
                                 cache=CacheConfig(sync_seconds=0.2))
    try:
        assert background.count(FlagFilter(), 1000) == 25
        sink.upsert(flagged.slice(25))  # arrives after the cold loads
        sink.upsert(flagged.head(5))  # a replay: nothing new
        for f in FILTERS[:6]:
            expected = _answers(direct, f)
            assert _answers(inline, f) == expected, f
            assert _answers(trimmed, f) == expected, f
        assert trimmed.snapshot().complete_since is not None
        deadline = time.monotonic() + 20
        while background.count(FlagFilter(), 1000) < flagged.height:
            assert time.monotonic() < deadline, "background sync never caught up"
            time.sleep(0.2)
        assert _answers(background, FlagFilter()) == _answers(direct, FlagFilter())
    finally:
        sink.close()
        for s in (direct, inline, trimmed, background):
            s.close()


def test_lost_store_keeps_the_snapshot_then_says_so(mongo_uri: str) -> None:
    """A store that goes away: reads serve the held flags (the label says how old), then,
    once the syncs have failed for ``stale_seconds``, one clear error per read."""
    import socket

    from flagstore.mongo import MongoFlagStore
    from fraudlake import services

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = services.mongo_server(port)
    services.up(server)
    try:
        sink = MongoFlagStore(server.address, "lost", "flags", retry_seconds=10)
        sink.upsert(_dashdata.events(30, NOW, timedelta(seconds=5)).filter(pl.col("flagged")))
        sink.close()
        source = MongoFlagSource(server.address, "lost", "flags", timeout_ms=300,
                                 cache=CacheConfig(sync_seconds=0.2, stale_seconds=2.0))
        assert source.count(FlagFilter(), 100) == 10
    finally:
        services.down(server)
    wait_for(lambda: source._error is not None, "a background sync to fail")
    assert source.count(FlagFilter(), 100) == 10  # still the held flags
    deadline = time.monotonic() + 20
    with pytest.raises(FlagReadError, match="sync failing") as info:
        while time.monotonic() < deadline:
            source.recent(FlagFilter(), 5)
            time.sleep(0.2)
    assert "\n" not in str(info.value)
    # the label flags a lag past 3 sync intervals + 2 s
    wait_for(lambda: "last synced" in source.label, "the label to show the lag")
    source.close()


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` (no sleep-then-assert): fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
