"""`streaming.demo --follow`: the embedded live feed appends, never deletes, at wall-clock rate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from flagstore.sqlite import SqliteFlagStore
from queries.params import DEFAULT_PARAMS
from streaming.demo import follow_demo, next_offset, run_demo


def test_follow_appends_after_an_earlier_run(tmp_path: Path) -> None:
    lake, db, metrics = tmp_path / "lake", tmp_path / "flags.sqlite", tmp_path / "m.json"
    first = run_demo(3_000, 7, 500, 50.0, 1_000, lake, db, progress=False)
    with SqliteFlagStore(db) as store:
        before = store.count()
    assert before == first.flags["flagged"] > 0
    start = next_offset(lake)
    assert start == 3_000
    ticks = iter(range(10))  # nine batches, a quarter second apart
    t0 = time.time()
    summary = follow_demo(8, 500, 400.0, lake, db, DEFAULT_PARAMS, metrics, tick=0.25,
                          stop=lambda: next(ticks, None) is None)
    elapsed = time.time() - t0
    assert 400 * 2.0 <= summary.events <= 400 * elapsed + 50  # the wall clock's rate
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
