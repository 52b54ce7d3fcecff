"""Fault benchmark: the live consumer under crashes, restarts and rebalances, at size.

    .venv/bin/python -m bench.faults [--events 200000] [--kills 10] [--only kill9,sigterm,...]

One topic (4 partitions) is filled once with ``--events`` simulator events (``simulator``, a
realistic flag rate). Every scenario then reads that same topic with its own consumer group,
lake folder and MongoDB collection, runs the consumer CLI (``python -m streaming.consume``,
FerretDB flags) as real processes and hurts it. Batch size 5000 by default, not the CLI's
20000, so that a 200k-event run has enough batches for faults to land between commits. (A
replay no longer re-sends flags as upserts: ~100 upserts of existing documents in one
``bulk_write`` used to hang FerretDB 1.24 for minutes; existing ids are now left as they are.)
Scenarios:

- ``uninterrupted`` (baseline, same run): one consumer reads everything. Its lake rule columns
  are the expected decisions; its wall time is the yardstick for the others' ``slowdown``.
- ``kill9 xN``: kill -9 the consumer N times at random moments (seeded; 0.3–1.5 s after it
  processes again), restarting it at once; then one last run drains the topic. Run twice: with
  the CLI as it is (dynamic group membership: a restart waits until the killed member's
  session, 10 s, has timed out) and with static membership (``group.instance.id``).
- ``sigterm restart xN``: SIGTERM (drain, flush, commit, leave), restart at once, N times.
- ``rebalance/scale-out``: a second consumer joins mid-run (partitions move to it), then the
  first is stopped with SIGTERM (its partitions move back); the survivor drains the topic.
- ``broker restart``, ``mongo outage`` (``bench/fault_outages.py``) and ``poison``
  (``bench/fault_poison.py``) come from their own modules when present, same row format.

Counting (``tests/reliability/_faults.py``), by ``transaction_id``: ``lost`` = produced ids
missing from the lake + expected flag ids missing from MongoDB; ``duplicated`` = lake rows
beyond one per id + MongoDB flags that should not exist (``_id`` is unique, so a duplicate flag
can only show up as an unexpected id). Rule columns/lists that differ from the uninterrupted
run are counted in the notes (``decisions differing``).

``recovery_s``: seconds from the fault (the kill or SIGTERM; the consumer is restarted at
once) until it processes again: its first commit of new offsets (kill9, sigterm; the next
fault comes 0.3–1.5 s after that), or, for the scale-out, until every partition that still
had work has committed new offsets (the survivor has taken over). Mean over a scenario's
faults (max in the notes). Figures are noisy: 2 cores shared with Kafka, FerretDB and
other work.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from confluent_kafka import Producer
from pymongo import MongoClient

from fraudlake import services
from fraudlake.cli import ArgumentParser, count_arg, run
from streaming.kafka_io import ensure_topics, producer_config
from streaming.produce import produce
from tests.reliability._faults import (
    Offsets,
    audit,
    consume_cmd,
    finish,
    kill9,
    lake_rows,
    mongo_flags,
    start,
    wait_resumed,
)

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
PARTITIONS = 4
KEYS = ("scenario", "events", "lost", "duplicated", "recovery_s", "notes")
SCENARIOS = ("kill9", "kill9-static", "sigterm", "scale-out", "broker", "mongo", "poison")


@dataclass(frozen=True)
class Ctx:
    bootstrap: str
    mongo: str
    db: str
    topic: str
    events: int
    workdir: Path
    expected: pl.DataFrame  # transaction_id + rule columns of the uninterrupted run
    baseline_s: float
    batch_size: int
    rng: random.Random


def simulate(n: int, seed: int = 7, users: int = 50_000) -> list:
    from streaming.produce import simulated_events

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return list(simulated_events(seed, users, n, end))


class Scenario:
    """One scenario's consumer processes, logs and offsets."""

    def __init__(self, ctx: Ctx, name: str, static: bool = False) -> None:
        self.ctx, self.name = ctx, name
        self.group = f"{name}-{uuid.uuid4().hex[:6]}"
        self.dir = ctx.workdir / name
        self.lake = self.dir / "lake"
        self.offsets = Offsets(ctx.bootstrap, self.group, ctx.topic, PARTITIONS)
        self.runs = 0
        self.static = static
        self.t0 = time.monotonic()

    def cmd(self, *extra: str) -> list[str]:
        c = consume_cmd(self.ctx.bootstrap, self.ctx.topic, self.lake, self.ctx.mongo,
                        self.group, batch_size=self.ctx.batch_size,
                        instance_id=self.group if self.static else None)
        return [*c, *extra]

    def start(self, *extra: str):
        self.runs += 1
        log = self.dir / f"run-{self.runs}.log"
        return start(self.cmd(*extra), self.ctx.db, log, self.group), log

    def drain(self) -> None:
        """One last run until the topic is idle for 5 s."""
        proc, log = self.start("--timeout", "5")
        finish(proc, log, timeout=900)

    def row(self, scenario: str, recoveries: list[float], notes: str = "") -> dict:
        coll = MongoClient(self.ctx.mongo, tz_aware=True)[self.ctx.db][self.group]
        result = audit(self.ctx.expected, lake_rows(self.lake), mongo_flags(coll))
        self.offsets.close()
        wall = time.monotonic() - self.t0
        rec = sum(recoveries) / len(recoveries) if recoveries else None
        extra = (f"; recovery max {max(recoveries):.1f} s over {len(recoveries)}"
                 if recoveries else "")
        return {"scenario": scenario, "events": self.ctx.events, "lost": result.lost,
                "duplicated": result.duplicated,
                "recovery_s": None if rec is None else round(rec, 1),
                "notes": f"{result.notes()}{extra}; wall {wall:.0f} s "
                         f"({wall / self.ctx.baseline_s:.1f}x uninterrupted){notes}"}


