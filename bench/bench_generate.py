"""Benchmark ``python -m batch.generate_history`` and the live simulator against a baseline
version of the project (``--baseline-ref``, default ``main``) in the same run.

    .venv/bin/python -m bench.bench_generate                          # 4.7e6 and 47e6 rows
    .venv/bin/python -m bench.bench_generate --rows 4.7e6 47e6 470e6 \\
        --out /work/data/history470m_p12                              # scaling (470M: ~16 GB)
    .venv/bin/python -m bench.bench_generate --baseline-ref none      # no baseline

The baseline is ``git archive <ref>`` unpacked into a scratch folder and run with the same
interpreter (``PYTHONPATH`` pointing at it). For each ``--rows`` the generator runs as a
subprocess (this tree, then the baseline where ``--baseline-rows`` asks for it, back to back
so they share the machine's load): wall time, CPU seconds of the process tree (children are
waited for, so ``RUSAGE_CHILDREN`` holds the workers too), peak RSS summed over the tree
(sampled every 50 ms). Each output is deleted right after it is measured. Then the live
simulator (``simulator.simulate``) in a subprocess per version: events/s wall and per CPU
second. The machine is shared, so wall times are noisy: compare the ratios and the CPU
seconds. Writes bench/results/NAME.{md,json} (``--name``, default generate).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from fraudlake.cli import ArgumentParser, count_arg

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
TARGET_ROWS = 47_000_000  # the size the report compares the others with

_LIVE = """
import json, sys, time
from datetime import UTC, datetime
from simulator import simulate
from streaming.produce import live_world
events, users = int(sys.argv[1]), int(sys.argv[2])
end = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
world = live_world(7, users, end)
list(simulate(world, end, 1_000, 7))  # warm: time tables, trips cache
cpu, wall = time.process_time(), time.perf_counter()
n = sum(f.height for f in simulate(world, end, events, 7, chunk_rows=100_000))
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
print(json.dumps({"events": n, "users": users, "seconds": round(wall, 2),
                  "events_per_s": round(n / wall), "cpu_seconds": round(cpu, 2),
                  "events_per_cpu_s": round(n / cpu)}))
"""


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


def _measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[dict, str]:
    """Run ``cmd``; (wall s, CPU s of the tree, peak tree RSS, load before), stdout."""
    peak = 0
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
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
        raise SystemExit(f"{' '.join(cmd[:4])} failed with exit code {proc.returncode}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "peak_tree_rss_mib": round(peak / 2**20, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}, stdout


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # the tree's packages before the editable install
    return env


def run_generator(tree: Path, label: str, rows: int, out: Path, workers: int,
                  users: int | None = None) -> dict:
    cmd = [sys.executable, "-m", "batch.generate_history", "--rows", str(rows), "--out",
           str(out), "--seed", "42", "--quiet", "--overwrite", "--workers", str(workers)]
    cmd += ["--users", str(users)] if users else []
    try:
        fig, stdout = _measure(cmd, tree, _env(tree))
        size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"version": label, "rows": rows, **fig, "rows_per_s": round(rows / fig["seconds"]),
            "rows_per_cpu_s": round(rows / max(fig["cpu_seconds"], 1e-9)), "bytes": size,
            "summary": stdout.strip().splitlines()}


def run_live(tree: Path, label: str, events: int, users: int) -> dict:
    fig, stdout = _measure([sys.executable, "-c", _LIVE, str(events), str(users)], tree,
                           _env(tree))
    return {"version": label, **json.loads(stdout.strip().splitlines()[-1]),
            "process_peak_rss_mib": fig["peak_tree_rss_mib"], "load_before": fig["load_before"]}


def checkout(ref: str, into: Path) -> str:
    """Unpack ``git archive ref`` into ``into``; returns the commit id."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         check=True, capture_output=True, text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {ref} failed")
    return sha


