"""The what-if runner end to end on a small lake: one pass == separate backtests."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from batch.backtest import BacktestConfig, run_backtest
from batch.whatif_evidence import attach_evidence, lookback
from batch.whatif_run import WhatIfConfig, run_whatif
from batch.whatif_sweep import parse_sweep
from queries.staging import ParquetFile, connect, resolve_input
from rules.model import load_rule_set, parse_rule_set
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


def _random_set(rng: random.Random, version: str) -> str:
    """A random rule set of 2-6 rules over every kind, with random weights and threshold."""
    makers = [
        lambda: f'kind = "amount_over"\nthreshold = "{rng.choice(["50.00", "200.00", "900.00"])}"',
        lambda: (f'kind = "velocity_count"\nwindow_seconds = {rng.choice([60, 600, 3600])}\n'
                 f'count = {rng.choice([2, 3, 5])}'
                 + (f'\nmax_amount = "{rng.choice(["20.00", "300.00"])}"'
                    if rng.random() < 0.3 else "")),
        lambda: (f'kind = "velocity_amount"\nwindow_seconds = {rng.choice([600, 86400])}\n'
                 f'total = "{rng.choice(["500.00", "2000.00"])}"'),
        lambda: (f'kind = "local_hour"\nstart_hour = {rng.choice([0, 22])}\n'
                 f'end_hour = {rng.choice([4, 6])}'),
        lambda: (f'kind = "impossible_travel"\ndistance_km = 100.0\n'
                 f'speed_kmh = {rng.choice([300.0, 900.0])}\nmin_hours = 0.0166'),
        lambda: (f'kind = "amount_vs_history"\nratio = "{rng.choice(["1.5", "3"])}"\n'
                 f'history = {rng.choice([4, 8])}\nmin_history = {rng.choice([2, 3])}'),
        lambda: (f'kind = "new_device"\nlookback_days = {rng.choice([1, 30])}\n'
                 f'min_history = {rng.choice([1, 3])}'),
        lambda: f'kind = "in_list"\nfield = "country"\nvalues = ["{rng.choice(["KP", "FR"])}"]',
    ]
    rules = []
    for i in range(rng.randint(2, 6)):
        scope = (f'\nchannels = ["{rng.choice(["online", "pos"])}"]'
                 if rng.random() < 0.3 else "")
        rules.append(f'[[rule]]\nid = "r{i}"\n{rng.choice(makers)()}{scope}\n'
                     f'weight = "{rng.choice(["0.5", "1", "1.5"])}"')
    return (f'version = "{version}"\nalert_threshold = "{rng.choice(["1", "1.5", "2"])}"\n'
            + "\n".join(rules) + "\n")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_diff_equals_two_flags_out_runs_on_random_sets(lake: Path, tmp_path: Path,
                                                       seed: int) -> None:
    rng = random.Random(seed)
    a = parse_rule_set(_random_set(rng, "rand-a"), "a.toml")
    b = parse_rule_set(_random_set(rng, "rand-b"), "b.toml") if seed != 2 else \
        a.with_overrides([f"{a.rule_ids[0]}.weight=2", "alert_threshold=1"])
    report = run_whatif(WhatIfConfig(input=str(lake), rule_set=a, compare=b, chunk_rows=400,
                                     progress=False))
    fa, fb = _flags(tmp_path, lake, a, "a"), _flags(tmp_path, lake, b, "b")
    never = pl.Series([False] * fa.height)
    for rid in sorted({*a.rule_ids, *b.rule_ids, "flagged"}):
        ca = fa[rid] if rid in fa.columns else never
        cb = fb[rid] if rid in fb.columns else never
        assert report["flips"][rid]["gained"] == int((cb & ~ca).sum()), (seed, rid)
        assert report["flips"][rid]["lost"] == int((ca & ~cb).sum()), (seed, rid)
    assert report["a"]["rules"]["flagged"]["flagged"] == int(fa["flagged"].sum())
    assert report["b"]["rules"]["flagged"]["flagged"] == int(fb["flagged"].sum())


def test_flip_sample_carries_the_evidence(lake: Path) -> None:
    a = load_rule_set(EXAMPLE)
    b = a.with_overrides(["online_over_1000.threshold=200", "burst_1m.count=3",
                          "alert_threshold=1"])
    report = run_whatif(WhatIfConfig(input=str(lake), rule_set=a, compare=b, sample=8,
                                     chunk_rows=300, progress=False))
    sample = report["flip_sample"]
    assert len(sample) == 8 and {s["flip"] for s in sample} <= {"gained", "lost"}
    for s in sample:
        for side, rs in (("a", a), ("b", b)):
            ev = s["evidence"][side]
            assert list(ev) == s[f"{side}_fired"], (side, s)  # one entry per fired rule
            for rid, e in ev.items():
                kind = rs.rule(rid).kind
                if kind == "amount_over":
                    assert e["amount"] == s["amount"]
                    assert e["threshold"] == str(rs.rule(rid).params["threshold"])
                elif kind == "velocity_count":
                    assert e["n"] >= rs.rule(rid).params["count"]
    gained = [s for s in sample if s["flip"] == "gained"]
    assert gained and all(not s["a_fired"] or s["b_fired"] for s in gained)


@pytest.mark.parametrize("rules, change, window", [
    (EXAMPLE, ["online_over_1000.threshold=200", "alert_threshold=1"], (2, 10)),
    (None, ["high_amount.threshold=400", "high_frequency.count=3"], (1, 1)),
])
def test_evidence_from_nearby_months_equals_evidence_from_every_file(
        lake: Path, rules, change: list[str], window: tuple[int, int]) -> None:
    a = load_rule_set(rules)
    b = a.with_overrides(change)
    sample = run_whatif(WhatIfConfig(input=str(lake), rule_set=a, compare=b, sample=12,
                                     chunk_rows=300, progress=False))["flip_sample"]
    files = resolve_input(str(lake))
    assert lookback([a, b]) == window
    near = [dict(s) for s in sample]
    attach_evidence(connect(), files, near, {"a": a, "b": b})
    every = [dict(s) for s in sample]
    attach_evidence(connect(), [ParquetFile(f.path, None, None) for f in files], every,
                    {"a": a, "b": b})
    assert [s["evidence"] for s in near] == [s["evidence"] for s in every]
    assert any(s["evidence"]["a"] or s["evidence"]["b"] for s in near)