def resumed(s: Scenario, before: dict[int, int], since: float, every: bool = True) -> float:
    took = wait_resumed(s.offsets, before, since, every=every)
    if took is None:
        raise SystemExit(f"{s.name}: consumer did not resume in time; see {s.dir}")
    return took


#: stops the running consumer; returns the committed offsets to resume past and the time to
#: measure the resumption from
Stop = Callable[[subprocess.Popen], tuple[dict[int, int], float]]


def restarts(ctx: Ctx, s: Scenario, times: int, stop: Stop) -> list[float]:
    """Run the consumer; up to ``times`` times, once it has resumed and run a random 0.3–1.5 s,
    ``stop`` it and start it again. The seconds each restart took to resume; at the end a
    SIGTERM and the scenario drained."""
    proc, _log = s.start()
    recoveries: list[float] = []
    before, since = {p: 0 for p in range(PARTITIONS)}, time.monotonic()
    for i in range(times + 1):
        took = resumed(s, before, since, every=False)
        if i:
            recoveries.append(took)
        if i == times or s.offsets.committed() >= ctx.events:
            break
        time.sleep(ctx.rng.uniform(0.3, 1.5))
        before, since = stop(proc)
        proc, _log = s.start()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
    s.drain()
    return recoveries


def kill9_scenario(ctx: Ctx, kills: int, static: bool) -> dict:
    s = Scenario(ctx, "kill9-static" if static else "kill9", static)

    def stop(proc: subprocess.Popen) -> tuple[dict[int, int], float]:
        before = s.offsets.by_partition()
        kill9(proc)
        return before, time.monotonic()

    recoveries = restarts(ctx, s, kills, stop)
    label = f"kill9 x{len(recoveries)}" + (" (static membership)" if static else "")
    return s.row(label, recoveries)


def sigterm_scenario(ctx: Ctx, times: int) -> dict:
    s = Scenario(ctx, "sigterm")
    stops: list[float] = []

    def stop(proc: subprocess.Popen) -> tuple[dict[int, int], float]:
        since = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=300) != 0:
            raise SystemExit(f"sigterm: consumer exited {proc.returncode}; see {s.dir}")
        stops.append(time.monotonic() - since)
        return s.offsets.by_partition(), since

    recoveries = restarts(ctx, s, times, stop)
    notes = (f"; SIGTERM→exit (drain, flush, commit) max {max(stops):.1f} s" if stops else "")
    return s.row(f"sigterm restart x{len(recoveries)}", recoveries, notes)


