"""Benchmark the backtest on Trino (`--backend trino`) beside DuckDB's, same data, same run.

    .venv/bin/python -m bench.bench_trino [--input storage/bench_trino_history] [--rows 47e6]
        [--chunk-rows 4e6] [--rules rules/default.toml]

Data: --input (a folder below the Trino lake root, FRAUDLAKE_TRINO_ROOT, default storage/), else
storage/bench_trino_history, generated there with `python -m batch.generate_history --rows
<--rows>` when missing. Trino: the single node of `python -m fraudlake.services up trino`
(started here if nothing answers on FRAUDLAKE_TRINO_PORT; 2 GB heap, 2 cores shared with the
rest of the machine). Each backtest is a separate process measured with GNU time (wall, CPU of
the client, peak RSS of the client); Trino's own CPU is read from /proc for its process group.
No target: one node on 2 cores; the point is that it runs and that both reports agree (every
rule id's counts, flagged, precision/recall per scenario, the rule-set id). Writes
bench/results/trino[_<rule set file stem>].md and .json (no suffix for rules/default.toml).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.timed_backtest import run_backtest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = ROOT / "bench" / "results"


def ensure_input(args: argparse.Namespace) -> Path:
    path = Path(args.input) if args.input else ROOT / "storage" / "bench_trino_history"
    if not path.exists():
        subprocess.run([PY, "-m", "batch.generate_history", "--rows", args.rows, "--out",
                        str(path), "--quiet"], cwd=ROOT, check=True)
    return path.resolve()


def group_cpu_seconds(pgid: int) -> float:
    """user+sys CPU of every live process in a process group (Trino's JVM)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid):
            total += int(fields[11]) + int(fields[12])
    return total / tick


def measured(argv: list[str], tmp: Path, label: str, trino_pgid: int | None) -> dict:
    cpu0 = group_cpu_seconds(trino_pgid) if trino_pgid else 0.0
    run = run_backtest(argv, tmp, label)
    data = run.report
    out = {"label": label, "wall_s": run.wall_s, "client_cpu_s": run.cpu_s,
           "client_peak_rss_mib": round(run.peak_rss_mib), "load_before": run.load_before,
           "rows": data["rows"], "rules": data["rules"], "rule_set_id": data["rule_set_id"],
           "summary": run.stdout.strip().splitlines()[-1]}
    if trino_pgid:
        out["trino_cpu_s"] = round(group_cpu_seconds(trino_pgid) - cpu0, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", help="history folder below the Trino lake root")
    p.add_argument("--rows", default="47e6", help="rows to generate when no data exists")
    p.add_argument("--chunk-rows", default="4e6", help="rows per Trino user bucket")
    p.add_argument("--rules", default="rules/default.toml", help="rule set TOML file")
    args = p.parse_args()
    from fraudlake import services

    path = ensure_input(args)
    server = services.trino_server()
    started = services.up(server)
    pgid = services._read_pid(server)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_trino_") as t:
            tmp = Path(t)
            base = ["--input", str(path), "--rules", args.rules]
            duck = measured(base, tmp, "duckdb", None)
            trino = measured(base + ["--backend", "trino", "--chunk-rows", args.chunk_rows],
                             tmp, "trino", pgid)
    finally:
        if started.started:
            services.down(server)
    agree = all(duck[k] == trino[k] for k in ("rules", "rows", "rule_set_id"))
    write(path, args, [duck, trino], agree)
    return 0 if agree else 1


def write(path: Path, args: argparse.Namespace, runs: list[dict], agree: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    stem = Path(args.rules).stem
    name = "trino" if stem == "default" else f"trino_{stem}"
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"generated_at": now, "input": str(path), "chunk_rows": args.chunk_rows,
         "rules": args.rules, "reports_agree": agree, "runs": runs}, indent=2) + "\n")
    duck, trino = runs
    lines = [
        "# Backtest on Trino beside DuckDB", "",
        f"Run {now} on 2 cores shared with other work (load average before each run recorded). "
        f"Input: {path.name} ({duck['rows']:,} rows). Trino 476, one node, 2 GB heap, "
        f"user buckets of {args.chunk_rows} rows. Rule set {duck['rule_set_id']} "
        f"({args.rules}).",
        f"Command: `.venv/bin/python -m bench.bench_trino --input {path.name} --rules "
        f"{args.rules} --chunk-rows {args.chunk_rows}`", "",
        "| backend | wall s | client CPU s | Trino CPU s | client peak RSS MiB | load before |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(f"| {r['label']} | {r['wall_s']:.1f} | {r['client_cpu_s']:.1f} | "
                     f"{r.get('trino_cpu_s', '–')} | {r['client_peak_rss_mib']} | "
                     f"{r['load_before']} |")
    lines += ["", f"Trino / DuckDB wall time: **{trino['wall_s'] / duck['wall_s']:.1f}x**. "
              f"Hit-rate reports {'identical' if agree else 'DIFFER'} (every rule, every "
              "scenario).", "", "No target: the point is that it runs on Trino and agrees.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
