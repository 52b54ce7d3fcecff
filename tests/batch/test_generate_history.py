"""Data tests on a generated sample + the CLI contract of ``python -m batch.generate_history``."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from batch import generate_history as gh
from fraudlake import contract
from simulator.cards import default_cards
from simulator.events import SCENARIOS
from simulator.volume import rows_per_month
from tests.reference_rules import reference_flags

ROWS = 50_000


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "hist"
    summary = gh.generate_history(gh.HistoryConfig(rows=ROWS, out=out, seed=7, users=4_000,
                                                   workers=1), progress=False)
    assert summary.rows == ROWS
    return out


@pytest.fixture(scope="module")
def frame(sample: Path) -> pl.DataFrame:
    return pl.read_parquet(sample / "**" / "*.parquet", hive_partitioning=True)


def _files(root: Path) -> list[Path]:
    return sorted(root.glob("year=*/month=*/part-*.parquet"))


def test_exact_count_and_hive_layout(sample: Path, frame: pl.DataFrame):
    assert frame.height == ROWS
    assert sum(pl.scan_parquet(f).select(pl.len()).collect().item()
               for f in _files(sample)) == ROWS
    assert {p.parent.name for p in _files(sample)} == {f"month={m:02d}" for m in range(1, 13)}


def test_files_have_exact_contract_types_without_partition_columns(sample: Path):
    for f in _files(sample)[:5]:
        schema = dict(pl.read_parquet_schema(f))
        assert schema == contract.EVENT_SCHEMA
        contract.check_columns(schema)


def test_ids_unique_non_null_and_in_time_order(frame: pl.DataFrame):
    ids = frame["transaction_id"]
    assert ids.null_count() == 0 and ids.n_unique() == ROWS
    ordered = frame.sort("transaction_id")
    assert ordered["ts"].is_sorted()


def test_partition_matches_utc_month_and_all_years_covered(frame: pl.DataFrame):
    assert (frame["ts"].dt.year() == frame["year"]).all()
    assert (frame["ts"].dt.month() == frame["month"]).all()
    assert set(frame["year"].unique()) == set(range(2000, 2026))


def test_volume_grows_over_the_years(frame: pl.DataFrame):
    per_year = frame.group_by("year").len().sort("year")["len"]
    assert per_year[-1] > 5 * per_year[0]


def test_values_within_contract_bounds(frame: pl.DataFrame):
    assert frame["amount"].min() > 0
    assert frame["amount"].max() <= contract.MAX_AMOUNT
    assert frame["lat"].is_between(-90, 90).all() and frame["lon"].is_between(-180, 180).all()
    assert frame["utc_offset_min"].is_between(contract.MIN_UTC_OFFSET_MIN,
                                              contract.MAX_UTC_OFFSET_MIN).all()
    assert set(frame["channel"].unique()) <= set(contract.CHANNELS)
    assert frame["currency"].unique().to_list() == ["USD"]


def test_every_scenario_present_and_fraud_rate_realistic(frame: pl.DataFrame):
    assert (frame["is_fraud"] == frame["fraud_scenario"].is_not_null()).all()
    assert set(frame["fraud_scenario"].drop_nulls().unique()) == set(SCENARIOS)
    assert 0.001 <= frame["is_fraud"].mean() <= 0.005


def test_timestamp_ties_exist(frame: pl.DataFrame):
    dup = frame.group_by("user_id", "ts").len().filter(pl.col("len") > 1)
    assert dup.height > 0


def test_offsets_match_zoneinfo_including_dst(frame: pl.DataFrame):
    rows = frame.select("ts", "city", "utc_offset_min").sample(1500, seed=1).to_dicts()
    from simulator.cities import load_cities

    zone = dict(zip(load_cities().name, load_cities().zone, strict=True))
    for r in rows:
        local = r["ts"].astimezone(zoneinfo.ZoneInfo(zone[r["city"]]))
        assert local.utcoffset().total_seconds() / 60 == r["utc_offset_min"], r


def test_new_york_winter_and_summer_offsets(frame: pl.DataFrame):
    ny = frame.filter(pl.col("city") == "New York")
    jan = ny.filter(pl.col("month") == 1)["utc_offset_min"].unique().to_list()
    jul = ny.filter(pl.col("month") == 7)["utc_offset_min"].unique().to_list()
    assert jan == [-300] and jul == [-240]


def _rule_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The events with the test reference's rule decisions (``tests/reference_rules.py``)."""
    return frame.join(reference_flags(frame), on="transaction_id")