def scaling(gens: list[dict]) -> list[str]:
    """How time and peak memory grow from each size to the next (``gens`` by rows): the
    marginal cost of a million more rows per step and how it changes along the sizes (time
    linear in the rows: the same marginal cost at every step), and the peak RSS of the
    largest run over the smallest (memory flat: about 1)."""
    if len(gens) < 2:
        return []
    out = ["Scaling (this tree): the cost of each step to the next size, per million rows "
           "added (a fixed start-up — interpreter, imports, world, one file per month — "
           "is paid once per run whatever the rows):", "",
           "| step | rows added | CPU-s added | CPU-s per M rows | wall-s per M rows | "
           "vs first step (CPU / wall) | peak RSS |", "|---|---:|---:|---:|---:|---:|---:|"]
    first: tuple[float, float] | None = None
    for lo, hi in zip(gens, gens[1:], strict=False):
        added = (hi["rows"] - lo["rows"]) / 1e6
        cpu = (hi["cpu_seconds"] - lo["cpu_seconds"]) / added
        wall = (hi["seconds"] - lo["seconds"]) / added
        first = first or (cpu, wall)
        out.append(f"| {lo['rows'] / 1e6:g}M → {hi['rows'] / 1e6:g}M | {added:,.1f}M | "
                   f"{hi['cpu_seconds'] - lo['cpu_seconds']:,.1f} | {cpu:.3f} | {wall:.3f} | "
                   f"{cpu / first[0]:.2f}× / {wall / first[1]:.2f}× | "
                   f"{lo['peak_tree_rss_mib']:,.0f} → {hi['peak_tree_rss_mib']:,.0f} MiB |")
    small, big = gens[0], gens[-1]
    per_row = (big["cpu_seconds"] / big["rows"]) / (small["cpu_seconds"] / small["rows"])
    fixed = small["cpu_seconds"] - first[0] * small["rows"] / 1e6 if first else 0.0
    out += ["", f"Peak RSS of the tree, largest run over smallest "
            f"({big['rows'] / 1e6:g}M / {small['rows'] / 1e6:g}M rows): "
            f"**{big['peak_tree_rss_mib'] / small['peak_tree_rss_mib']:.2f}×**. "
            f"Start-up paid once per run (the smallest run's CPU-s less its rows at the first "
            f"step's marginal cost): {fixed:.1f} CPU-s, so a run of {small['rows'] / 1e6:g}M "
            f"rows spends {1 / per_row:.2f}× the CPU per row of a run of "
            f"{big['rows'] / 1e6:g}M.", ""]
    return out


def _row(g: dict, ref: dict, base: dict | None) -> str:
    def per(h: dict, k: str) -> float:
        return h[k] / h["rows"]

    ratio = "–"
    if base:
        ratio = (f"{base['seconds'] / g['seconds']:.2f}× / "
                 f"{base['cpu_seconds'] / g['cpu_seconds']:.2f}×")
    return (f"| {g['version']} | {g['rows']:,} | {g['seconds']:,.1f} | {g['cpu_seconds']:,.1f} "
            f"| {g['rows_per_cpu_s']:,} | {per(g, 'seconds') / per(ref, 'seconds'):.2f} "
            f"| {per(g, 'cpu_seconds') / per(ref, 'cpu_seconds'):.2f} "
            f"| {g['peak_tree_rss_mib']:,.0f} MiB | {g['load_before']:.1f} | {ratio} |")


