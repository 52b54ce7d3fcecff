"""Benchmark ``python -m batch.generate_history`` against a seed-style Faker-per-row baseline.

    .venv/bin/python -m bench.bench_generate                         # 4.7e6 and 47e6 rows
    .venv/bin/python -m bench.bench_generate --rows 4.7e6 47e6 470e6 # scaling (470M: ~18 GB)
    .venv/bin/python -m bench.bench_generate --rows 5e6              # quicker

Runs the generator as a subprocess once per ``--rows`` (wall time, CPU time of the process
tree, peak RSS summed over its process tree sampled every 50 ms; each output is deleted right
after it is measured), then, in the same run, the live simulator in-process (events/s of
``simulator.simulate``) and the baseline: one Faker call per field per row into a list of
dicts, written with Polars, on a sample, extrapolated linearly. Writes
bench/results/generate.{md,json}.
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

from fraudlake.cli import ArgumentParser, count_arg

ROOT = Path(__file__).resolve().parents[1]

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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    cpu = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_tree_rss_mib": round(peak / 2**20, 1),
            "max_single_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(cpu, 1),
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


def run_live(events: int, users: int) -> dict:
    """The live simulator in-process: events/s generated (wall and CPU), world built first."""
    from datetime import UTC

    from simulator import simulate
    from streaming.produce import live_world

    end = datetime.now(UTC).replace(microsecond=0)
    world = live_world(7, users, end)
    list(simulate(world, end, 1_000, 7))  # warm: time tables, trips cache
    cpu, wall = time.process_time(), time.perf_counter()
    n = sum(f.height for f in simulate(world, end, events, 7, chunk_rows=100_000))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"events": n, "users": users, "seconds": round(wall, 2),
            "events_per_s": round(n / wall), "cpu_seconds": round(cpu, 2),
            "events_per_cpu_s": round(n / cpu)}


def report(gens: list[dict], base: dict, live: dict, workers: int) -> str:
    big = max(gens, key=lambda g: g["rows"])
    small = min(gens, key=lambda g: g["rows"])
    extrapolated = big["rows"] / base["rows_per_s"]
    load = os.getloadavg()
    rows = [f"| batch.generate_history ({workers} workers) | {g['rows']:,} | {g['seconds']:.1f} "
            f"| {g['cpu_seconds']:,.1f} | {g['rows_per_s']:,} | "
            f"{g['seconds'] / g['rows'] / (small['seconds'] / small['rows']):.2f} | "
            f"{g['cpu_seconds'] / g['rows'] / (small['cpu_seconds'] / small['rows']):.2f} | "
            f"{g['peak_tree_rss_mib']:,.0f} MiB |" for g in sorted(gens, key=lambda g: g["rows"])]
    lines = [
        "# Benchmark: history generator", "",
        f"Run {datetime.now().isoformat(timespec='seconds')} on {os.cpu_count()} cores "
        f"(load average before the first run {small['load_before']:.2f}, after the last "
        f"{load[0]:.2f}; the machine is shared with other jobs, so wall times are noisy — CPU "
        "time is the steadier figure).",
        "Command: `.venv/bin/python -m bench.bench_generate --rows "
        f"{' '.join(str(g['rows']) for g in gens)} --workers {workers}`", "",
        "| what | rows | wall s | CPU s | rows/s (wall) | wall s per row vs smallest | "
        "CPU s per row vs smallest | peak RSS (tree) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| seed-style baseline (Faker per row, measured) | {base['rows']:,} | "
        f"{base['seconds']:.1f} | – | {base['rows_per_s']:,} | – | – | – |",
        f"| baseline extrapolated to {big['rows']:,} rows | {big['rows']:,} | "
        f"{extrapolated:,.0f} | – | {base['rows_per_s']:,} | – | – | – |", "",
        f"**Speed-up: {extrapolated / big['seconds']:,.0f}x** over the Faker-per-row baseline "
        f"(same run). Output of the largest run: {big['bytes'] / 2**20:,.0f} MiB of Parquet "
        "(snappy); each output was deleted after it was measured.",
        "",
        f"Live simulator in-process (`simulator.simulate`, {live['users']:,} cards, "
        f"{live['events']:,} events, frames of 100k): **{live['events_per_s']:,} events/s** "
        f"wall, {live['events_per_cpu_s']:,} events per CPU second.",
        "",
        "Targets: 47M rows in <= 30 s and <= 2 GiB peak RSS on 2 cores; time linear in the rows "
        "(within 15 %), peak memory flat; live >= 300k events/s.", "",
        "Generator summary (largest run):", "", "```", *big["summary"], "```",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description="benchmark batch.generate_history")
    p.add_argument("--rows", type=count_arg, nargs="+", default=[4_700_000, 47_000_000],
                   help="row counts to generate, one run each (default 4.7e6 47e6)")
    p.add_argument("--baseline-rows", type=count_arg, default=20_000,
                   help="rows for the Faker-per-row baseline sample (20000)")
    p.add_argument("--live-events", type=count_arg, default=3_000_000,
                   help="events for the in-process live simulator run (3e6)")
    p.add_argument("--live-users", type=count_arg, default=200_000,
                   help="cards of the live simulator's world (200000)")
    p.add_argument("--workers", type=int, default=2, help="generator processes (2)")
    p.add_argument("--out", type=Path, default=ROOT / "storage" / ".bench_generate",
                   help="scratch folder, deleted after each run")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = args.out.parent / (args.out.name + "-baseline")
    scratch.mkdir(exist_ok=True)
    gens = []
    try:
        for rows in args.rows:
            try:
                gens.append(run_generator(rows, args.out, args.workers))
            finally:
                shutil.rmtree(args.out, ignore_errors=True)
            print(json.dumps(gens[-1]), flush=True)
        live = run_live(args.live_events, args.live_users)
        base = run_baseline(args.baseline_rows, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report(gens, base, live, args.workers)
    (RESULTS / "generate.md").write_text(text)
    (RESULTS / "generate.json").write_text(json.dumps(
        {"generator": gens, "live": live, "baseline": base, "workers": args.workers},
        indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
