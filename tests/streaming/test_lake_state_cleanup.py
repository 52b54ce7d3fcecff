"""streaming.lake_state: temp files of writes killed before their rename are removed when the
partition is taken, and only that topic partition's (never compaction's, never another's)."""

from __future__ import annotations

from pathlib import Path

from lake.layout import file_name
from lake.layout import partition_temp_files as temp_files
from streaming.lake_state import discard_uncommitted


def test_discard_removes_only_this_partitions_sink_temp_files(tmp_path: Path) -> None:
    folder = tmp_path / "year=2026" / "month=11"
    folder.mkdir(parents=True)

    def temp(topic: str, partition: int, compacted: bool = False) -> Path:
        path = folder / f".{file_name(topic, partition, 5, 9, compacted)}.1a2b3c4d.tmp"
        path.write_bytes(b"half a parquet file")
        return path

    mine = temp("t.x", 0)
    others = [temp("t.x", 1), temp("t.x", 0, compacted=True), temp("t", 0), temp("t.x-p0-oz", 0)]
    kept = folder / file_name("t.x", 0, 0, 4)
    kept.write_bytes(b"committed")

    assert temp_files(tmp_path, "t.x", 0) == [mine]
    assert discard_uncommitted(tmp_path, "t.x", 0, committed=5) == [mine]
    assert not mine.exists() and kept.exists() and all(p.exists() for p in others)
    assert temp_files(tmp_path / "missing", "t.x", 0) == []
