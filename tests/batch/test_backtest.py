"""batch.backtest: chunked decisions equal the reference; report shape; outputs; bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from batch.backtest import BacktestConfig, report_dict, run_backtest
from batch.hitrates import count_flags, hit_rates
from fraudlake.contract import CORE_SCHEMA, RULE_NAMES
from rules.model import load_rule_set
from tests.batch._backtest_data import synthetic_events, with_extras, write_hive
from tests.reference_rules import reference_decisions

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["transaction_id", *RULE_NAMES, "score", "flagged"]
DEFAULT = load_rule_set(None)
EXAMPLE = ROOT / "rules" / "example.toml"


def reference_flags(events, rule_set=DEFAULT):
    return reference_decisions(events, rule_set)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> tuple[Path, list[dict]]:
    events = synthetic_events()
    return write_hive(events, tmp_path_factory.mktemp("lake")), events


def run(tmp_path: Path, input_: str, **kw):
    out = tmp_path / "flags.parquet"
    result = run_backtest(BacktestConfig(input=input_, flags_out=out, progress=False, **kw))
    return result, pl.read_parquet(out).sort("transaction_id")


@pytest.mark.parametrize("engine", ["auto", "sql"])
@pytest.mark.parametrize("chunk_rows", [1, 400, 10**9])
def test_chunked_flags_equal_reference(lake, tmp_path, chunk_rows, engine):
    root, events = lake
    result, flags = run(tmp_path, str(root), chunk_rows=chunk_rows, engine=engine)
    assert result.engine == ("fast" if engine == "auto" else "sql")
    expected = reference_flags(events).sort("transaction_id")
    assert flags.columns == COLUMNS
    assert flags.equals(expected.select(COLUMNS))
    assert result.chunks == (4 if chunk_rows == 1 else 1 if chunk_rows == 10**9 else result.chunks)
    # the boundary cases really fire across chunks
    by_id = {e["transaction_id"]: e for e in events}
    hf_users = {by_id[t]["user_id"] for t in flags.filter("high_frequency")["transaction_id"]}
    geo_users = {by_id[t]["user_id"] for t in flags.filter("geo_mismatch")["transaction_id"]}
    assert {100, 102} <= hf_users and 101 in geo_users
    after_tie = [e["transaction_id"] for e in events  # prev = the tied event with the larger id
                 if e["user_id"] == 104 and e["ts"].second == 10]
    assert flags.filter(pl.col("transaction_id").is_in(after_tie))["geo_mismatch"].to_list() == [
        False, False]
    labelled = expected.join(pl.DataFrame(events, schema=CORE_SCHEMA).select(
        "transaction_id", "ts", "is_fraud", "fraud_scenario"), on="transaction_id")
    assert result.overall == hit_rates(count_flags(labelled, DEFAULT.rule_ids))


def test_carry_keeps_a_long_idle_users_last_event(lake, tmp_path):
    root, events = lake
    slow = DEFAULT.with_overrides(["geo_mismatch.speed_kmh=1"])  # Paris->Tokyo in months
    _, flags = run(tmp_path, str(root), rule_set=slow, chunk_rows=1)
    assert flags.equals(reference_flags(events, slow).sort("transaction_id").select(COLUMNS))
    april = [e["transaction_id"] for e in events if e["user_id"] == 103 and e["ts"].month == 4]
    assert flags.filter(pl.col("transaction_id").is_in(april))["geo_mismatch"].to_list() == [True]


def test_what_if_overrides_and_glob_input(lake, tmp_path):
    root, events = lake
    params = DEFAULT.with_overrides(["high_amount.threshold=3999.99",
                                     "unusual_hour.start_hour=23"])
    result, flags = run(tmp_path, str(root / "year=2024" / "month=0[12]" / "*.parquet"),
                        rule_set=params, chunk_rows=1)
    subset = [e for e in events if e["ts"].month in (1, 2)]
    assert flags.equals(reference_flags(subset, params).sort("transaction_id").select(COLUMNS))
    assert result.overall.rows == len(subset)


def test_overlapping_files_share_a_chunk(tmp_path):
    events = synthetic_events(400, seed=9)
    half = len(events) // 2  # two flat files, each spanning the whole period
    for i, part in enumerate((events[:half], events[half:])):
        pl.DataFrame(part, schema=CORE_SCHEMA).write_parquet(tmp_path / f"p{i}.parquet")
    result, flags = run(tmp_path, str(tmp_path / "p*.parquet"), chunk_rows=1)
    assert result.chunks == 1
    assert flags.equals(reference_flags(events).sort("transaction_id").select(COLUMNS))


def test_report_shape_and_by_year(lake, tmp_path):
    root, _ = lake
    report = tmp_path / "r" / "backtest.json"
    run_backtest(BacktestConfig(input=str(root), by_year=True, report=report, progress=False))
    data = json.loads(report.read_text())
    assert set(data) == {"input", "rows", "fraud_rows", "rule_set_id", "rule_set_source",
                         "rule_set", "generated_at", "seconds", "rules", "by_year",
                         "density"}
    assert data["rule_set_id"] == DEFAULT.id and data["rule_set"] == DEFAULT.to_dict()
    assert data["density"]["rows"] == data["rows"] and data["density"]["per_card_day"] > 0
    assert set(data["rules"]) == {*RULE_NAMES, "flagged"}
    assert set(data["rules"]["flagged"]) == {"flagged", "flag_rate", "precision", "recall",
                                             "recall_by_scenario"}
    assert list(data["by_year"]) == ["2024"]
    assert data["by_year"]["2024"]["rows"] == data["rows"]
    assert not list(report.parent.glob(".*tmp*"))


def test_without_labels(tmp_path):
    events = synthetic_events(300, seed=5)
    root = write_hive(events, tmp_path / "nolabels", labels=False)
    result = run_backtest(BacktestConfig(input=str(root), progress=False))
    data = report_dict(result)
    assert data["fraud_rows"] is None
    assert data["rules"]["flagged"]["precision"] is None
    assert data["rules"]["flagged"]["flagged"] == reference_flags(events)["flagged"].sum()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "batch.backtest", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_smoke(lake, tmp_path):
    root, events = lake
    report, flags = tmp_path / "r.json", tmp_path / "f.parquet"
    res = cli("--input", str(root), "--by-year", "--report", str(report), "--flags-out",
              str(flags), "--set", "high_amount.threshold=2500", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "high_frequency" in res.stdout and "recall" in res.stdout and "2024:" in res.stdout
    data = json.loads(report.read_text())
    assert data["rule_set"]["rules"][0]["threshold"] == "2500"
    assert data["rule_set_id"] == DEFAULT.with_overrides(["high_amount.threshold=2500"]).id
    assert data["rule_set_id"] in res.stdout
    assert pl.read_parquet(flags).height == len(events)
    meta = pq.read_schema(flags).metadata
    assert meta[b"fraudlake.rule_set_id"] == data["rule_set_id"].encode()


def write_rules(tmp_path: Path, rule: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(f'version = "bad-1"\n[[rule]]\n{rule}')
    return str(path)


def bad_file(tmp_path: Path, change) -> str:
    df = change(pl.DataFrame(synthetic_events(20), schema=CORE_SCHEMA))
    path = tmp_path / "bad.parquet"
    df.write_parquet(path)
    return str(path)


@pytest.mark.parametrize("args, needle", [
    (["--input", "/nonexistent/lake"], "not found"),
    (["--input", "/nonexistent/*.parquet"], "no files match"),
    (["--input", "{lat}"], "missing core column"),
    (["--input", "{amount}"], "amount"),
    (["--input", "{ts}"], "ts"),
    (["--input", "{garbage}"], "cannot read"),
    (["--input", "{good}", "--set", "high_amount.nope=1"], "unknown parameter"),
    (["--input", "{good}", "--set", "high_frequency.count=x"], "whole number"),
    (["--input", "{good}", "--set", "high_frequency.count=0"], "count"),
    (["--input", "{good}", "--rules", "/nonexistent.toml"], "no such rule set file"),
    (["--input", "{good}", "--rules", "{badrules}"], "rule 'too_fast': unknown kind 'warp'"),
    (["--input", "{good}", "--rules", "{rowsrule}"], "rule 'rows'"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    files = {
        "lat": lambda: bad_file(tmp_path, lambda d: d.drop("lat")),
        "amount": lambda: bad_file(tmp_path, lambda d: d.with_columns(pl.col("amount").cast(
            pl.Float64))),
        "ts": lambda: bad_file(tmp_path, lambda d: d.with_columns(pl.col("ts").cast(pl.String))),
        "garbage": lambda: (tmp_path / "x.parquet").write_text("nope") and str(
            tmp_path / "x.parquet"),
        "good": lambda: bad_file(tmp_path, lambda d: d),
        "badrules": lambda: write_rules(tmp_path, 'id = "too_fast"\nkind = "warp"\n'),
        "rowsrule": lambda: write_rules(tmp_path, 'id = "rows"\nkind = "amount_over"\n'
                                                  'threshold = "1"\n'),
    }
    args = [files[a[1:-1]]() if a.startswith("{") else a for a in args]
    out = tmp_path / "out" / "flags.parquet"
    res = cli(*args, "--flags-out", str(out), "--report", str(tmp_path / "out" / "r.json"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], res.stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_plan_chunks_keeps_empty_files_and_falls_back_without_stats(lake, tmp_path):
    from batch.chunked_flags import plan_chunks
    from queries.staging import connect, resolve_input

    root, events = lake
    empty = root / "year=2024" / "month=02" / "part-empty.parquet"
    pl.DataFrame(schema=CORE_SCHEMA).write_parquet(empty)
    try:
        chunks = plan_chunks(connect(), resolve_input(str(root)), 1)
        assert len(chunks) == 4 and chunks[0].files[0].path == str(empty)
        assert [c.rows for c in chunks] == sorted(
            pl.DataFrame(events, schema=CORE_SCHEMA).group_by(pl.col("ts").dt.month())
            .len().sort("ts")["len"].to_list(), key=lambda _: 0)
        _, flags = run(tmp_path, str(root), chunk_rows=1)
        assert flags.equals(reference_flags(events).sort("transaction_id").select(COLUMNS))
    finally:
        empty.unlink()
    nostats = tmp_path / "nostats.parquet"
    pl.DataFrame(events, schema=CORE_SCHEMA).write_parquet(nostats, statistics=False)
    assert len(plan_chunks(connect(), resolve_input(str(nostats)), 1)) == 1


def test_null_user_rows_are_kept(tmp_path):
    """A NULL user_id beside tied users must not empty the result (NOT IN over a NULL)."""
    events = synthetic_events(300, seed=7)
    tied = next(e for e, f in zip(events, events[1:], strict=False)
                if e["user_id"] == f["user_id"] and e["ts"] == f["ts"])
    events = [{**e, "user_id": None} if e is tied else e for e in events]
    path = tmp_path / "nulls.parquet"
    pl.DataFrame(events, schema=CORE_SCHEMA).write_parquet(path)
    result, flags = run(tmp_path, str(path), engine="sql")
    assert flags.height == len(events)
    assert flags["flagged"].sum() > 0


# --- rule sets (v2) ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rich_lake(tmp_path_factory) -> tuple[Path, list[dict]]:
    events = with_extras(synthetic_events(1200, seed=21))
    return write_hive(events, tmp_path_factory.mktemp("rich")), events


@pytest.mark.parametrize("engine", ["auto", "sql"])
@pytest.mark.parametrize("chunk_rows", [1, 10**9])
def test_example_rule_set_across_chunks_equals_reference(rich_lake, tmp_path, chunk_rows,
                                                         engine):
    """Every kind of rules/example.toml (windows of a day, 30-day lookbacks, histories of 10
    amounts) decided in month chunks with the carry equals one pass of the reference."""
    root, events = rich_lake
    example = load_rule_set(EXAMPLE, ["new_device.min_history=1", "busy_1h.count=3",
                                      "unusual_spend.ratio=1.5", "spend_24h.total=2000"])
    result, flags = run(tmp_path, str(root), rule_set=example, chunk_rows=chunk_rows,
                        engine=engine)
    expected = reference_flags(events, example).sort("transaction_id")
    assert flags.columns == ["transaction_id", *example.rule_ids, "score", "flagged"]
    assert flags.equals(expected)
    assert result.chunks == (4 if chunk_rows == 1 else 1)
    fired = {rid for rid in example.rule_ids if flags[rid].any()}
    assert {"burst_1m", "busy_1h", "spend_24h", "impossible_travel", "unusual_spend",
            "new_device", "blocked_merchant", "sanctioned_country"} <= fired
    assert set(result.overall.rules) == {*example.rule_ids, "flagged"}
    assert result.overall.rules["flagged"].flagged == expected["flagged"].sum()


def test_null_core_rows_are_false_and_invisible_across_chunks(rich_lake, tmp_path):
    root, events = rich_lake
    nulls = [{**e, "lat": None} if i % 7 == 0 else {**e, "amount": None} if i % 11 == 0 else e
             for i, e in enumerate(events)]
    lake = write_hive(nulls, tmp_path / "nulls")
    example = load_rule_set(EXAMPLE, ["busy_1h.count=3", "new_device.min_history=1"])
    result, flags = run(tmp_path, str(lake), rule_set=example, chunk_rows=1, engine="sql")
    assert flags.equals(reference_flags(nulls, example).sort("transaction_id"))
    assert result.overall.rows == len(nulls)


def test_cli_example_rule_set(rich_lake, tmp_path):
    root, events = rich_lake
    report, flags = tmp_path / "r.json", tmp_path / "f.parquet"
    res = cli("--input", str(root), "--rules", str(EXAMPLE), "--set", "alert_threshold=1.5",
              "--report", str(report), "--flags-out", str(flags), "--quiet")
    assert res.returncode == 0, res.stderr
    example = load_rule_set(EXAMPLE, ["alert_threshold=1.5"])
    data = json.loads(report.read_text())
    assert data["rule_set_id"] == example.id and example.id in res.stdout
    assert list(data["rules"]) == [*example.rule_ids, "flagged"]
    assert "card_testing" in res.stdout and " engine)" in res.stdout
    got = pl.read_parquet(flags)
    assert got.columns == ["transaction_id", *example.rule_ids, "score", "flagged"]
    assert got.sort("transaction_id").equals(
        reference_flags(events, example).sort("transaction_id"))
def test_density_counts_transactions_per_active_card_day(tmp_path):
    from datetime import UTC, datetime, timedelta

    import polars as pl

    from batch.density import density_of

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    df = pl.DataFrame({"user_id": [1, 1, 1, 2], "ts": [t0, t0 + timedelta(days=1),
                                                      t0 + timedelta(days=3), t0]})
    df.write_parquet(tmp_path / "x.parquet")
    d = density_of([str(tmp_path / "x.parquet")])
    # card 1: 3 transactions over 4 days (first to last + 1); card 2: one on one day
    assert (d.cards, d.rows, d.active_card_days) == (2, 4, 5.0)
    assert d.per_card_day == 0.8 and "0.80 transactions per active card per day" in d.line()