def report(gens: list[dict], bases: list[dict], lives: list[dict], workers: int,
           base_label: str, command: str) -> str:
    gens = sorted(gens, key=lambda g: g["rows"])
    base_at = {b["rows"]: b for b in bases}
    ref = next((g for g in gens if g["rows"] == TARGET_ROWS), gens[-1])
    base_ref = next((b for b in bases if b["rows"] == ref["rows"]), bases[0] if bases else None)
    table = [_row(g, ref, base_at.get(g["rows"])) for g in gens]
    table += [_row(b, base_ref or b, None) for b in sorted(bases, key=lambda b: b["rows"])]
    lines = [
        "# Benchmark: history generator and live simulator", "",
        f"Run {datetime.now().isoformat(timespec='seconds')} on {os.cpu_count()} cores, shared "
        "with other jobs (load average before each run in the table): wall times are noisy, "
        "CPU seconds are the steadier figure; every ratio compares runs of the same size made "
        "back to back in this run.", f"Command: `{command}`", "",
        f"| version | rows | wall s | CPU s | rows per CPU-s | wall per row vs "
        f"{ref['rows'] / 1e6:g}M | CPU per row vs {ref['rows'] / 1e6:g}M | peak RSS (tree) | "
        "load before | baseline / this (wall / CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *table, "",
    ]
    lines += scaling(gens)
    if ref["rows"] == TARGET_ROWS:
        idle = ref["cpu_seconds"] / workers
        lines += [
            f"47M rows: {ref['seconds']:.1f} s wall at load {ref['load_before']:.0f}, "
            f"{ref['cpu_seconds']:.1f} CPU-s ({workers} threads: ≈ {idle:.0f} s wall on "
            f"{workers} free cores), peak {ref['peak_tree_rss_mib']:,.0f} MiB.", ""]
    for live in lives:
        lines.append(f"Live simulator in-process ({live['version']}; `simulator.simulate`, "
                     f"{live['users']:,} cards, {live['events']:,} events, frames of 100k, load "
                     f"{live['load_before']:.0f}): **{live['events_per_s']:,} events/s** wall, "
                     f"**{live['events_per_cpu_s']:,} events per CPU-s**.")
    lines += ["", f"Baseline: {base_label}.", "",
              "Targets: 47M rows in <= 30 s and <= 2 GiB peak RSS on 2 cores; time linear in the "
              "rows (within 15 %), peak memory flat; live >= 300k events/s.", "",
              "Generator summary (largest run of this version):", "", "```",
              *gens[-1]["summary"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description="benchmark batch.generate_history and the live simulator")
    p.add_argument("--rows", type=count_arg, nargs="+", default=[4_700_000, 47_000_000],
                   help="row counts to generate, one run each (default 4.7e6 47e6)")
    p.add_argument("--baseline-ref", default="main",
                   help="git ref of the baseline version (default main; 'none' to skip)")
    p.add_argument("--baseline-rows", type=count_arg, nargs="*",
                   default=[4_700_000, 47_000_000],
                   help="sizes at which the baseline runs too (default 4.7e6 47e6)")
    p.add_argument("--live-events", type=count_arg, default=3_000_000,
                   help="events for the in-process live simulator run (3e6)")
    p.add_argument("--live-users", type=count_arg, default=200_000,
                   help="cards of the live simulator's world (200000)")
    p.add_argument("--workers", type=int, default=2, help="generator processes (2)")
    p.add_argument("--out", type=Path, default=ROOT / "storage" / ".bench_generate",
                   help="scratch dataset folder, deleted after each run")
    p.add_argument("--users", type=count_arg, default=None,
                   help="the same number of cards for every size (default: derived from the "
                        "rows, as the CLI does: ~1.6 payments per open card per day)")
    p.add_argument("--name", default="generate",
                   help="results file name: bench/results/NAME.{md,json} (default generate)")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m bench.bench_generate " + " ".join(given)
    gens: list[dict] = []
    bases: list[dict] = []
    lives: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        base_tree = None
        base_label = "none"
        if args.baseline_ref != "none":
            base_tree = Path(tmp) / "baseline"
            sha = checkout(args.baseline_ref, base_tree)
            base_label = f"`{args.baseline_ref}` at {sha[:12]}"
        this = f"this tree ({_head()})"
        for rows in sorted(args.rows):
            gens.append(run_generator(ROOT, this, rows, args.out, args.workers, args.users))
            print(json.dumps(gens[-1]), flush=True)
            if base_tree is not None and rows in args.baseline_rows:
                bases.append(run_generator(base_tree, f"baseline {base_label}", rows, args.out,
                                           args.workers, args.users))
                print(json.dumps(bases[-1]), flush=True)
        lives.append(run_live(ROOT, this, args.live_events, args.live_users))
        print(json.dumps(lives[-1]), flush=True)
        if base_tree is not None:
            lives.append(run_live(base_tree, f"baseline {base_label}", args.live_events,
                                  args.live_users))
            print(json.dumps(lives[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = report(gens, bases, lives, args.workers, base_label, command)
    (RESULTS / f"{args.name}.md").write_text(text)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(
        {"generator": gens, "baseline": bases, "live": lives, "workers": args.workers,
         "baseline_ref": base_label, "command": command}, indent=2) + "\n")
    print(text)
    return 0


def _head() -> str:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "batch",
                            "simulator"], capture_output=True, text=True).stdout.strip()
    return sha + (" + uncommitted changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
