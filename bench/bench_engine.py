"""Rule engine throughput: the vectorised micro-batch engine vs a per-event Python loop.

``.venv/bin/python -m bench.bench_engine [--events 400000] [--users 50000] [--batch 20000]``

Both engines run in this process on the same generated events (many ties and bursts; the
test generator) cut into the same micro-batches; their decisions are checked equal, then
events/s and the ratio go to ``bench/results/engine.md`` (+ ``.json``). The machine is shared:
figures are noisy, compare the ratio rather than absolute numbers.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections import deque
from pathlib import Path

import polars as pl

from fraudlake.cli import ArgumentParser, positive_count_arg
from fraudlake.contract import FLAGGED, RULE_NAMES
from queries.params import DEFAULT_PARAMS, RuleParams
from streaming.engine import RuleEngine
from tests.streaming._stream_events import random_events

RESULTS = Path(__file__).parent / "results"


class LoopEngine:
    """The seed-style baseline: one Python iteration per event, dict-of-deques state."""

    def __init__(self, params: RuleParams = DEFAULT_PARAMS) -> None:
        self.p = params
        self.recent: dict[int, deque] = {}
        self.last: dict[int, tuple[int, float, float]] = {}

    def process(self, events: pl.DataFrame) -> pl.DataFrame:
        p = self.p
        window = p.high_frequency_window_seconds * 1_000_000
        rows = events.select(
            "transaction_id", "user_id", pl.col("ts").dt.epoch("us").alias("t"), "amount",
            "lat", "lon", "utc_offset_min").sort("t", "transaction_id").rows()
        out = {name: [] for name in ("transaction_id", *RULE_NAMES)}
        start, end = p.unusual_hour_start_hour, p.unusual_hour_end_hour
        for tid, user, t, amount, lat, lon, off in rows:
            q = self.recent.setdefault(user, deque())
            while q and q[0] < t - window:
                q.popleft()
            q.append(t)
            geo = False
            prev = self.last.get(user)
            if prev is not None:
                d = _haversine(prev[1], prev[2], lat, lon, p.geo_mismatch_earth_radius_km)
                h = max((t - prev[0]) / 3.6e9, p.geo_mismatch_min_hours)
                geo = d >= p.geo_mismatch_distance_km and d / h > p.geo_mismatch_speed_kmh
            self.last[user] = (t, lat, lon)
            hour = ((t // 1_000_000 + off * 60) // 3600) % 24
            out["transaction_id"].append(tid)
            out["high_amount"].append(amount > p.high_amount_threshold)
            out["high_frequency"].append(len(q) >= p.high_frequency_count)
            out["unusual_hour"].append(start <= hour < end if start <= end
                                       else hour >= start or hour < end)
            out["geo_mismatch"].append(geo)
        return pl.DataFrame(out).with_columns(pl.any_horizontal(*RULE_NAMES).alias(FLAGGED))


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float, r: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def timed(engine, batches: list[pl.DataFrame]) -> tuple[float, pl.DataFrame]:
    t0 = time.perf_counter()
    outs = [engine.process(b) for b in batches]
    seconds = time.perf_counter() - t0
    cols = ["transaction_id", *RULE_NAMES, FLAGGED]
    return seconds, pl.concat([o.select(cols) for o in outs]).sort("transaction_id")


def main() -> int:
    parser = ArgumentParser(prog="python -m bench.bench_engine",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_count_arg, default=400_000)
    parser.add_argument("--users", type=positive_count_arg, default=50_000)
    parser.add_argument("--batch", type=positive_count_arg, nargs="+",
                        default=[500, 2_000, 20_000, 100_000])
    parser.add_argument("--state-users", type=int, default=500_000,
                        help="users in the large-state run (0 skips it)")
    args = parser.parse_args()
    df = random_events(args.events, n_users=args.users, seed=1, span_s=3600)
    runs = []
    for size in args.batch:
        batches = [df.slice(i, size) for i in range(0, df.height, size)]
        vec_s, vec = timed(RuleEngine(), batches)
        loop_s, loop = timed(LoopEngine(), batches)
        assert vec.equals(loop), "vectorised and loop engines disagree"
        runs.append({"batch": size, "vectorised_eps": df.height / vec_s,
                     "loop_eps": df.height / loop_s, "ratio": loop_s / vec_s})
        print(f"batch {size:>7,}: vectorised {df.height / vec_s:>10,.0f} ev/s, "
              f"loop {df.height / loop_s:>9,.0f} ev/s, ratio {loop_s / vec_s:.1f}x",
              file=sys.stderr)
    big = large_state_runs(args.state_users)
    write_results(args, runs, df, big)
    return 0


def large_state_runs(users: int) -> list[dict]:
    """Small batches once the state holds ``users`` users (both engines warmed the same way)."""
    if users <= 0:
        return []
    df = random_events(users + users // 5, n_users=users, seed=2, span_s=3600)
    warm, rest = df.head(users), df.slice(users)
    out = []
    for size in (500, 5_000):
        vec, loop = RuleEngine(), LoopEngine()
        vec.warm_up(warm)
        loop.process(warm)
        batches = [rest.slice(i, size) for i in range(0, min(rest.height, 40 * size), size)]
        n = sum(b.height for b in batches)
        vec_s, a = timed(vec, batches)
        loop_s, b = timed(loop, batches)
        assert a.equals(b), "vectorised and loop engines disagree (large state)"
        out.append({"batch": size, "state_rows": vec.metrics().state_rows,
                    "vectorised_eps": n / vec_s, "loop_eps": n / loop_s, "ratio": loop_s / vec_s})
        print(f"large state, batch {size:>6,}: vectorised {n / vec_s:>10,.0f} ev/s, "
              f"loop {n / loop_s:>9,.0f} ev/s", file=sys.stderr)
    return out


def write_results(args, runs: list[dict], df: pl.DataFrame, big: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    flags = {c: int(v) for c, v in RuleEngine().process(df).select(
        [*RULE_NAMES, FLAGGED]).sum().row(0, named=True).items()}
    meta = {"events": args.events, "users": args.users, "python": platform.python_version(),
            "polars": pl.__version__, "cpus": __import__("os").cpu_count(), "flags": flags}
    (RESULTS / "engine.json").write_text(
        json.dumps({"meta": meta, "runs": runs, "large_state": big}, indent=2))
    lines = [
        "# Rule engine throughput", "",
        f"`.venv/bin/python -m bench.bench_engine` — {args.events:,} generated events, "
        f"{args.users:,} users, one hour of event time with many ties and bursts "
        f"(flags per rule: {flags}). Same process, same micro-batches; decisions checked equal.",
        "The machine (2 cores) is shared with other work while this runs (load average "
        f"{__import__('os').getloadavg()[0]:.1f} when written): absolute figures are noisy, "
        "the ratio is the figure to compare.", "",
        "| micro-batch | vectorised (events/s) | per-event loop (events/s) | speed-up |",
        "|---:|---:|---:|---:|",
        *[f"| {r['batch']:,} | {r['vectorised_eps']:,.0f} | {r['loop_eps']:,.0f} | "
          f"{r['ratio']:.1f}x |" for r in runs],
    ]
    if big:
        lines += [
            "", f"Large state: both engines first take {args.state_users:,} events of "
            f"{args.state_users:,} users, then small batches (state rows: "
            f"{big[0]['state_rows']:,}).", "",
            "| micro-batch | vectorised (events/s) | per-event loop (events/s) | speed-up |",
            "|---:|---:|---:|---:|",
            *[f"| {r['batch']:,} | {r['vectorised_eps']:,.0f} | {r['loop_eps']:,.0f} | "
              f"{r['ratio']:.1f}x |" for r in big],
        ]
    (RESULTS / "engine.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