def scale_out_scenario(ctx: Ctx) -> dict:
    s = Scenario(ctx, "scale-out")
    first, _ = s.start()
    resumed(s, {p: 0 for p in range(PARTITIONS)}, s.t0)
    time.sleep(ctx.rng.uniform(0.3, 1.0))
    joined = time.monotonic()
    second, log2 = s.start()
    took_join = resumed(s, s.offsets.by_partition(), joined)
    time.sleep(ctx.rng.uniform(0.3, 1.0))
    before, since = s.offsets.by_partition(), time.monotonic()
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=300)
    took = resumed(s, before, since)
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=300)
    s.drain()
    notes = (f"; join of the 2nd consumer → all partitions committing again {took_join:.1f} s; "
             f"the 2nd took over {log2.read_text().count('consume: assigned')} partition(s) "
             f"in total")
    return s.row("rebalance/scale-out (join, then SIGTERM one)", [took], notes)


def external(name: str, module: str, function: str, events: int, workdir: Path) -> dict:
    """A row from another helper's module; a 'not available' row when it is missing."""
    try:
        mod = __import__(f"bench.{module}", fromlist=[function])
        fn: Callable[[int, Path], dict] = getattr(mod, function)
    except (ImportError, AttributeError) as exc:
        return {"scenario": name, "events": None, "lost": None, "duplicated": None,
                "recovery_s": None, "notes": f"not available ({exc})"}
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        row = fn(events, workdir)
    except Exception as exc:  # noqa: BLE001 - one scenario failing must not lose the others
        return {"scenario": name, "events": events, "lost": None, "duplicated": None,
                "recovery_s": None, "notes": f"FAILED: {type(exc).__name__}: {exc}"[:300]}
    return {k: row.get(k) for k in KEYS}


def fill_topic(bootstrap: str, n: int) -> tuple[str, float]:
    frames = simulate(n)
    topic = f"faults-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], PARTITIONS)
    t = time.monotonic()
    stats = produce(Producer(producer_config(bootstrap)), topic, frames, progress=False)
    assert stats.events == n and stats.failed == 0
    return topic, time.monotonic() - t


def baseline(bootstrap: str, mongo: str, db: str, topic: str, n: int, workdir: Path,
             batch_size: int) -> tuple[pl.DataFrame, float]:
    """The uninterrupted run: its decisions are the expectation; it must hold n distinct ids."""
    group = f"uninterrupted-{uuid.uuid4().hex[:6]}"
    lake = workdir / "uninterrupted" / "lake"
    t = time.monotonic()
    log = workdir / "uninterrupted" / "run.log"
    finish(start(consume_cmd(bootstrap, topic, lake, mongo, group, batch_size=batch_size,
                             timeout=5), db, log, group), log, timeout=900)
    secs = time.monotonic() - t - 5  # minus the idle stop
    rows = lake_rows(lake)
    if rows.height != n or rows["transaction_id"].n_unique() != n:
        raise SystemExit(f"uninterrupted run: {rows.height} lake rows, expected {n}")
    return rows, secs


