"""Benchmark the what-if (issue 17) against separate backtests, same data, same run.

    .venv/bin/python -m bench.bench_whatif [--input PATH] [--rows 47e6] [--sets default,example]
        [--baseline-points 11] [--parts ab,sweep,value] [--scale-input PATH] [--only 47m|scale]

Data: --input, else /work/data/history47m, else storage/historical, else a history of --rows
rows (seed 42) generated into a temporary folder with batch.generate_history.

Per rule set (rules/default.toml; rules/example.toml), each a separate process under GNU time
(wall, CPU, peak RSS; the load average before each run recorded beside it):

- ``backtest_a``, ``backtest_b``: the two separate backtests (A; B = A with the changed
  threshold: ``high_amount.threshold=2500`` for default, ``online_over_1000.threshold=2500``
  for example) = the baseline of ``ab`` (``--compare``, one pass);
- ``sweep``: ``--sweep <that threshold>=500:3000:250`` (11 points, one pass) against the same
  11 points as separate backtests (``--baseline-points K`` measures K of them, spread over the
  range, and the baseline is their mean times 11 — said so in the results);
- ``value_speed``: ``--value --speed``.

Every diff and sweep figure is checked against the separate backtests (same alert counts).
``--scale-input`` (a 10x history, e.g. /work/data/history470m): the default set's backtest and
A/B there and, in the same run, on the 47M history; the ratios and the peak RSS are recorded.
``--only 47m|scale`` runs one part and keeps the other's figures from bench/results/whatif.json
(two parts can run at the same time from two copies of the tree; merge the JSON after). Writes
bench/results/whatif.json and whatif.md (and the A/B report of the default set, for the README's
worked example, as bench/results/whatif_default_ab.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from bench.timed_backtest import run_backtest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = ROOT / "bench" / "results"
SHARED_47M = Path("/work/data/history47m")
CHANGED = {"default": ("high_amount.threshold", "2500"),
           "example": ("online_over_1000.threshold", "2500")}
SWEEP = "500:3000:250"
TARGETS = {"ab_wall_s": 15, "sweep_wall_s": 30, "value_speed_wall_s": 30, "peak_gib": 3,
           "scale_ratio": 10}


def pick_input(args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    for candidate in ([args.input] if args.input else []) + [str(SHARED_47M),
                                                             str(ROOT / "storage/historical")]:
        if Path(candidate).exists():
            return candidate, candidate
    out = tmp / "history"
    subprocess.run([PY, "-m", "batch.generate_history", "--rows", args.rows, "--seed", "42",
                    "--out", str(out), "--quiet"], cwd=ROOT, check=True)
    return str(out), f"generated {args.rows} rows (seed 42)"


def measured(argv: list[str], tmp: Path, label: str) -> dict:
    """One ``python -m batch.backtest`` process under GNU time, with its JSON report."""
    timed = run_backtest(argv, tmp, label)
    run = {"label": label, "wall_s": timed.wall_s, "cpu_s": round(timed.cpu_s, 2),
           "peak_rss_mib": round(timed.peak_rss_mib), "load_before": timed.load_before,
           "report": timed.report}
    print(f"{label}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s cpu, "
          f"{run['peak_rss_mib']} MiB peak (load {run['load_before']})", file=sys.stderr)
    return run


def sweep_values(k: int) -> list[str]:
    start, stop, step = (Decimal(x) for x in SWEEP.split(":"))
    values = [start + i * step for i in range(int((stop - start) / step) + 1)]
    picks = sorted({round(i * (len(values) - 1) / max(k - 1, 1)) for i in range(k)})
    return [str(values[i]) for i in picks]


def bench_set(name: str, data: str, tmp: Path, k: int,
              parts: tuple[str, ...] = ("ab", "sweep", "value")) -> dict:
    rules = str(ROOT / "rules" / f"{name}.toml")
    param, value = CHANGED[name]
    b_file = tmp / f"{name}_b.toml"
    b_file.write_text(_changed_copy(Path(rules), param, value))
    shutil.copytree(ROOT / "rules" / "lists", tmp / "lists", dirs_exist_ok=True)  # list files
    base = ["--input", data, "--rules", rules]
    runs = {"backtest_a": measured(base, tmp, f"{name}_backtest_a"),
            "backtest_b": measured(["--input", data, "--rules", str(b_file)], tmp,
                                   f"{name}_backtest_b"),
            "ab": measured([*base, "--compare", str(b_file)], tmp, f"{name}_ab")}
    if "sweep" in parts:
        runs["sweep"] = measured([*base, "--sweep", f"{param}={SWEEP}"], tmp, f"{name}_sweep")
    if "value" in parts:
        runs["value_speed"] = measured([*base, "--value", "--speed"], tmp,
                                       f"{name}_value_speed")
    points = {p["point"]: p for p in runs["sweep"]["report"]["sweep"]["points"]} \
        if "sweep" in runs else {}
    singles = []
    for v in sweep_values(k) if points else []:
        run = measured([*base, "--set", f"{param}={v}"], tmp, f"{name}_point_{v}")
        assert points[f"{param}={v}"]["alerts"] == run["report"]["rules"]["flagged"]["flagged"]
        singles.append(run)
    ab = runs["ab"]["report"]
    assert ab["a"]["rules"] == runs["backtest_a"]["report"]["rules"], "A differs"
    assert ab["b"]["rules"] == runs["backtest_b"]["report"]["rules"], "B differs"
    n_points = len(points)
    two = {x: runs["backtest_a"][x] + runs["backtest_b"][x] for x in ("wall_s", "cpu_s")}
    out = {"rules": f"rules/{name}.toml", "b": f"{param}={value}", "sweep": f"{param}={SWEEP}",
           "sweep_points": n_points,
           "runs": {k_: _strip(r) for k_, r in runs.items()},
           "sweep_baseline_runs": [_strip(r) for r in singles],
           "ab_vs_two_backtests": {x: round(two[x] / runs["ab"][x], 2)
                                   for x in ("wall_s", "cpu_s")}}
    if singles:
        mean = {x: sum(r[x] for r in singles) / len(singles) for x in ("wall_s", "cpu_s")}
        out["sweep_baseline"] = {"measured_points": len(singles), "points": n_points,
                                 "wall_s": round(mean["wall_s"] * n_points, 1),
                                 "cpu_s": round(mean["cpu_s"] * n_points, 1),
                                 "extrapolated": len(singles) < n_points}
        out["sweep_vs_separate"] = {x: round(mean[x] * n_points / runs["sweep"][x], 2)
                                    for x in ("wall_s", "cpu_s")}
    if name == "default" and "sweep" in runs:
        (RESULTS / "whatif_default_ab.json").write_text(json.dumps(
            _worked_example(ab, runs["sweep"]["report"]["sweep"]), indent=2) + "\n")
    return out


def bench_scale(small: str, data: str, tmp: Path) -> dict:
    """The default set's backtest and A/B on the 10x history and, in the same run, on the
    47M one: the ratios compare runs made under the same load."""
    rules = str(ROOT / "rules" / "default.toml")
    b_file = tmp / "default_b.toml"
    b_file.write_text(_changed_copy(Path(rules), *CHANGED["default"]))
    runs = {}
    for size, path in (("47m", small), ("10x", data)):
        base = ["--input", path, "--rules", rules]
        runs[f"{size}_backtest"] = measured(base, tmp, f"scale_{size}_backtest")
        runs[f"{size}_ab"] = measured([*base, "--compare", str(b_file)], tmp, f"scale_{size}_ab")
    assert runs["10x_ab"]["report"]["a"]["rules"] == runs["10x_backtest"]["report"]["rules"]
    return {"input": data, "rows": runs["10x_backtest"]["report"]["rows"],
            "runs": {k: _strip(r) for k, r in runs.items()},
            "ratio_to_47m": {k: {x: round(runs[f"10x_{k}"][x] / runs[f"47m_{k}"][x], 2)
                                 for x in ("wall_s", "cpu_s")} for k in ("backtest", "ab")}}


def _changed_copy(path: Path, param: str, value: str) -> str:
    """The rule set file with one rule's parameter set to ``value`` (its line rewritten)."""
    rid, key = param.split(".")
    lines, in_rule, done = path.read_text().splitlines(), False, False
    for i, line in enumerate(lines):
        if line.strip().startswith("id ="):
            in_rule = line.split("=", 1)[1].split("#")[0].strip().strip('"') == rid
        elif in_rule and line.strip().startswith(f"{key} ="):
            lines[i], done = f'{key} = "{value}"', True
    assert done, f"{param} not found in {path}"
    return "\n".join(lines) + "\n"