def test_scenarios_trigger_rules_partly_and_genuine_data_sometimes_too(frame: pl.DataFrame):
    f = _rule_frame(frame)
    rate = f.group_by("fraud_scenario").agg(pl.col("high_amount", "unusual_hour",
                                                    "geo_mismatch").mean())
    by = {row["fraud_scenario"]: row for row in rate.to_dicts()}
    assert 0.2 <= by["cnp_big_ticket"]["high_amount"] < 1.0  # many just under the limit
    assert by["lost_stolen"]["unusual_hour"] < 0.8 and by["counterfeit"]["geo_mismatch"] < 0.8
    coll = by["merchant_compromise"]
    assert max(coll["high_amount"], coll["unusual_hour"]) == 0.0
    genuine = by[None]
    assert genuine["high_amount"] > 0 and genuine["unusual_hour"] > 0  # false positives exist


def test_card_testing_bursts_are_fast_enough_for_high_frequency(frame: pl.DataFrame):
    bursts = (frame.filter(pl.col("fraud_scenario") == "card_testing")
              .group_by("user_id", "device_id")
              .agg(pl.len(), span=(pl.col("ts").max() - pl.col("ts").min()).dt.total_seconds()))
    assert bursts.height > 0
    assert (bursts["len"] >= 5).all() and (bursts["span"] <= 65).all()
    assert (bursts["span"] <= 60).mean() > 0.9


def test_rows_per_month_sums_exactly():
    for total in (1, 7, 311, 312, 313, 50_000, 47_000_000):
        parts = rows_per_month(total, 2000, 2025)
        assert sum(parts) == total and min(parts) >= 0 and len(parts) == 312


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in _files(root)}


def test_byte_identical_whatever_the_workers(tmp_path: Path):
    cfg = dict(rows=6_000, seed=3, users=2_000, start_year=2023, end_year=2025)
    gh.generate_history(gh.HistoryConfig(out=tmp_path / "a", workers=1, **cfg), progress=False)
    gh.generate_history(gh.HistoryConfig(out=tmp_path / "b", workers=2, **cfg), progress=False)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b and len(a) == 36
    # nothing but the partitions (no scratch file left in the output)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["year=2023", "year=2024",
                                                                  "year=2025"]
    gh.generate_history(gh.HistoryConfig(out=tmp_path / "c", workers=1, **{**cfg, "seed": 4}),
                        progress=False)
    assert _tree(tmp_path / "c") != a


def test_month_split_in_pieces_keeps_exact_count(monkeypatch, tmp_path: Path):
    """A month is made in pieces of at most PIECE_ROWS, each written as one row group of
    near-equal size; a file takes pieces until it holds FILE_ROWS, then the next starts."""
    monkeypatch.setattr("simulator.history.PIECE_ROWS", 70)
    monkeypatch.setattr("batch.generate_history.FILE_ROWS", 200)
    gh.generate_history(gh.HistoryConfig(rows=3_000, out=tmp_path / "p", seed=1, users=500,
                                         start_year=2025, end_year=2025, workers=1),
                        progress=False)
    df = pl.read_parquet(tmp_path / "p" / "**" / "*.parquet", hive_partitioning=False)
    assert df.height == 3_000 and df["transaction_id"].n_unique() == 3_000
    december = sorted((tmp_path / "p").glob("year=2025/month=12/part-*.parquet"))
    groups = [[pq.ParquetFile(f).metadata.row_group(i).num_rows
               for i in range(pq.ParquetFile(f).metadata.num_row_groups)] for f in december]
    sizes = [n for g in groups for n in g]
    assert len(december) >= 2 and max(sizes) <= 70 and max(sizes) - min(sizes) <= 1
    assert all(sum(g) >= 200 for g in groups[:-1]) and all(sum(g[:-1]) < 200 for g in groups)
    month = pl.read_parquet(december)
    assert month["transaction_id"].to_list() == sorted(month["transaction_id"].to_list())


