"""Compaction: many small sink files → one, atomically; replays stay covered; crashes recover."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from fraudlake.cli import run
from lake.compact import compact, main, recover
from lake.layout import RANGES_KEY
from streaming.engine import RuleEngine
from streaming.lake_sink import LakeSink
from tests.streaming._stream_events import random_events


def _fill(root: Path, n: int = 600, step: int = 50, skip: tuple[int, ...] = ()) -> pl.DataFrame:
    df = RuleEngine().process(random_events(n, n_users=10, seed=3)).with_columns(
        _offset=pl.int_range(0, n, dtype=pl.Int64))
    sink = LakeSink(root)
    for a in range(0, n, step):
        if a in skip:
            continue
        sink.write(df.slice(a, step), "tx", 0, a, a + step - 1)
    return df


def _files(root: Path) -> list[Path]:
    return sorted((root / "transactions").rglob("*.parquet"))


def _rows(root: Path) -> pl.DataFrame:
    return pl.read_parquet(_files(root), hive_partitioning=False)


def test_compacts_each_month_into_one_file_with_its_ranges(tmp_path: Path) -> None:
    df = _fill(tmp_path)
    before = len(_files(tmp_path))
    report = compact(tmp_path, min_files=2, min_age_seconds=0)
    files = _files(tmp_path)
    assert before >= 13 and len(files) == 2 and report.files_out == 2
    assert all(f.name.endswith(".c.parquet") for f in files)
    assert _rows(tmp_path).sort("transaction_id").equals(
        _rows(tmp_path).unique("transaction_id").sort("transaction_id"))
    assert _rows(tmp_path).height == df.height
    meta = pq.read_metadata(files[0]).metadata[RANGES_KEY.encode()]
    assert meta.startswith(b"[[0,")


def test_replay_after_compaction_writes_nothing_new(tmp_path: Path) -> None:
    df = _fill(tmp_path)
    compact(tmp_path, min_files=2, min_age_seconds=0)
    files = _files(tmp_path)
    sink = LakeSink(tmp_path)
    for a in range(0, 600, 70):  # other boundaries than the original batches
        part = df.slice(a, 70)
        assert sink.write(part, "tx", 0, a, a + part.height - 1) == []
    assert _files(tmp_path) == files and _rows(tmp_path).height == df.height


def test_gaps_stay_uncovered(tmp_path: Path) -> None:
    df = _fill(tmp_path, skip=(100, 150))  # offsets 100..199 not written yet
    compact(tmp_path, min_files=2, min_age_seconds=0)
    assert _rows(tmp_path).height == df.height - 100
    sink = LakeSink(tmp_path)
    sink.write(df.slice(100, 100), "tx", 0, 100, 199)
    assert _rows(tmp_path).height == df.height


def test_crash_between_rename_and_delete_is_recovered(tmp_path: Path) -> None:
    df = _fill(tmp_path)
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "transactions", saved)
    compact(tmp_path, min_files=2, min_age_seconds=0)
    for p in saved.rglob("*.parquet"):  # the inputs "survive" as if the deletes never ran
        shutil.copy(p, tmp_path / "transactions" / p.relative_to(saved))
    assert _rows(tmp_path).height > df.height  # the crash window: duplicates visible
    removed = recover(tmp_path)
    assert removed > 0 and _rows(tmp_path).height == df.height
    assert all(f.name.endswith(".c.parquet") for f in _files(tmp_path))


def test_sink_write_also_removes_leftovers(tmp_path: Path) -> None:
    df = _fill(tmp_path)
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "transactions", saved)
    compact(tmp_path, min_files=2, min_age_seconds=0)
    for p in saved.rglob("*.parquet"):
        shutil.copy(p, tmp_path / "transactions" / p.relative_to(saved))
    assert LakeSink(tmp_path).write(df, "tx", 0, 0, 599) == []  # all covered: nothing new
    assert _rows(tmp_path).height == df.height


def test_min_files_and_target_rows(tmp_path: Path) -> None:
    _fill(tmp_path)
    assert compact(tmp_path, min_files=1000, min_age_seconds=0).files_out == 0
    assert compact(tmp_path, min_files=2).files_out == 0  # all too young
    report = compact(tmp_path, min_files=2, target_rows=120, min_age_seconds=0)
    assert report.files_out > 2
    assert all(pq.read_metadata(f).num_rows <= 150 for f in _files(tmp_path))


def test_compacting_again_merges_compacted_files(tmp_path: Path) -> None:
    df = _fill(tmp_path)
    compact(tmp_path, min_files=2, target_rows=100, min_age_seconds=0)
    compact(tmp_path, min_files=2, min_age_seconds=0)
    assert len(_files(tmp_path)) == 2 and _rows(tmp_path).height == df.height


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path)
    assert run(main, ["--lake", str(tmp_path), "--min-files", "2", "--min-age", "0"]) == 0
    assert "compacted 13 files into 2" in capsys.readouterr().err
    assert run(main, ["--lake", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no transactions/ folder" in err and "\n" not in err
    with pytest.raises(SystemExit) as exc:
        main(["--lake", str(tmp_path), "--min-files", "0"])
    assert exc.value.code == 2
