"""Benchmark the SQL engine of `python -m batch.backtest` on rule sets against the v1 SQL engine.

    .venv/bin/python -m bench.bench_backtest_sql --input storage/historical [--v1-rev 4bccc15]
        [--example]

Same data, same run, each a separate process under GNU time (wall, CPU, peak RSS), with
``--engine sql``: the v1 SQL engine (``queries/rules/flags.sql`` with RuleParams, exported from
git revision ``--v1-rev`` into a temporary folder) and this tree's composed SQL of
``rules/default.toml``; both must give identical hit rates. ``--example`` also runs
``rules/example.toml`` (13 rules, every kind). Writes bench/results/backtest_sql.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timed_backtest import run_backtest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = ROOT / "bench" / "results"


def measured(cwd: Path, argv: list[str], tmp: Path, label: str) -> dict:
    timed = run_backtest([*argv, "--engine", "sql"], tmp, label, cwd,
                         env={"PYTHONDONTWRITEBYTECODE": "1"})
    run = {"label": label, "wall_s": timed.wall_s, "cpu_s": timed.cpu_s,
           "peak_rss_mib": round(timed.peak_rss_mib), "load_before": timed.load_before,
           "rows": timed.report["rows"], "rules": timed.report["rules"]}
    print(f"{label}: {run['wall_s']:.1f} s wall, {run['peak_rss_mib']} MiB "
          f"(load {timed.load_before:.1f})", file=sys.stderr)
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="Parquet file/folder/glob")
    p.add_argument("--v1-rev", default="4bccc15", help="git revision of the v1 SQL engine")
    p.add_argument("--example", action="store_true", help="also run rules/example.toml")
    args = p.parse_args()
    path = str(Path(args.input).resolve())
    with tempfile.TemporaryDirectory(prefix="bench_backtest_sql_") as t:
        tmp = Path(t)
        v1 = tmp / "v1"
        v1.mkdir()
        archive = subprocess.run(["git", "archive", args.v1_rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(v1)], input=archive, check=True)
        runs = [measured(v1, ["--input", path], tmp, "v1_sql"),
                measured(ROOT, ["--input", path], tmp, "default_sql")]
        if args.example:
            runs.append(measured(ROOT, ["--input", path, "--rules", "rules/example.toml"],
                                 tmp, "example_sql"))
    assert runs[0]["rules"] == runs[1]["rules"], "v1 and rules/default.toml differ"
    write_results(runs, args)
    return 0


def write_results(runs: list[dict], args: argparse.Namespace) -> None:
    ratio = runs[1]["wall_s"] / runs[0]["wall_s"]
    summary = {"input": args.input, "rows": runs[0]["rows"], "cores": os.cpu_count(),
               "v1_rev": args.v1_rev, "default_over_v1_wall": round(ratio, 3),
               "runs": [{k: v for k, v in r.items() if k != "rules"} for r in runs]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backtest_sql.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# Backtest, SQL engine: composed rule sets vs the v1 SQL", "",
             f"Input: {args.input} ({runs[0]['rows']:,} rows); {os.cpu_count()} cores shared "
             "with other work (load average before each run recorded).",
             f"Command: `.venv/bin/python -m bench.bench_backtest_sql --input {args.input}"
             + (" --example" if args.example else "") + "`", "",
             "| variant | wall s | cpu s | peak RSS MiB | load before |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['label']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mib']} | "
              f"{r['load_before']} |" for r in runs]
    lines += ["", f"rules/default.toml (composed) / v1 SQL, wall: **{ratio:.2f}x**; identical "
              "hit rates."]
    (RESULTS / "backtest_sql.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