# --- CLI -------------------------------------------------------------------------------------


def test_cli_smoke_prints_summary(tmp_path: Path, capsys):
    out = tmp_path / "h"
    code = gh.main(["--rows", "2_000", "--out", str(out), "--start-year", "2024", "--users",
                    "300", "--workers", "1", "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "wrote 2,000 rows" in text and "card_testing" in text
    assert "cards: 300 (--users)" in text
    assert len(_files(out)) == 24


def test_cli_derives_the_cards_from_the_rows(tmp_path: Path, capsys):
    assert gh.main(["--rows", "30_000", "--out", str(tmp_path / "h"), "--start-year", "2024",
                    "--workers", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    n = default_cards(30_000, 2024, 2025)
    assert f"cards: {n:,} (derived from --rows" in text and 10 <= n <= 100


@pytest.mark.parametrize("args, message", [
    (["--rows", "-5"], "--rows"),
    (["--rows", "abc"], "--rows"),
    (["--rows", "0"], "--rows"),
    (["--rows", "100", "--start-year", "2010", "--end-year", "2005"], "after"),
    (["--rows", "100", "--users", "0"], "--users"),
    (["--rows", "100", "--start-year", "1800"], "--start-year"),
    (["--rows", "100", "--seed", "-1"], "--seed"),
    (["--rows", "100", "--workers", "0"], "--workers"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, capsys, args, message):
    out = tmp_path / "h"
    try:
        code = gh.main([*args, "--out", str(out), "--quiet"])
    except SystemExit as exc:  # argparse rejects the value itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def _usage_exit(argv: list[str], capsys) -> str:
    code = gh.main(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_cli_unwritable_path(tmp_path: Path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _usage_exit(["--rows", "100", "--out", str(blocker / "h"), "--quiet"], capsys)
    assert "cannot write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_existing_out_refused_then_replaced_with_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "h"
    out.mkdir()
    (out / "old.txt").write_text("keep me unless --overwrite")
    err = _usage_exit(["--rows", "100", "--out", str(out), "--quiet"], capsys)
    assert "already exists" in err and (out / "old.txt").exists()
    assert gh.main(["--rows", "500", "--out", str(out), "--start-year", "2025", "--users", "50",
                    "--workers", "1", "--overwrite", "--quiet"]) == 0
    assert not (out / "old.txt").exists() and len(_files(out)) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h"]


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch):
    calls = {"n": 0}
    real = gh.write_month

    def flaky(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(gh, "write_month", flaky)
    with pytest.raises(KeyboardInterrupt):
        gh.generate_history(gh.HistoryConfig(rows=1_000, out=tmp_path / "h", users=50,
                                             start_year=2025, end_year=2025, workers=1),
                            progress=False)
    assert list(tmp_path.iterdir()) == []


def test_help_mentions_every_flag(capsys):
    with pytest.raises(SystemExit):
        gh.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--rows", "--out", "--seed", "--start-year", "--end-year", "--users",
                 "--overwrite", "--workers"):
        assert flag in text


def test_summary_lines_report_rates():
    s = gh.Summary(Path("x"), 1000, 12, 12, 2**20, 2.0, dict.fromkeys(SCENARIOS, 1), 40, True)
    text = "\n".join(s.lines())
    assert "1,000 rows" in text and f"{len(SCENARIOS) / 10:.3f}%" in text and "1.0 MiB" in text
    assert "cards: 40 (derived from --rows" in text


def test_generated_ts_are_utc_datetimes(frame: pl.DataFrame):
    first = frame.sort("ts")["ts"][0]
    assert first.tzinfo is not None and first >= datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("how", ["sigterm-parent", "sigint-group"])
def test_killed_cli_run_leaves_nothing(tmp_path: Path, how: str):
    """A real run with 2 threads, interrupted once files are being written."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "h"
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch.generate_history", "--rows", "4e6", "--out", str(out),
         "--start-year", "2024", "--users", "20000", "--workers", "2", "--quiet"],
        cwd=root, start_new_session=True, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(".h.tmp-*/year=*/month=*/*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, "no file written in time"
        time.sleep(0.05)
    if how == "sigterm-parent":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(tmp_path.iterdir()) == []
