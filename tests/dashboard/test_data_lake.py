"""Pure aggregates (dashboard.data), lake reads (dashboard.lake_queries), the history cache."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata
from dashboard import baseline, data, lake_queries
from dashboard.baseline import main as baseline_main
from flagstore.query import FlagFilter
from flagstore.sqlite import SqliteFlagReader
from fraudlake.cli import run
from lake.layout import data_files

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def flags_frame() -> pl.DataFrame:
    live = _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(minutes=1))
    return live.filter(pl.col("flagged"))


def test_choose_unit() -> None:
    assert data.choose_unit(timedelta(hours=1)) == "minute"
    assert data.choose_unit(timedelta(days=1)) == "hour"
    assert data.choose_unit(timedelta(days=30)) == "day"
    assert data.choose_unit(timedelta(days=9000)) == "month"


def test_kpis_and_precision(tmp_path: Path) -> None:
    _dashdata.write_flags(tmp_path / "f.sqlite", _dashdata.events(30, NOW, timedelta(seconds=1)))
    flags = SqliteFlagReader(tmp_path / "f.sqlite").export(FlagFilter())
    k = data.kpis(5.0, lake_events=100, lake_flagged=25, flags_in_view=flags, lag=7)
    assert (k.events_per_min, k.flags_per_min, k.flag_rate, k.lag) == (20.0, 5.0, 0.25, 7)
    assert k.labelled == 10 and k.precision == 0.5
    empty = data.kpis(5.0, 0, 0, flags.head(0), None)
    assert empty.flag_rate is None and empty.precision is None


def test_top_users_with_baselines(tmp_path: Path) -> None:
    _dashdata.write_flags(tmp_path / "f.sqlite", _dashdata.events(30, NOW, timedelta(seconds=1)))
    flags = SqliteFlagReader(tmp_path / "f.sqlite").export(FlagFilter())
    extra = flags.filter(pl.col("user_id") == 2).with_columns(
        pl.col("transaction_id") + "x", pl.col("ts") + timedelta(hours=1))
    top = data.top_users(pl.concat([flags, extra]), n=3)
    assert top["user_id"][0] == 2 and top["flags"][0] == 4
    assert top.height == 3
    hist = pl.DataFrame({"user_id": [2], "txn_count": [100], "median_amount": [50.0],
                         "usual_city": ["Madrid"], "first_seen": [NOW - timedelta(days=900)],
                         "last_seen": [NOW - timedelta(days=1)]},
                        schema=lake_queries.BASELINE_SCHEMA)
    live = pl.DataFrame({"user_id": [2, 4], "txn_count": [3, 5], "median_amount": [9.0, 20.0],
                         "usual_city": ["Oslo", "Paris"], "first_seen": [NOW, NOW],
                         "last_seen": [NOW, NOW]}, schema=lake_queries.BASELINE_SCHEMA)
    merged = data.merge_baselines(hist, live).sort("user_id")
    assert merged.rows() == [(2, 103, 50.0, "Madrid", NOW - timedelta(days=900), NOW),
                             (4, 5, 20.0, "Paris", NOW, NOW)]
    joined = data.with_baselines(top, merged)
    row = joined.filter(pl.col("user_id") == 2).row(0, named=True)
    assert row["txn_count"] == 103 and row["x_usual"] == round(row["max_amount"] / 50.0, 1)


def test_csv_is_exact_and_ordered(tmp_path: Path) -> None:
    _dashdata.write_flags(tmp_path / "f.sqlite", _dashdata.events(30, NOW, timedelta(seconds=1)))
    flags = SqliteFlagReader(tmp_path / "f.sqlite").export(FlagFilter())
    csv = pl.read_csv(data.to_csv(flags), infer_schema=False)
    assert csv.columns == data.table_view(flags).columns
    assert [Decimal(a) for a in csv["amount"]] == flags["amount"].to_list()
    assert csv["ts"][0].endswith("Z")
    assert csv["rules"].to_list() == flags["rules_fired"].list.join(", ").to_list()


def test_report_tables_and_lag(tmp_path: Path) -> None:
    assert data.read_report(tmp_path / "missing.json") is None
    report = {"rules": {"flagged": {"flagged": 3, "recall_by_scenario": {"b": 0.5}},
                        "high_amount": {"flagged": 2, "precision": 1.0,
                                        "recall_by_scenario": {"a": 0.1}}}}
    assert data.rule_table(report)["rule"].to_list() == ["high_amount", "flagged"]
    sc = data.scenario_table(report)
    assert sc.rows() == [("a", 0.1, None), ("b", None, 0.5)]
    metrics = tmp_path / "consumer.json"
    metrics.write_text(json.dumps({"lag": 12, "updated_at": "2026-03-01T11:59:00Z"}))
    assert data.read_lag(metrics, NOW) == 12
    assert data.read_lag(metrics, NOW + timedelta(hours=1)) is None  # stale
    metrics.write_text("{not json")
    assert data.read_lag(metrics, NOW) is None


def test_files_in_range_prunes_by_month_folder(tmp_path: Path) -> None:
    files = [tmp_path / f"year={y}/month={m:02d}/p.parquet" for y, m in
             [(2025, 11), (2025, 12), (2026, 1), (2026, 3)]]
    got = lake_queries.files_in_range(files, datetime(2025, 12, 31, tzinfo=UTC),
                              datetime(2026, 2, 1, tzinfo=UTC))
    assert [f.parent.name for f in got] == ["month=12", "month=01"]
    assert lake_queries.files_in_range(files, None) == files


def test_lake_reads(tmp_path: Path) -> None:
    live = _dashdata.events(120, NOW - timedelta(hours=2), timedelta(minutes=1))
    _dashdata.write_lake(tmp_path, live)
    files = data_files(tmp_path)
    assert lake_queries.window_counts(files, NOW - timedelta(minutes=30)) == (30, 10)
    series = lake_queries.amount_series(files, "hour", NOW - timedelta(hours=2), None)
    assert series["events"].sum() == 120
    assert float(series["amount"].sum()) == pytest.approx(float(live["amount"].sum()))
    b = lake_queries.user_baselines(files, [1, 3]).sort("user_id")
    assert b["user_id"].to_list() == [1, 3] and b["txn_count"].to_list() == [24, 24]
    assert b["first_seen"][0] == live.filter(pl.col("user_id") == 1)["ts"].min()
    assert lake_queries.min_ts(files) == live["ts"].min()


def test_history_cache_built_once_and_rebuilt_on_change(tmp_path: Path) -> None:
    hist = _dashdata.events(100, datetime(2024, 1, 30, tzinfo=UTC), timedelta(hours=5))
    _dashdata.write_lake(tmp_path / "h", hist, with_rules=False)
    c1 = baseline.load_or_build(tmp_path / "h", tmp_path / "cache")
    assert c1.baselines.height == 5 and c1.daily["events"].sum() == 100
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1
    mtime = (folders[0] / "daily.parquet").stat().st_mtime_ns
    assert baseline.load_or_build(tmp_path / "h", tmp_path / "cache").key == c1.key
    assert (folders[0] / "daily.parquet").stat().st_mtime_ns == mtime  # reused, not rebuilt
    _dashdata.write_lake(tmp_path / "h", hist.head(10), name="part-1.parquet", with_rules=False)
    c2 = baseline.load_or_build(tmp_path / "h", tmp_path / "cache")
    assert c2.key != c1.key and c2.daily["events"].sum() == 110
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"history-{c2.key}"]


def test_baseline_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(baseline_main, ["--history-dir", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "history dir not found" in err
    hist = _dashdata.events(20, datetime(2024, 1, 1, tzinfo=UTC), timedelta(hours=1))
    _dashdata.write_lake(tmp_path / "h", hist, with_rules=False)
    assert baseline_main(["--history-dir", str(tmp_path / "h"),
                          "--cache-dir", str(tmp_path / "c")]) == 0
    assert "5 users" in capsys.readouterr().out
    assert os.listdir(tmp_path / "c")
