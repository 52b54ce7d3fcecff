"""streaming.lake_state: what a consumer finds in the lake when it takes a partition."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lake.layout import partition_files
from streaming.engine import RuleEngine
from streaming.lake_sink import LakeSink
from streaming.lake_state import discard_uncommitted, partition_history
from tests.streaming._kafka_data import make_events


def _write(sink: LakeSink, df: pl.DataFrame, topic: str, partition: int, first: int) -> None:
    decided = RuleEngine().process(df).with_columns(
        _offset=pl.int_range(first, first + df.height, dtype=pl.Int64))
    sink.write(decided, topic, partition, first, first + df.height - 1)


def test_history_and_discard_by_committed_offset(tmp_path: Path) -> None:
    events = make_events(300, seed=2)
    sink = LakeSink(tmp_path)
    tx = tmp_path / "transactions"
    _write(sink, events.slice(0, 100), "t.x", 0, 0)
    _write(sink, events.slice(100, 100), "t.x", 0, 100)
    _write(sink, events.slice(200, 100), "t.x", 0, 200)
    _write(sink, events.slice(0, 50), "t.x", 1, 0)  # another partition: never touched
    _write(sink, events.slice(0, 50), "t", 0, 0)  # a topic whose name is a prefix

    assert [(f.first, f.last) for f in partition_files(tx, "t.x", 0)] == [
        (0, 99), (100, 199), (200, 299)]
    history = partition_history(tx, "t.x", 0, committed=200)
    assert history is not None and history.height == 200
    assert set(history["transaction_id"]) == set(events["transaction_id"][:200])
    assert partition_history(tx, "t.x", 0, committed=0) is None

    removed = discard_uncommitted(tx, "t.x", 0, committed=100)
    assert len(removed) == 2
    assert [(f.first, f.last) for f in partition_files(tx, "t.x", 0)] == [(0, 99)]
    assert len(partition_files(tx, "t.x", 1)) == 1 and len(partition_files(tx, "t", 0)) == 1
    assert partition_files(tmp_path / "missing", "t.x", 0) == []
