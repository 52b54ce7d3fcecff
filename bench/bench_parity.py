"""Live ≡ backtest ≡ replay on a rich rule set over N events (default 1M) through the real broker.

1. N simulator events (``batch.sim``, 24 h, realistic per-card rates) are produced to a fresh
   4-partition topic on the real Kafka broker.
2. ``python -m streaming.consume --rules R`` decides them live into a fresh lake (flags to a
   local SQLite store: FerretDB's write rate is not what is compared here).
3. ``python -m streaming.replay --rules R`` and ``python -m batch.backtest --rules R`` re-decide
   the lake the consumer wrote.
4. Per transaction: the rules that fired, the score and flagged must be identical in all three;
   the count of transactions decided differently is reported (target 0).

    .venv/bin/python -m bench.bench_parity [--events 1e6] [--rules rules/example.toml]

Writes bench/results/parity.md (+ .json).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from bench.bench_stream import consume_cmd, events, preproduce
from fraudlake import services
from fraudlake.cli import ArgumentParser, count_arg
from rules.model import load_rule_set
from tests.streaming._parity import differences, from_flags, from_lake, run_backtest, run_replay

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m bench.bench_parity", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=count_arg, default=1_000_000)
    p.add_argument("--rules", type=Path, default=ROOT / "rules" / "example.toml")
    args = p.parse_args(argv)
    rule_set = load_rule_set(args.rules)
    bootstrap = services.up(services.kafka_server()).server.address
    data, frames = events(args.events)
    pp = preproduce(bootstrap, frames)
    del frames
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        env = {**os.environ, "LOCAL_FLAGS_PATH": str(Path(tmp) / "flags.sqlite")}
        t = time.monotonic()
        proc = subprocess.run(consume_cmd(bootstrap, pp["topic"], lake, None,
                                          f"parity-{uuid.uuid4().hex[:6]}", "--max-messages",
                                          str(args.events), "--timeout", "30", "--rules",
                                          str(args.rules)),
                              capture_output=True, text=True, env=env, cwd=ROOT)
        timings["consume_s"] = time.monotonic() - t
        if proc.returncode != 0:
            raise SystemExit(f"consumer failed: {proc.stderr[-2000:]}")
        live = from_lake(lake / "transactions")
        t = time.monotonic()
        run_replay(lake / "transactions", args.rules, Path(tmp) / "replay.parquet")
        timings["replay_s"] = time.monotonic() - t
        t = time.monotonic()
        run_backtest(lake / "transactions", args.rules, Path(tmp) / "backtest.parquet")
        timings["backtest_s"] = time.monotonic() - t
        replay = from_flags(pl.read_parquet(Path(tmp) / "replay.parquet"), rule_set.rule_ids)
        backtest = from_flags(pl.read_parquet(Path(tmp) / "backtest.parquet"),
                              rule_set.rule_ids)
    fired = live.explode("rules_fired")["rules_fired"].drop_nulls().value_counts(sort=True)
    res = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "data": data,
           "rule_set": rule_set.id, "events": args.events,
           "rules": str(args.rules.resolve().relative_to(ROOT)
                        if args.rules.resolve().is_relative_to(ROOT) else args.rules),
           "live_rows": live.height, "flagged": int(live["flagged"].sum()),
           "live_vs_replay": differences(live, replay),
           "live_vs_backtest": differences(live, backtest),
           "replay_vs_backtest": differences(replay, backtest),
           "fired": dict(fired.iter_rows()), "consumer_summary":
               proc.stderr.strip().splitlines()[-1], **timings,
           "load": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    write(res)
    return 0 if res["live_vs_replay"] == res["live_vs_backtest"] == 0 else 1


def write(res: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parity.json").write_text(json.dumps(res, indent=2))
    fired = ", ".join(f"{k} {v:,}" for k, v in res["fired"].items())
    md = f"""# Live ≡ backtest ≡ replay (bench/bench_parity.py)

Run {res["when"]} (load {res["load"]}). Data: {res["data"]}; {res["events"]:,} events through
the real Kafka broker (4 partitions). Rule set `{res["rules"]}` = `{res["rule_set"]}`.

| comparison (per transaction: rules fired, score, flagged) | transactions differing |
|---|---:|
| live consumer (lake) vs `streaming.replay` | {res["live_vs_replay"]:,} |
| live consumer (lake) vs `batch.backtest` | {res["live_vs_backtest"]:,} |
| replay vs backtest | {res["replay_vs_backtest"]:,} |

Lake rows {res["live_rows"]:,}, flagged {res["flagged"]:,}. Rules fired: {fired}.
Times: consume {res["consume_s"]:.1f} s (wall, with start-up), replay {res["replay_s"]:.1f} s,
backtest {res["backtest_s"]:.1f} s. Consumer: `{res["consumer_summary"]}`.
"""
    (RESULTS / "parity.md").write_text(md)
    print(md)


if __name__ == "__main__":
    raise SystemExit(main())
