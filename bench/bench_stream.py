"""Live pipeline benchmark on the real Kafka broker and FerretDB (both on this machine).

1. Throughput: pre-produce N events (default 1M) to a fresh 4-partition topic, then time
   ``python -m streaming.consume`` (both sinks: lake + MongoDB flags, DLQ) until all N are in.
   Events come from the simulator spread over a day (per-card rates as in life).
   Once with ``rules/default.toml`` and once with the rich ``rules/example.toml`` (every kind;
   ``--rich-rules`` to pick another file).
2. Raw consume rate, same run, same topic: confluent-kafka ``consume()`` only (no decode, no
   rules, no sinks) from a fresh group; the pipeline's share of it = the consumer's own rate
   (its summary line: first poll → last commit, start-up excluded) / the raw rate.
   Baseline, same run, same topic: a seed-style loop — ``poll()`` one message, ``json.loads``,
   ``insert_one`` into MongoDB — for a fixed time budget; ratio = pipeline / baseline.
3. Latency at a fixed rate (default 5k events/s): the consumer runs, the bench produces paced
   events; the consumer measures, per event, Kafka CreateTime → batch in both sinks and
   committed (≥ flag visible). p50/p99 → bench/results/stream.md (+ .json).

    .venv/bin/python -m bench.bench_stream [--events 1e6] [--rate 5000] [--seconds 30]
        [--skip-latency] [--baseline-tree DIR]

``--baseline-tree DIR`` (e.g. ``git archive main | tar -x -C DIR``): that tree's consumer also
runs the rich set with SQLite flags on the same topic, for a ratio measured in the same run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from confluent_kafka import Consumer, Producer
from pymongo import MongoClient

from fraudlake import services
from fraudlake.cli import ArgumentParser, count_arg
from streaming.kafka_io import ensure_topics, producer_config
from streaming.produce import produce

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"


def events(n: int, seed: int = 7, users: int = 50_000) -> tuple[str, list[pl.DataFrame]]:
    """``n`` live-simulator events ending an hour ago, at the world's realistic per-card
    density, so the rules flag a realistic share of them."""
    from streaming.produce import describe_stream, simulated_events

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    frames = list(simulated_events(seed, users, n, end))
    return describe_stream(seed, users, n, end), frames


def consume_cmd(bootstrap: str, topic: str, lake: Path, mongo: str | None, group: str,
                *extra: str) -> list[str]:
    """The consumer CLI; without ``mongo`` the flags go to the local SQLite store."""
    return [sys.executable, "-m", "streaming.consume", "--bootstrap", bootstrap, "--topic", topic,
            "--dlq-topic", f"{topic}.dlq", "--group", group, "--lake", str(lake),
            *(["--mongo-uri", mongo] if mongo else []), *extra]


def preproduce(bootstrap: str, frames: list[pl.DataFrame]) -> dict:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], 4)
    t = time.monotonic()
    stats = produce(Producer(producer_config(bootstrap)), topic, frames, progress=False)
    secs = time.monotonic() - t
    return {"topic": topic, "events": stats.events, "produce_s": secs,
            "produce_rate": stats.events / secs}


def throughput(bootstrap: str, topic: str, n: int, mongo: str | None, db: str,
               rules: Path | None = None, tree: Path | None = None) -> dict:
    """Time the consumer CLI over ``n`` pre-produced events (fresh group, fresh lake); with
    ``tree``, the consumer of that source tree (e.g. main's, for a baseline in the same run)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MONGO_DB": db, "MONGO_COLLECTION": f"flags_{uuid.uuid4().hex[:6]}",
               "LOCAL_FLAGS_PATH": str(Path(tmp) / "flags.sqlite"),
               **({"PYTHONPATH": str(tree)} if tree else {})}
        group = f"bench-{'mongo' if mongo else 'sqlite'}-{uuid.uuid4().hex[:6]}-{topic}"
        t, cpu0 = time.monotonic(), _children_cpu()
        proc = subprocess.run(consume_cmd(bootstrap, topic, Path(tmp) / "lake", mongo, group,
                                          "--max-messages", str(n), "--timeout", "30",
                                          "--metrics-interval", "10",
                                          *(["--rules", str(rules)] if rules else [])),
                              capture_output=True, text=True, env=env, cwd=tree)
        consume_s, cpu_s = time.monotonic() - t, _children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"consumer failed: {proc.stderr[-2000:]}")
    summary = proc.stderr.strip().splitlines()[-1]
    own = re.search(r" in ([0-9.]+)s;", summary)
    own_s = float(own[1]) if own else consume_s
    rule_set = re.search(r"rule set (\S+)", proc.stderr)
    return {"events": n, "consume_s": consume_s, "consume_rate": n / consume_s,
            "own_s": own_s, "own_rate": n / own_s, "consumer_summary": summary,
            "cpu_s": cpu_s, "cpu_us_per_event": cpu_s / n * 1e6,
            "rule_set": rule_set[1] if rule_set else "?"}


