"""Pure aggregates (dashboard.data) and lake reads + the history cache
(dashboard.lake_queries/baseline)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata
from dashboard import aggregates, baseline, data, lake_queries
from dashboard.baseline import main as baseline_main
from dashboard.filters import FlagFilter
from dashboard.flag_cache import CacheConfig
from dashboard.sources import SqliteFlagSource
from fraudlake.cli import run
from lake.layout import data_files

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def flags_frame() -> pl.DataFrame:
    live = _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(minutes=1))
    return live.filter(pl.col("flagged"))


def test_choose_unit() -> None:
    assert aggregates.choose_unit(timedelta(hours=1)) == "minute"
    assert aggregates.choose_unit(timedelta(days=1)) == "hour"
    assert aggregates.choose_unit(timedelta(days=7)) == "hour"
    assert aggregates.choose_unit(timedelta(days=30)) == "day"
    assert aggregates.choose_unit(timedelta(days=9000)) == "month"


def test_aggregates_cover_every_flag(tmp_path: Path) -> None:
    """Counts, series, top users and precision over all 6,000 flags (no window)."""
    live = _dashdata.events(18_000, NOW - timedelta(hours=20), timedelta(seconds=4))
    flags = _dashdata.write_flags(tmp_path / "f.sqlite", live)
    assert flags.height == 6_000
    source = SqliteFlagSource(tmp_path / "f.sqlite", cache=CacheConfig())
    agg = aggregates.flag_aggregates(source.matching(FlagFilter()), "hour")
    assert agg.total == 6_000
    assert int(agg.series["flags"].sum()) == 6_000 and agg.series.height == 20
    assert agg.labelled == 6_000 and agg.precision == 0.5
    assert int(agg.top["flags"].sum()) == 6_000  # 5 users, all in the top 10
    assert dict(agg.per_rule.select("rule", "flags").iter_rows()) == {
        r: 1_500 for r in ("geo_mismatch", "high_amount", "high_frequency", "unusual_hour")}
    since = NOW - timedelta(hours=2)
    part = aggregates.flag_aggregates(source.matching(FlagFilter(since=since)), "minute")
    assert part.total == flags.filter(pl.col("ts") >= since).height
    axis = aggregates.bucket_range(since, NOW, "minute")
    chart = aggregates.chart_frame(axis, None, part.series, None)
    assert chart["series"].unique().to_list() == ["flagged (live)"]  # no lake: no events line
    assert chart.height == 121 and int(chart["events"].sum()) == part.total


def test_top_users_with_baselines(tmp_path: Path) -> None:
    _dashdata.write_flags(tmp_path / "f.sqlite", _dashdata.events(30, NOW, timedelta(seconds=1)))
    flags = SqliteFlagSource(tmp_path / "f.sqlite").export(FlagFilter())
    extra = flags.filter(pl.col("user_id") == 2).with_columns(
        pl.col("transaction_id") + "x", pl.col("ts") + timedelta(hours=1))
    top = aggregates.flag_aggregates(pl.concat([flags, extra]).lazy(), "hour", top_n=3).top
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
    flags = SqliteFlagSource(tmp_path / "f.sqlite").export(FlagFilter())
    csv = pl.read_csv(data.to_csv(flags), infer_schema=False)
    assert csv.columns == data.csv_view(flags).columns
    shown = data.table_view(flags)
    assert shown.schema["amount"] == pl.Float64  # sorts as a number on the page
    assert shown.sort("amount", descending=True)["amount"][0] == float(max(flags["amount"]))
    assert [Decimal(a) for a in csv["amount"]] == flags["amount"].to_list()
    assert csv["ts"][0].endswith("Z")
    assert csv["rules"].to_list() == flags["rules_fired"].list.join(", ").to_list()


def test_report_tables_and_lag(tmp_path: Path) -> None:
    assert data.read_report(tmp_path / "missing.json") is None
    bad = tmp_path / "bad.json"
    for text in ("{not json", '{"rules": [1, 2]}', '[]', '{"rules": {"x": 3}}'):
        bad.write_text(text)
        with pytest.raises(data.ReportError, match="backtest report"):
            data.read_report(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"rule_set_id": "default-1@abc", "rules": {},
                                "params": {"high_amount": {"threshold": "1000.00"}}}))
    params = data.report_params(data.read_report(good))  # type: ignore[arg-type]
    assert params.rows() == [("rule_set_id", "default-1@abc"),
                             ("high_amount.threshold", "1000.00")]
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


@pytest.mark.parametrize("unit", ["minute", "hour", "day", "month"])
def test_aggregates_fast_paths_agree_with_the_plain_computation(tmp_path: Path,
                                                                 unit: str) -> None:
    """The bit-mask per-rule counts, integer buckets, months summed from days and bincount
    leaders give what a plain group-by over the lists gives (v2 rule ids included)."""
    import sqlite3

    live = _dashdata.events(3_000, NOW - timedelta(days=70), timedelta(minutes=31), users=40)
    _dashdata.write_flags(tmp_path / "f.sqlite", live)
    with sqlite3.connect(tmp_path / "f.sqlite") as conn:
        conn.execute("""UPDATE flags SET rules_fired = '["high_amount","new_device"]'
                        WHERE rowid % 7 = 0 AND instr(rules_fired, '"high_amount"') > 0""")
    held = SqliteFlagSource(tmp_path / "f.sqlite", cache=CacheConfig())
    fast = aggregates.flag_aggregates(held.matching(FlagFilter()), unit)
    plain_frame = held.export(FlagFilter()).lazy()
    plain = aggregates.flag_aggregates(plain_frame, unit)  # no mask: lists exploded
    assert fast.per_rule.equals(plain.per_rule)
    assert "new_device" in fast.per_rule["rule"].to_list()
    assert fast.rule_series.sort("rule", "bucket").equals(plain.rule_series.sort("rule", "bucket"))
    truncate = {"minute": "1m", "hour": "1h", "day": "1d", "month": "1mo"}[unit]
    expect = (plain_frame.group_by(pl.col("ts").dt.truncate(truncate).alias("bucket"))
              .agg(pl.len().cast(pl.Int64).alias("flags")).sort("bucket").collect())
    assert fast.series.select("bucket", "flags").equals(expect)
    counts = plain_frame.group_by("user_id").agg(pl.len().alias("flags"),
                                                 pl.col("ts").max().alias("last")).sort(
        ["flags", "last", "user_id"], descending=[True, True, False]).head(10).collect()
    assert fast.top["user_id"].to_list() == counts["user_id"].to_list()


@pytest.mark.parametrize("unit", ["minute", "hour", "day", "month"])
def test_live_series_from_memoized_minutes_equals_duckdb(tmp_path: Path, unit: str) -> None:
    from dashboard.refresh import live_series
    from lake.layout import data_files

    live = _dashdata.events(400, NOW - timedelta(days=40), timedelta(hours=2, seconds=17))
    _dashdata.write_lake(tmp_path, live)
    _dashdata.write_lake(tmp_path, live.head(50).with_columns(
        pl.col("transaction_id") + "b"), name="part-1.parquet")
    files = data_files(tmp_path)
    since = NOW - timedelta(days=20, seconds=30)  # on a whole minute: both sides agree
    since = since.replace(second=0)
    got = live_series(files, unit, since, None)
    want = lake_queries.amount_series(files, unit, since, None)
    assert got.select("bucket", "events").equals(want.select("bucket", "events"))
    assert got["amount"].sum() == pytest.approx(want["amount"].sum())
    assert lake_queries.ts_bounds(files) == (live["ts"].min(), live["ts"].max())
    assert lake_queries.files_since(files, NOW) == []


def test_report_params_and_variants_of_real_backtest_reports(tmp_path: Path) -> None:
    """Reports written by main's ``batch.backtest`` (a rule set; --compare) read as tables."""
    from batch.backtest import main as backtest

    hist = tmp_path / "historical"
    _dashdata.write_lake(hist, _dashdata.events(300, datetime(2025, 3, 1, tzinfo=UTC),
                                                timedelta(minutes=20)), with_rules=False)
    plain, ab = tmp_path / "bt.json", tmp_path / "ab.json"
    assert backtest(["--input", str(hist), "--report", str(plain)]) == 0
    example = Path(__file__).resolve().parents[2] / "rules" / "example.toml"
    assert backtest(["--input", str(hist), "--compare", str(example),
                     "--report", str(ab)]) == 0
    params = dict(data.report_params(data.read_report(plain)).rows())  # type: ignore[arg-type]
    assert params["rule_set_id"].startswith("default-1@")
    assert params["high_amount.kind"] == "amount_over"
    assert params["high_amount.threshold"] == "1000"
    assert params["high_frequency.window_seconds"] == "60"
    assert "high_amount.channels" not in params  # unset scope left out
    report = data.read_whatif(ab)
    assert report is not None
    v = data.variants(report)
    assert v["variant"].to_list() == ["A", "B"]
    assert v["rule_set_id"][0] == params["rule_set_id"]
    assert v["rule_set_id"][1].startswith("example")
    raw = json.loads(ab.read_text())
    fl = data.flips(report)
    assert fl["rule"].to_list() == list(raw["flips"])
    assert fl["gained"].to_list() == [v["gained"] for v in raw["flips"].values()]


def test_live_rule_minutes_from_v2_and_v1_files(tmp_path: Path) -> None:
    """Hits per rule per minute: lake v2's rules_fired, and a v1 file's boolean rule columns."""
    from collections import Counter

    from fraudlake.contract import RULE_NAMES

    root = tmp_path / "transactions"
    v2 = _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(minutes=1))
    _dashdata.write_lake(root, v2)
    v1_src = _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(minutes=1), seed=5)
    v1 = v1_src.with_columns(pl.col("rules_fired").list.contains(r).alias(r)
                             for r in RULE_NAMES).drop("rules_fired", "score", "rule_set_id")
    _dashdata.write_lake(root, v1, name="part-v1.parquet")
    got = lake_queries.live_rule_minutes(data_files(root))
    totals = dict(got.group_by("rule").agg(pl.col("hits").sum()).iter_rows())
    want = Counter(r for frame in (v2, v1_src) for fired in frame["rules_fired"] for r in fired)
    assert totals == dict(want) and sum(totals.values()) == 20
    assert got["bucket"].dt.second().max() == 0  # per minute
