"""`streaming.demo --follow`: the embedded live feed appends, never deletes, at wall-clock rate."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flagstore.sqlite import SqliteFlagStore
from streaming.demo import follow_demo, main, next_offset, run_demo
from streaming.live_feed import LiveFeed, cards_for_rate


def test_follow_appends_after_an_earlier_run(tmp_path: Path) -> None:
    lake, db, metrics = tmp_path / "lake", tmp_path / "flags.sqlite", tmp_path / "m.json"
    first = run_demo(3_000, 7, 500, 1_000, lake, db, progress=False)
    with SqliteFlagStore(db) as store:
        before = store.count()
    assert before == first.flags["flagged"] > 0
    start = next_offset(lake)
    assert start == 3_000
    ticks = iter(range(13))  # twelve batches, a quarter second apart
    t0 = time.time()
    summary = follow_demo(8, 4.0, lake, db, None, metrics, tick=0.25,
                          stop=lambda: next(ticks, None) is None)
    elapsed = time.time() - t0
    assert 1 <= summary.events <= 4.0 * elapsed * 3 + 10  # about the wall clock's rate
    assert summary.rule_set_id == first.rule_set_id
    assert next_offset(lake) == start + summary.events
    events = pl.read_parquet(lake / "transactions", hive_partitioning=False)
    assert events.height == 3_000 + summary.events  # the earlier run's events are still there
    assert events["transaction_id"].n_unique() == events.height
    newest = events.sort("ts")["ts"][-1].timestamp()
    assert t0 - 5 < newest <= time.time() + 1  # live: event time = now
    with SqliteFlagStore(db) as store:
        assert store.count() == before + summary.flags["flagged"]
    doc = json.loads(metrics.read_text())
    assert doc["lag"] == 0 and doc["events"] == summary.events


def test_feed_never_hands_out_the_future_and_keeps_density() -> None:
    start = datetime(2026, 3, 2, 12, tzinfo=UTC)
    feed = LiveFeed(3, 2.0, start=start)
    assert feed.cards == cards_for_rate(3, 2.0, start)
    got = [feed.due(start + timedelta(minutes=m)) for m in (10, 10, 30, 90)]
    assert got[1].is_empty()  # nothing new when the clock has not moved
    for frame, until in zip(got, (10, 10, 30, 90), strict=True):
        if frame.height:
            assert frame["ts"].max() <= start + timedelta(minutes=until)
    all_ = pl.concat(got)
    assert all_["ts"].is_sorted() and all_["transaction_id"].n_unique() == all_.height
    assert all_["ts"].min() >= start
    rate = all_.height / (90 * 60)
    assert 0.5 < rate / 2.0 < 2.0  # ~2 a second, with the day's rhythm around it


def test_cards_scale_with_the_rate() -> None:
    when = datetime(2026, 3, 2, tzinfo=UTC)
    assert 9 < cards_for_rate(1, 10.0, when) / cards_for_rate(1, 1.0, when) < 11


@pytest.mark.parametrize("argv, needle", [
    (["--follow", "--users", "10"], "leave out --users"),
    (["--rate", "3"], "--rate needs --follow"),
])
def test_follow_flags_refused(argv: list[str], needle: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from fraudlake.cli import run

    code = run(main, [*argv, "--lake", str(tmp_path / "l"), "--flags-db", str(tmp_path / "f")])
    assert code == 2 and needle in capsys.readouterr().err
