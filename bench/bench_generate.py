"""Benchmark ``python -m batch.generate_history`` against a seed-style Faker-per-row baseline.

    .venv/bin/python -m bench.bench_generate                 # 47e6 rows (≈1 min on 2 cores)
    .venv/bin/python -m bench.bench_generate --rows 5e6      # quicker

Runs the generator as a subprocess (wall time; peak RSS summed over its process tree, sampled
every 50 ms, plus the largest single process from getrusage), then, in the same run, the
baseline: one Faker call per field per row into a list of dicts, written with Polars, on a
sample, extrapolated linearly to the same row count. Writes bench/results/generate.{md,json}.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from fraudlake.cli import ArgumentParser, count_arg  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (from /proc)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return total


def run_generator(rows: int, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "batch.generate_history", "--rows", str(rows), "--out", str(out),
           "--seed", "42", "--quiet", "--overwrite", "--workers", str(workers)]
    peak = 0
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"generator failed with exit code {proc.returncode}")
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_tree_rss_mib": round(peak / 2**20, 1),
            "max_single_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "bytes": size, "load_before": load_before, "summary": stdout.strip().splitlines()}


def run_baseline(rows: int, out: Path) -> dict:
    """Seed-style: Faker per row, dicts in a list, then one Parquet file."""
    import polars as pl
    from faker import Faker

    fake = Faker()
    Faker.seed(42)
    rnd = random.Random(42)
    start = time.perf_counter()
    records = []
    for _ in range(rows):
        records.append({
            "transaction_id": fake.uuid4(),
            "user_id": rnd.randint(1, 250_000),
            "name": fake.name(),
            "merchant": fake.company(),
            "city": fake.city(),
            "ts": fake.date_time_between(datetime(2000, 1, 1), datetime(2025, 12, 31)),
            "amount": round(rnd.lognormvariate(3.5, 1.0), 2),
            "lat": float(fake.latitude()),
            "lon": float(fake.longitude()),
            "is_fraud": rnd.random() < 0.0025,
        })
    pl.DataFrame(records).write_parquet(out / "baseline.parquet")
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def report(gen: dict, base: dict, workers: int) -> str:
    extrapolated = gen["rows"] / base["rows_per_s"]
    ratio = extrapolated / gen["seconds"]
    load = os.getloadavg()
    lines = [
        "# Benchmark: history generator", "",
        f"Run {datetime.now().isoformat(timespec='seconds')} on {os.cpu_count()} cores "
        f"(load average before {gen['load_before']:.2f}, after {load[0]:.2f}; the machine is "
        "shared with other jobs, so wall times are noisy — CPU time is the steadier figure).",
        "Command: `.venv/bin/python -m bench.bench_generate "
        f"--rows {gen['rows']} --workers {workers}`", "",
        "| what | rows | seconds | rows/s | peak RSS (tree) |",
        "|---|---:|---:|---:|---:|",
        f"| batch.generate_history ({workers} workers) | {gen['rows']:,} | {gen['seconds']:.1f} | "
        f"{gen['rows_per_s']:,} | {gen['peak_tree_rss_mib']:,.0f} MiB |",
        f"| seed-style baseline (Faker per row, measured) | {base['rows']:,} | "
        f"{base['seconds']:.1f} | {base['rows_per_s']:,} | – |",
        f"| baseline extrapolated to {gen['rows']:,} rows | {gen['rows']:,} | "
        f"{extrapolated:,.0f} | {base['rows_per_s']:,} | – |", "",
        f"**Speed-up: {ratio:,.0f}x** over the Faker-per-row baseline (same run). "
        f"CPU time (user+sys, all processes): {gen['cpu_seconds']:,.1f} s, i.e. "
        f"{gen['cpu_seconds'] / gen['seconds']:.2f} cores busy on average; on a quiet machine "
        f"wall time is about CPU time / 2 + ~3 s start-up. Largest single process: "
        f"{gen['max_single_rss_mib']:,.0f} MiB. Output: {gen['bytes'] / 2**20:,.0f} MiB of "
        f"Parquet (snappy).",
        "Target: 47M rows in <= 60 s (stretch 30 s) and <= 2 GiB peak RSS on 2 cores.", "",
        "Generator summary:", "", "```", *gen["summary"], "```",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description="benchmark batch.generate_history")
    p.add_argument("--rows", type=count_arg, default=47_000_000, help="rows to generate (47e6)")
    p.add_argument("--baseline-rows", type=count_arg, default=20_000,
                   help="rows for the Faker-per-row baseline sample (20000)")
    p.add_argument("--workers", type=int, default=2, help="generator processes (2)")
    p.add_argument("--out", type=Path, default=ROOT / "storage" / ".bench_generate",
                   help="scratch folder, deleted afterwards unless --keep")
    p.add_argument("--keep", action="store_true", help="keep the generated dataset")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = args.out.parent / (args.out.name + "-baseline")
    scratch.mkdir(exist_ok=True)
    try:
        gen = run_generator(args.rows, args.out, args.workers)
        base = run_baseline(args.baseline_rows, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report(gen, base, args.workers)
    (RESULTS / "generate.md").write_text(text)
    (RESULTS / "generate.json").write_text(json.dumps(
        {"generator": gen, "baseline": base, "workers": args.workers}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