def _strip(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "report"} | {
        "report_seconds": run["report"].get("seconds"), "rows": _rows(run["report"])}


def _rows(report: dict) -> int:
    return report["a"]["rows"] if "a" in report else report["rows"]


def _worked_example(ab: dict, sweep: dict) -> dict:
    """What the README's worked example reads: A and B per scenario, flips, sweep points."""
    side = {}
    for key in ("a", "b"):
        f = ab[key]["rules"]["flagged"]
        side[key] = {"rule_set_id": ab[key]["rule_set_id"], "alerts": f["flagged"],
                     "alerts_per_day": ab[key]["alerts_per_day"], "precision": f["precision"],
                     "recall": f["recall"], "recall_by_scenario": f["recall_by_scenario"]}
    return {"input_rows": ab["a"]["rows"], "a": side["a"], "b": side["b"],
            "flips": {k: {x: v[x] for x in ("gained", "lost", "by_scenario")}
                      for k, v in ab["flips"].items()},
            "flip_sample_first": ab["flip_sample"][:2],
            "sweep_points": sweep["points"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", help="the 47M-row history (default: see module doc)")
    p.add_argument("--rows", default="47e6", help="rows to generate when no data exists")
    p.add_argument("--sets", default="default,example", help="rule sets under rules/")
    p.add_argument("--baseline-points", type=int, default=11,
                   help="sweep points run as separate backtests (the rest extrapolated)")
    p.add_argument("--parts", default="ab,sweep,value",
                   help="per rule set: ab (always), sweep (+ its separate backtests), value")
    p.add_argument("--scale-input", help="a 10x history for the scale runs")
    p.add_argument("--only", choices=("47m", "scale"), help="run one part, keep the other's "
                   "figures from bench/results/whatif.json")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "whatif.json"
    summary = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    with tempfile.TemporaryDirectory(prefix="bench_whatif_") as t:
        tmp = Path(t)
        data, described = pick_input(args, tmp)
        summary.update({"input": described, "cores": os.cpu_count(), "targets": TARGETS})
        if args.only != "scale":
            summary["sets"] = {}
            for name in args.sets.split(","):  # results written after each part
                summary["sets"][name] = bench_set(name, data, tmp, args.baseline_points,
                                                  tuple(args.parts.split(",")))
                write(summary)
        if args.scale_input and args.only != "47m":
            summary["scale"] = bench_scale(data, args.scale_input, tmp)
    write(summary)
    return 0


def write(summary: dict) -> None:
    (RESULTS / "whatif.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "whatif.md").write_text(markdown(summary, " ".join(sys.argv[1:])))


def markdown(s: dict, argv: str) -> str:
    lines = ["# What-if benchmark (issue 17)", "",
             f"Input: {s.get('input')}; {s.get('cores')} cores shared with other work (load "
             "average before each run recorded); every run a separate process under GNU time.",
             f"Command: `.venv/bin/python -m bench.bench_whatif {argv}`", ""]
    for r in s.get("sets", {}).values():
        lines += [f"## {r['rules']} (B: {r['b']}; sweep {r['sweep']}, {r['sweep_points']} "
                  "points)", "", "| run | wall s | cpu s | peak RSS MiB | load before |",
                  "|---|---:|---:|---:|---:|"]
        for label, run in [*r["runs"].items(),
                           *[(x["label"], x) for x in r["sweep_baseline_runs"]]]:
            lines.append(f"| {label} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                         f"{run['peak_rss_mib']} | {run['load_before']} |")
        lines += ["", f"- A/B in one pass vs two separate backtests (their sum / the A/B): "
                  f"CPU {r['ab_vs_two_backtests']['cpu_s']}x, wall "
                  f"{r['ab_vs_two_backtests']['wall_s']}x (wall: load-bound, see the load)."]
        sb = r.get("sweep_baseline")
        if sb:
            lines.append(f"- Sweep in one pass vs {sb['points']} separate backtests"
                         + (f" (mean of {sb['measured_points']} measured x {sb['points']})"
                            if sb["extrapolated"] else "")
                         + f" (their sum / the sweep): CPU {r['sweep_vs_separate']['cpu_s']}x, "
                         f"wall {r['sweep_vs_separate']['wall_s']}x.")
        lines.append("")
    if "scale" in s:
        sc = s["scale"]
        rows = f"{sc['rows']:,}" if sc.get("rows") else "n/a"
        lines += [f"## Scale: {sc['input']} ({rows} rows), rules/default.toml", "",
                  "| run | wall s | cpu s | peak RSS MiB | load before | 10x / 47M "
                  "(wall / cpu) |", "|---|---:|---:|---:|---:|---|"]
        for label, run in sc["runs"].items():
            ratio = sc["ratio_to_47m"].get(label.split("_", 1)[1], {}) \
                if label.startswith("10x") else {}
            lines.append(f"| {label} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                         f"{run['peak_rss_mib']} | {run['load_before']} | "
                         f"{ratio.get('wall_s', 'n/a')} / {ratio.get('cpu_s', 'n/a')} |")
        lines.append("")
    t = s.get("targets", TARGETS)
    lines += [f"Targets (2 idle cores): A/B <= {t['ab_wall_s']} s and <= {t['peak_gib']} GiB; "
              f"11-point sweep <= {t['sweep_wall_s']} s; value + speed <= "
              f"{t['value_speed_wall_s']} s; 10x history <= {t['scale_ratio']}x the 47M "
              f"time, <= {t['peak_gib']} GiB. Under this machine's shared load wall times are "
              "several times the CPU time: compare the ratios and CPU seconds.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