def raw_consume(bootstrap: str, topic: str, n: int) -> dict:
    """confluent-kafka ``consume()`` of ``n`` messages from a fresh group, nothing else: the
    ceiling a Python consumer of this topic can reach here. Timed first message → n-th."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    done, started, deadline = 0, None, time.monotonic() + 300
    cpu0 = time.process_time()
    try:
        while done < n and time.monotonic() < deadline:
            msgs = consumer.consume(num_messages=20_000, timeout=0.5)
            if msgs and started is None:
                started = time.monotonic()
            done += sum(1 for m in msgs if m.error() is None)
        secs = time.monotonic() - (started or time.monotonic())
        cpu_s = time.process_time() - cpu0  # this process: the poll loop + librdkafka threads
    finally:
        consumer.close()
    return {"messages": done, "seconds": secs, "rate": done / secs if secs else 0.0,
            "cpu_s": cpu_s, "cpu_us_per_event": cpu_s / max(done, 1) * 1e6}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rich_rules_file(spec: str | None, folder: Path) -> Path:
    """``--rich-rules``, else the packaged rules/example.toml, else the tests' rich set."""
    if spec:
        return Path(spec)
    packaged = ROOT / "rules" / "example.toml"
    if packaged.exists():
        return packaged
    from tests.streaming._rich import rich_rule_set

    rich_rule_set(folder)
    return folder / "rich.toml"


def baseline(bootstrap: str, mongo: str, db: str, topic: str, budget_s: float) -> dict:
    """Seed style: one poll, one json.loads, one insert_one per message."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"seed-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    coll = MongoClient(mongo)[db]["seed_events"]
    done, t0, started = 0, time.monotonic(), None
    try:
        while time.monotonic() - t0 < budget_s + 30:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            started = started or time.monotonic()
            event = json.loads(msg.value())
            event["flagged"] = float(event["amount"]) > 1000
            coll.insert_one(event)
            done += 1
            if time.monotonic() - started >= budget_s:
                break
    finally:
        consumer.close()
    secs = time.monotonic() - (started or t0)
    return {"events": done, "seconds": secs, "rate": done / secs}


def latency(bootstrap: str, mongo: str, db: str, frames: list[pl.DataFrame], rate: float,
            seconds: float) -> dict:
    """Paced produce while the consumer runs; the consumer reports produce→committed latency
    (Kafka CreateTime → both sinks hold the batch and its offsets are committed)."""
    topic = f"lat-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], 4)
    with tempfile.TemporaryDirectory() as lake:
        env = {**os.environ, "MONGO_DB": db, "MONGO_COLLECTION": "latency_flags"}
        proc = subprocess.Popen(consume_cmd(bootstrap, topic, Path(lake), mongo, f"g-{topic}",
                                            "--timeout", "5"),
                                stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(4)  # let it join the group
        stats = produce(Producer(producer_config(bootstrap)), topic, frames, rate=rate,
                        count=int(rate * seconds), progress=False)
        _out, err = proc.communicate(timeout=300)
    summary = err.strip().splitlines()[-1]
    m = re.search(r"p50=([0-9.]+)ms p99=([0-9.]+)ms", summary)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"latency consumer failed: {err[-2000:]}")
    flags = MongoClient(mongo)[db]["latency_flags"].estimated_document_count()
    return {"rate": rate, "events": stats.events, "achieved_rate": stats.rate, "flags": flags,
            "p50_ms": float(m[1]), "p99_ms": float(m[2]), "consumer_summary": summary}


def _tree_rows(ours: dict, other: dict | None) -> str:
    """Table rows for the rich set run by another source tree (``--baseline-tree``)."""
    if not other:
        return ""
    return (f"| rich set, SQLite flags, consumer of `{other['tree']}` (baseline, same run), own "
            f"rate (events/s) / CPU µs per event | {other['own_rate']:,.0f} / "
            f"{other['cpu_us_per_event']:.1f} | |\n"
            f"| ratio rich set, SQLite flags: this tree / baseline tree (own rate; CPU µs per "
            f"event) | {ours['own_rate'] / other['own_rate']:.2f}× ; "
            f"{other['cpu_us_per_event'] / ours['cpu_us_per_event']:.2f}× less | |\n")


def write_results(res: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream.json").write_text(json.dumps(res, indent=2, default=str))
    pp, t, ts, b, lt = (res["produce"], res["throughput"], res["throughput_sqlite"],
                        res["baseline"], res["latency"])
    tr, trs, raw = res["throughput_rich"], res["throughput_rich_sqlite"], res["raw"]
    ratio = t["consume_rate"] / b["rate"]
    share, share_rich = t["own_rate"] / raw["rate"], tr["own_rate"] / raw["rate"]
    share_sq, share_rich_sq = ts["own_rate"] / raw["rate"], trs["own_rate"] / raw["rate"]
    rich_sq, shares_sq = f"{trs['own_rate']:,.0f}", f"{share_sq:.0%} / {share_rich_sq:.0%}"
    cpu_sq = " / ".join(f"{x['cpu_us_per_event']:.1f}" for x in (raw, ts, trs))
    cpu_fe = " / ".join(f"{x['cpu_us_per_event']:.1f}" for x in (t, tr))
    default_row = (f"consume, `rules/default.toml` ({t['rule_set']}), lake + FerretDB flags + "
                   "DLQ (events/s, wall incl. start-up)")
    rich_row = f"consume, rich set `{tr['rules']}` ({tr['rule_set']}), own rate (events/s)"
    tree_rows = _tree_rows(trs, res.get("throughput_rich_sqlite_baseline_tree"))
    md = f"""# Live pipeline benchmark (bench/bench_stream.py)

