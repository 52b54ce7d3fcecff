"""Lake sink: month split, exact lake schema, atomic files, replays never duplicate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from fraudlake.contract import LAKE_SCHEMA
from lake.layout import merge_ranges, subtract
from streaming.engine import RuleEngine
from streaming.lake_sink import LakeSink
from tests.streaming._stream_events import random_events


def _decided(n: int = 400, seed: int = 1) -> pl.DataFrame:
    """Decided events spanning a month boundary, numbered as Kafka offsets 1000…"""
    df = random_events(n, n_users=10, seed=seed)  # starts 2024-03-30 22:00, spans into April
    return RuleEngine().process(df).with_columns(
        _topic=pl.lit("tx"), _partition=pl.lit(2, pl.Int32),
        _offset=pl.int_range(1000, 1000 + n, dtype=pl.Int64))


def _lake_rows(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "transactions", hive_partitioning=True)


def _write_in_batches(sink: LakeSink, df: pl.DataFrame, cuts: list[int]) -> list[Path]:
    out = []
    for a, b in zip([0, *cuts], [*cuts, df.height], strict=True):
        part = df.slice(a, b - a)
        out += sink.write(part, "tx", 2, int(part["_offset"].min()), int(part["_offset"].max()))
    return out


def test_splits_by_month_with_offset_names_and_lake_schema(tmp_path: Path) -> None:
    df = _decided()
    files = LakeSink(tmp_path).write(df, "tx", 2, 1000, 1399)
    names = sorted(str(p.relative_to(tmp_path)) for p in files)
    assert names == [
        f"transactions/year=2024/month=03/tx-p2-o{1000:020d}-{1399:020d}.parquet",
        f"transactions/year=2024/month=04/tx-p2-o{1000:020d}-{1399:020d}.parquet",
    ]
    one = pl.read_parquet(files[0])
    assert one.schema == pl.Schema(LAKE_SCHEMA)
    assert one["ts"].is_sorted()
    assert all(t.month == 3 for t in one["ts"].to_list())
    lake = _lake_rows(tmp_path)
    assert lake.height == df.height and lake["transaction_id"].n_unique() == df.height


def test_replay_of_same_offsets_rewrites_same_files(tmp_path: Path) -> None:
    df = _decided()
    sink = LakeSink(tmp_path)
    first = _write_in_batches(sink, df, [100, 250])
    again = _write_in_batches(sink, df, [100, 250])
    assert sorted(first) == sorted(again)
    assert sorted((tmp_path / "transactions").rglob("*.parquet")) == sorted(set(first))
    assert _lake_rows(tmp_path).height == df.height


def test_replay_with_other_batch_boundaries_never_duplicates(tmp_path: Path) -> None:
    df = _decided()
    sink = LakeSink(tmp_path)
    _write_in_batches(sink, df, [100, 250])
    _write_in_batches(sink, df.slice(50), [130, 260, 300])  # a restart that re-cut the batches
    lake = _lake_rows(tmp_path)
    assert lake.height == df.height
    assert lake.sort("transaction_id").select(list(LAKE_SCHEMA)).equals(
        df.sort("transaction_id").select(list(LAKE_SCHEMA)))


def test_crash_mid_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = _decided()
    real = pl.DataFrame.write_parquet

    def crash(self, file, **kw):  # write half a file, then die
        real(self, file, **kw)
        Path(file).write_bytes(Path(file).read_bytes()[:100])
        raise OSError("disk gone")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(OSError):
        LakeSink(tmp_path).write(df, "tx", 2, 1000, 1399)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    LakeSink(tmp_path).write(df, "tx", 2, 1000, 1399)
    assert _lake_rows(tmp_path).height == df.height


def test_missing_optional_columns_become_nulls(tmp_path: Path) -> None:
    df = _decided().drop("merchant_name", "device_id", "is_fraud")
    (path, *_) = LakeSink(tmp_path).write(df, "tx", 0, 1000, 1399)
    got = pl.read_parquet(path)
    assert got.schema == pl.Schema(LAKE_SCHEMA) and got["merchant_name"].null_count() == got.height


def test_bad_offsets_and_empty_batches(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="first_offset"):
        LakeSink(tmp_path).write(_decided(), "tx", 0, 5, 4)
    assert LakeSink(tmp_path).write(_decided().head(0), "tx", 0, 1, 2) == []


def test_range_arithmetic() -> None:
    assert merge_ranges([(5, 9), (0, 4), (20, 30), (25, 26)]) == [(0, 9), (20, 30)]
    assert subtract((0, 100), [(0, 9), (20, 30)]) == [(10, 19), (31, 100)]
    assert subtract((10, 19), [(0, 9), (20, 30)]) == [(10, 19)]
    assert subtract((0, 9), [(0, 9)]) == []


def test_ts_in_other_time_zone_lands_in_utc_month(tmp_path: Path) -> None:
    df = _decided().head(1).with_columns(
        ts=pl.lit(datetime(2024, 5, 1, 0, 30, tzinfo=UTC)).dt.convert_time_zone("Asia/Tokyo"))
    (path,) = LakeSink(tmp_path).write(df, "tx", 0, 1000, 1000)
    assert "year=2024/month=05" in str(path)


def test_two_writers_and_a_compaction_never_duplicate(tmp_path: Path) -> None:
    from lake.compact import compact

    df = _decided()
    a, b = LakeSink(tmp_path), LakeSink(tmp_path)  # e.g. a zombie and the new owner
    _write_in_batches(a, df.slice(0, 100), [50])
    _write_in_batches(b, df.slice(0, 150), [])
    compact(tmp_path, min_files=2, min_age_seconds=0)
    _write_in_batches(a, df.slice(100, 100), [])  # a's cached listing is stale: it must see b's
    _write_in_batches(b, df.slice(150), [120])
    lake = _lake_rows(tmp_path)
    assert lake.height == df.height and lake["transaction_id"].n_unique() == df.height
