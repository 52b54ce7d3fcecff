"""Consumer throughput with one shadow rule set vs without, same run, same topic (goal ≥ 70 %).

Pre-produces N simulator events (default 200k) to a fresh 4-partition topic, then runs the
consumer CLI (``python -m streaming.consume --rules-topic …``, flags to the local SQLite store,
lake on local disk) over all of them from a fresh group, alternating ``without`` / ``with``
(``--rounds`` pairs, ABBA order so a drifting machine load hits both alike):

- without: a control topic with only the active set (``rules/default.toml``);
- with: the same active set plus a shadow set (default: the default set with other
  thresholds; ``--shadow-rules`` for another file, e.g. the 13-rule ``rules/example.toml``).

Rates are the consumer's own (its summary line: first poll → last commit); CPU seconds are the
consumer process's user + system time (its own work: the ratio of CPU-seconds is the cost of the
shadow set when the machine is too loaded for rates to show it). Results →
bench/results/shadow.md (+ .json); with ``--shadow-rules F``: shadow_<F's stem>.md.

    .venv/bin/python -m bench.bench_shadow [--events 200000] [--rounds 2] [--shadow-rules F]
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.bench_stream import consume_cmd, events, preproduce
from fraudlake import services
from fraudlake.cli import ArgumentParser, count_arg
from rules.model import load_rule_set, rule_set_from_cli
from streaming import rules_control as rc

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
SHADOW_OVERRIDES = ["high_amount.threshold=500", "high_frequency.count=4",
                    "geo_mismatch.speed_kmh=700"]


def run_consumer(bootstrap: str, topic: str, control: str, n: int) -> dict:
    """The consumer CLI over all ``n`` events from a fresh group; own rate and CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LOCAL_FLAGS_PATH": str(Path(tmp) / "flags.sqlite")}
        group = f"shadow-bench-{uuid.uuid4().hex[:8]}"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(consume_cmd(bootstrap, topic, Path(tmp) / "lake", None, group,
                                          "--max-messages", str(n), "--timeout", "30",
                                          "--metrics-interval", "30", "--rules-topic", control),
                              capture_output=True, text=True, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"consumer failed: {proc.stderr[-2000:]}")
    summary = proc.stderr.strip().splitlines()[-1]
    own = re.search(r" in ([0-9.]+)s;", summary)
    assert own, summary
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"own_s": float(own[1]), "own_rate": n / float(own[1]), "cpu_s": cpu,
            "summary": summary}


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m bench.bench_shadow", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=count_arg, default=200_000, help="events per run")
    p.add_argument("--rounds", type=count_arg, default=2, help="pairs of runs (ABBA order)")
    p.add_argument("--shadow-rules", help="shadow rule set file (default: rules/default.toml "
                                          f"with {', '.join(SHADOW_OVERRIDES)})")
    args = p.parse_args(argv)
    active = load_rule_set()
    shadow = (rule_set_from_cli(args.shadow_rules, []) if args.shadow_rules
              else active.with_overrides(SHADOW_OVERRIDES))
    bootstrap = services.up(services.kafka_server()).server.address
    data, frames = events(args.events)
    pp = preproduce(bootstrap, frames)
    del frames
    plain, shadowed = f"{pp['topic']}.rules-plain", f"{pp['topic']}.rules-shadow"
    rc.publish(bootstrap, plain, active, "active")
    rc.publish(bootstrap, shadowed, active, "active")
    rc.publish(bootstrap, shadowed, shadow, "shadow")
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    order = ["without", "with", "with", "without"] * ((args.rounds + 1) // 2)
    for kind in order[:2 * args.rounds]:
        res = run_consumer(bootstrap, pp["topic"], plain if kind == "without" else shadowed,
                           args.events)
        runs[kind].append(res)
        print(f"{kind:7} shadow: {res['own_rate']:,.0f} ev/s, {res['cpu_s']:.1f} CPU-s",
              file=sys.stderr)
    write_results({
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "data": data,
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "events": args.events,
        "command": "python -m bench.bench_shadow " + " ".join(argv or sys.argv[1:]),
        "active": active.id, "shadow": shadow.id, "shadow_rules": len(shadow.rules),
        "runs": runs}, "shadow" if not args.shadow_rules else
        f"shadow_{Path(args.shadow_rules).stem}")
    return 0


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def write_results(res: dict, name: str = "shadow") -> None:
    runs = res["runs"]
    without = _mean([r["own_rate"] for r in runs["without"]])
    with_ = _mean([r["own_rate"] for r in runs["with"]])
    cpu_without = _mean([r["cpu_s"] for r in runs["without"]])
    cpu_with = _mean([r["cpu_s"] for r in runs["with"]])
    res["ratio"] = with_ / without
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2))
    rows = "\n".join(f"| {kind} | {r['own_rate']:,.0f} | {r['cpu_s']:.1f} |"
                     for kind in ("without", "with") for r in runs[kind])
    md = f"""# Consumer throughput with a shadow rule set (python -m bench.bench_shadow)

Run {res["when"]} on {os.cpu_count()} cores shared with the broker and other work (load
average {res["load"]}): absolute figures are noisy, the ratio (same run, same topic, ABBA
order) is the figure. Data: {res["data"]}. Command: `{res["command"]}`
Active set {res["active"]}; shadow set {res["shadow"]} ({res["shadow_rules"]} rules). Flags to
the local SQLite store; lake on local disk.

| measure | value | goal |
|---|---|---|
| own rate without a shadow set (events/s, mean) | {without:,.0f} | |
| own rate with one shadow set (events/s, mean) | {with_:,.0f} | |
| with / without | {res["ratio"]:.0%} | ≥ 70 % |
| consumer CPU-seconds per run, without / with | {cpu_without:.1f} / {cpu_with:.1f} | |
| CPU-seconds without / with (the throughput ratio on CPU) | {cpu_without / cpu_with:.0%} | |

| run | own rate (events/s) | CPU-s |
|---|---|---|
{rows}
"""
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    raise SystemExit(main())