Run {res["when"]} on {os.cpu_count()} cores shared with the Kafka broker, FerretDB and the other
helpers' work (load average {res["load"]}): figures are noisy. Data: {res["data"]}.
Command: `{res["command"]}`

| measure | value | target |
|---|---|---|
| {default_row} | {t["consume_rate"]:,.0f} | ≥ 50,000 |
| same, the consumer's own rate (first poll → last commit) | {t["own_rate"]:,.0f} | |
| {rich_row} | {tr["own_rate"]:,.0f} | ≥ 100,000 |
| raw consume, confluent-kafka `consume()` only, same topic (messages/s) | {raw["rate"]:,.0f} | |
| pipeline share of the raw rate, default set, FerretDB flags | {share:.0%} | ≥ 50 % |
| pipeline share of the raw rate, rich set, FerretDB flags | {share_rich:.0%} | |
| default set, flags to the local SQLite store, own rate (events/s) | {ts["own_rate"]:,.0f} | |
| rich set, flags to the local SQLite store, own rate (events/s) | {rich_sq} | ≥ 100,000 |
| pipeline share of the raw rate, SQLite flags: default set / rich set | {shares_sq} | ≥ 50 % |
| CPU µs per event (process, start-up incl.): raw / default / rich, SQLite flags | {cpu_sq} | |
| same, FerretDB flags: default set / rich set | {cpu_fe} | |
{tree_rows}| seed-style baseline (poll + json.loads + insert_one, events/s) | {b["rate"]:,.0f} | |
| ratio pipeline (FerretDB) / baseline | {ratio:,.1f}× | ≥ 10× |
| produce→flag-visible latency p50 at {lt["rate"]:,.0f} ev/s (ms) | {lt["p50_ms"]:,.0f} | |
| produce→flag-visible latency p99 at {lt["rate"]:,.0f} ev/s (ms) | {lt["p99_ms"]:,.0f} | ≤ 500 |