def write_results(rows: list[dict], meta: dict) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "faults.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))

    def cell(v: object) -> str:
        text = "–" if v is None else f"{v:,}" if isinstance(v, int) else str(v)
        return text.replace("|", "/")  # a note's own "|" would split the table row

    table = "\n".join(f"| {' | '.join(cell(r[k]) for k in KEYS)} |" for r in rows)
    md = f"""# Fault benchmark (bench/faults.py)

Run {meta["when"]} on {os.cpu_count()} cores shared with the Kafka broker, FerretDB and other
work (load average {meta["load"]}): figures, recovery times above all, are noisy.
Command: `{meta["command"]}`. Data: {meta["events"]:,} `simulator` events in a 4-partition
topic (produced in {meta["produce_s"]:.1f} s); consumer batch size {meta["batch_size"]:,}.
Baseline in the same run: one uninterrupted consumer, {meta["baseline_s"]:.1f} s
({meta["events"] / meta["baseline_s"]:,.0f} events/s); its decisions are the expectation.

lost / duplicated: by transaction_id, lake rows and MongoDB flag ids against the produced set
and the uninterrupted decisions. recovery_s: seconds from the fault until the consumer commits
new offsets again (scale-out: until every partition with work left does), mean over a
scenario's faults. Exact definitions: the docstring of bench/faults.py.

| {' | '.join(KEYS)} |
|{'---|' * len(KEYS)}
{table}
{meta["skipped"]}"""
    (RESULTS / "faults.md").write_text(md)
    return md


def bench(events: int, kills: int, batch_size: int, only: set[str], seed: int,
          workdir: Path | None = None) -> str:
    started = [services.up(services.kafka_server()), services.up(services.mongo_server())]
    try:
        return _bench(started[0].server.address, started[1].server.address, events, kills,
                      batch_size, only, seed, workdir)
    finally:  # leave servers that were already running as they were
        for s in reversed(started):
            if s.started:
                services.down(s.server)


def _bench(kafka: str, mongo: str, events: int, kills: int, batch_size: int, only: set[str],
           seed: int, workdir: Path | None) -> str:
    db = f"faults_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        work = Path(tmp) if workdir is None else workdir
        print(f"faults: producing {events:,} events", file=sys.stderr)
        topic, produce_s = fill_topic(kafka, events)
        expected, base_s = baseline(kafka, mongo, db, topic, events, work, batch_size)
        print(f"faults: uninterrupted run {base_s:.1f} s", file=sys.stderr)
        ctx = Ctx(kafka, mongo, db, topic, events, work, expected, base_s, batch_size,
                  random.Random(seed))
        plan: list[tuple[str, Callable[[], dict]]] = [
            ("kill9", lambda: kill9_scenario(ctx, kills, static=False)),
            ("kill9-static", lambda: kill9_scenario(ctx, kills, static=True)),
            ("sigterm", lambda: sigterm_scenario(ctx, 3)),
            ("scale-out", lambda: scale_out_scenario(ctx)),
            ("broker", lambda: external("broker restart", "fault_outages", "broker_restart",
                                        events, work / "broker")),
            ("mongo", lambda: external("mongo outage", "fault_outages", "mongo_outage",
                                       events, work / "mongo")),
            ("poison", lambda: external("poison", "fault_poison", "poison", events,
                                        work / "poison")),
        ]
        rows = []
        try:
            for name, fn in plan:
                if name in only:
                    print(f"faults: {name} …", file=sys.stderr)
                    rows.append(fn())
                    print(f"faults: {rows[-1]}", file=sys.stderr)
        finally:
            MongoClient(mongo).drop_database(db)
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "command": "python -m bench.faults " + " ".join(sys.argv[1:]),
            "events": events, "produce_s": produce_s, "baseline_s": base_s,
            "batch_size": batch_size,
            "skipped": skipped_note(only)}
    return write_results(rows, meta)


def skipped_note(only: set[str]) -> str:
    left = [s for s in SCENARIOS if s not in only]
    return f"\nNot run this time (--only): {', '.join(left)}.\n" if left else ""


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=count_arg, default=200_000,
                   help="events in the topic (default 200000)")
    p.add_argument("--kills", type=count_arg, default=10,
                   help="kill -9 faults per kill9 scenario (default 10)")
    p.add_argument("--batch-size", type=count_arg, default=5_000,
                   help="consumer --batch-size (default 5000; see the module docstring)")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    p.add_argument("--seed", type=int, default=7, help="seed of the fault moments (default 7)")
    p.add_argument("--workdir", type=Path,
                   help="keep lakes and consumer logs here (default: a temp folder, removed)")
    args = p.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set(SCENARIOS):
        p.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    print(bench(args.events, args.kills, args.batch_size, only, args.seed, args.workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
