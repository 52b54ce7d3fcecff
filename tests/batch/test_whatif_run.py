"""The what-if runner end to end on a small lake: one pass == separate backtests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from batch.backtest import BacktestConfig, run_backtest
from batch.whatif_run import WhatIfConfig, run_whatif
from batch.whatif_sweep import parse_sweep
from rules.model import load_rule_set
from tests.batch._backtest_data import synthetic_events, with_extras, write_hive

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rules" / "example.toml"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    return write_hive(with_extras(synthetic_events(1500, seed=5)),
                      tmp_path_factory.mktemp("whatif"))


def _flags(tmp_path: Path, lake: Path, rs, name: str) -> pl.DataFrame:
    out = tmp_path / f"{name}.parquet"
    run_backtest(BacktestConfig(input=str(lake), rule_set=rs, flags_out=out, progress=False,
                                chunk_rows=300))
    return pl.read_parquet(out).sort("transaction_id")


def test_diff_counts_equal_two_flags_out_runs(lake: Path, tmp_path: Path) -> None:
    a = load_rule_set()
    b = load_rule_set(EXAMPLE, ["new_device.min_history=1"])
    report = run_whatif(WhatIfConfig(input=str(lake), rule_set=a, compare=b, value=True,
                                     speed=True, drift=True, chunk_rows=300, progress=False))
    fa, fb = _flags(tmp_path, lake, a, "a"), _flags(tmp_path, lake, b, "b")
    for rid in sorted({*a.rule_ids, *b.rule_ids, "flagged"}):
        ca = fa[rid] if rid in fa.columns else pl.Series([False] * fa.height)
        cb = fb[rid] if rid in fb.columns else pl.Series([False] * fb.height)
        gained, lost = int((cb & ~ca).sum()), int((ca & ~cb).sum())
        assert report["flips"][rid]["gained"] == gained, rid
        assert report["flips"][rid]["lost"] == lost, rid
    assert report["a"]["rules"]["flagged"]["flagged"] == int(fa["flagged"].sum())
    assert report["b"]["rules"]["flagged"]["flagged"] == int(fb["flagged"].sum())
    assert report["a"]["rule_set_id"] == a.id and report["b"]["rule_set_id"] == b.id
    assert set(report["rule_value"]["rules"]) == set(a.rule_ids)
    assert report["detection_speed"]["a"] and report["drift"]


def test_sweep_points_equal_single_backtests(lake: Path, tmp_path: Path) -> None:
    base = load_rule_set()
    sweep = parse_sweep("high_amount.threshold=500:2500:500", base)
    report = run_whatif(WhatIfConfig(input=str(lake), rule_set=base, sweeps=(sweep,),
                                     alert_budget=5.0, chunk_rows=300, progress=False))
    points = {p["point"]: p for p in report["sweep"]["points"]}
    assert len(points) == 5
    for value in ("500", "1500", "2500"):
        rs = base.with_overrides([f"high_amount.threshold={value}"])
        flags = _flags(tmp_path, lake, rs, value)
        assert points[f"high_amount.threshold={value}"]["alerts"] == int(flags["flagged"].sum())
    assert "best_within_budget" in report["sweep"]


def test_cli_compare_and_sweep_with_plot(lake: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "batch.backtest", "--input", str(lake), "--quiet",
         "--compare", str(EXAMPLE), "--sweep", "high_amount.threshold=1000:3000:1000",
         "--alert-budget", "3", "--report", str(tmp_path / "w.json"),
         "--plot", str(tmp_path / "w.png")], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "w.json").read_text())
    assert {"a", "b", "flips", "sweep"} <= set(report)
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
    assert "flips (B vs A)" in out.stdout


@pytest.mark.parametrize("args, needle", [
    (["--sweep", "nope.threshold=1:2:1"], "unknown rule"),
    (["--alert-budget", "3"], "need --sweep"),
    (["--compare", "missing.toml"], "no such rule set file"),
    (["--value", "--engine", "sql"], "fast engine"),
])
def test_cli_bad_whatif_input(lake: Path, args: list[str], needle: str) -> None:
    out = subprocess.run([sys.executable, "-m", "batch.backtest", "--input", str(lake),
                          *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and needle in lines[0], out.stderr