Throughput: {pp["events"]:,} events pre-produced to 4 partitions ({pp["produce_rate"]:,.0f} ev/s),
consumed in {t["consume_s"]:.1f} s wall including consumer start-up.
Consumer's summary: `{t["consumer_summary"]}`.
Rich set: `{tr["consumer_summary"]}`.
Raw consume: {raw["messages"]:,} messages in {raw["seconds"]:.1f} s.
With the SQLite flag store: `{ts["consumer_summary"]}`; rich set:
`{trs["consumer_summary"]}`.
Baseline: {b["events"]:,} events in {b["seconds"]:.1f} s on the same topic.
Latency: {lt["events"]:,} events paced at {lt["rate"]:,.0f}/s (achieved
{lt["achieved_rate"]:,.0f}/s), {lt["flags"]:,} flags in MongoDB. Measured by the consumer for
every event: Kafka CreateTime (set when the producer is handed the event) → its batch is in
the lake and its flags are acknowledged by MongoDB (readable from then on).
Consumer's summary: `{lt["consumer_summary"]}`.
"""
    (RESULTS / "stream.md").write_text(md)
    print(md)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m bench.bench_stream", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=count_arg, default=1_000_000,
                   help="events for the throughput run")
    p.add_argument("--rate", type=float, default=5000.0, help="latency run rate (events/s)")
    p.add_argument("--seconds", type=float, default=30.0, help="latency run length")
    p.add_argument("--baseline-seconds", type=float, default=20.0, help="baseline time budget")
    p.add_argument("--rich-rules", help="rule set for the rich run (default rules/example.toml)")
    p.add_argument("--skip-latency", action="store_true", help="no latency run")
    p.add_argument("--baseline-tree", type=Path,
                   help="another source tree (e.g. `git archive main` unpacked): its consumer "
                        "also runs the rich set with SQLite flags, for a ratio in the same run")
    args = p.parse_args(argv)
    rules_dir = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    rich = rich_rules_file(args.rich_rules, rules_dir)
    bootstrap = services.up(services.kafka_server()).server.address
    mongo = services.up(services.mongo_server()).server.address
    db = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        data, frames = events(args.events)
        pp = preproduce(bootstrap, frames)
        del frames
        raw = raw_consume(bootstrap, pp["topic"], args.events)
        print(f"raw consume: {raw['rate']:,.0f} msg/s", file=sys.stderr)
        tp = throughput(bootstrap, pp["topic"], args.events, mongo, db)
        print(f"throughput (FerretDB flags): {tp['consume_rate']:,.0f} ev/s, own "
              f"{tp['own_rate']:,.0f}", file=sys.stderr)
        tr = {**throughput(bootstrap, pp["topic"], args.events, mongo, db, rich),
              "rules": str(rich.relative_to(ROOT) if rich.is_relative_to(ROOT) else rich.name)}
        print(f"throughput rich (FerretDB flags): own {tr['own_rate']:,.0f} ev/s",
              file=sys.stderr)
        tps = throughput(bootstrap, pp["topic"], args.events, None, db)
        print(f"throughput (SQLite flags): {tps['consume_rate']:,.0f} ev/s", file=sys.stderr)
        trs = throughput(bootstrap, pp["topic"], args.events, None, db, rich)
        print(f"throughput rich (SQLite flags): own {trs['own_rate']:,.0f} ev/s",
              file=sys.stderr)
        trb = None
        if args.baseline_tree:
            trb = {**throughput(bootstrap, pp["topic"], args.events, None, db, rich.resolve(),
                                tree=args.baseline_tree.resolve()),
                   "tree": str(args.baseline_tree)}
            print(f"throughput rich (SQLite flags), {args.baseline_tree}: own "
                  f"{trb['own_rate']:,.0f} ev/s", file=sys.stderr)
        base = baseline(bootstrap, mongo, db, pp["topic"], args.baseline_seconds)
        print(f"baseline: {base['rate']:,.0f} ev/s", file=sys.stderr)
        if args.skip_latency:
            lt = {"rate": args.rate, "events": 0, "achieved_rate": 0.0, "flags": 0,
                  "p50_ms": float("nan"), "p99_ms": float("nan"), "consumer_summary": "skipped"}
        else:
            lat_frames = events(int(args.rate * args.seconds) + 1, seed=8)[1]
            lt = latency(bootstrap, mongo, db, lat_frames, args.rate, args.seconds)
    finally:
        MongoClient(mongo).drop_database(db)
    write_results({"when": datetime.now(UTC).isoformat(timespec="seconds"), "data": data,
                   "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "produce": pp,
                   "throughput_sqlite": tps,
                   "command": "python -m bench.bench_stream " + " ".join(argv or sys.argv[1:]),
                   "throughput": tp, "throughput_rich": tr, "throughput_rich_sqlite": trs,
                   "throughput_rich_sqlite_baseline_tree": trb,
                   "raw": raw, "baseline": base,
                   "latency": lt})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
