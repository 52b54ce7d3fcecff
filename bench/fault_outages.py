"""Fault scenarios "broker restart" and "mongo outage" at a given size, for ``bench/faults.py``.

    .venv/bin/python -m bench.fault_outages [--events 200000] [--only broker,mongo]
        [--down-broker 8] [--down-mongo 12]

Each function runs ``tests/reliability/_outages.run_outage`` on a DEDICATED server it starts on
its own port (Kafka 19692/19693, FerretDB 37617 — not the tests' 19592/37517 — env
``FAULT_OUTAGE_KAFKA_PORT`` / ``FAULT_OUTAGE_MONGO_PORT``) and stops at the end, so no one
else's server is ever stopped:

- ``broker_restart``: the Kafka broker is stopped for ``down_s`` (default 8) seconds while the
  consumer works through the first half of the events and a producer sends the second half;
  flags go to the session FerretDB (``FRAUDLAKE_MONGO_PORT``).
- ``mongo_outage``: the FerretDB holding the flags is stopped for ``down_s`` (default 12)
  seconds; Kafka is the session broker (``FRAUDLAKE_KAFKA_PORT``).

Events: ``simulator`` (the live simulator's world: realistic flag rates), 5,000 users. Expected
decisions: the stream rule engine over all events in one pass (an uninterrupted run).

Row: ``{scenario, events, lost, duplicated, recovery_s, notes}``. ``lost`` / ``duplicated`` by
transaction_id, as in ``tests/reliability/_faults.py``: produced ids missing from the lake plus
expected flag ids missing from MongoDB / lake rows beyond one per id plus MongoDB flags that
should not exist. ``recovery_s``: seconds from the server being ready again (``services.up``
returned: the broker answers a metadata request, FerretDB answers ``ping``) until every
partition that still had work has committed beyond the offset it had committed during the
outage (read just before the restart for MongoDB; for Kafka, which cannot be asked while down,
just before the stop), i.e. the consumer processes and commits again everywhere. A broker
that takes long to start shows in the notes ("start took"), not in recovery_s. The notes give
the outage length, the server's start time, decisions differing from the uninterrupted run,
and the consumer's log lines about the outage. Figures are noisy: 2 cores shared with Kafka,
FerretDB and other work.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from pymongo import MongoClient

from fraudlake import services
from fraudlake.cli import ArgumentParser, count_arg, positive_float_arg, run
from streaming.engine import RuleEngine
from tests.reliability._faults import DECISION_COLUMNS
from tests.reliability._outages import OutageResult, run_outage
from tests.streaming._kafka_data import POISON

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results"
KEYS = ("scenario", "events", "lost", "duplicated", "recovery_s", "notes")
KAFKA_PORT = int(os.environ.get("FAULT_OUTAGE_KAFKA_PORT", "19692"))
MONGO_PORT = int(os.environ.get("FAULT_OUTAGE_MONGO_PORT", "37617"))
#: consumer batch size: the CLI's default, so a run at size behaves like production
BATCH_SIZE = 20_000


def simulated(n: int, seed: int = 11, users: int = 5_000) -> pl.DataFrame:
    from streaming.produce import simulated_events

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    frames = list(simulated_events(seed, users, n, end))
    return pl.concat(frames, how="vertical_relaxed").head(n)


def expected_decisions(events: pl.DataFrame) -> pl.DataFrame:
    """transaction_id + decision columns of one uninterrupted pass of the stream engine."""
    return RuleEngine().process(events).select("transaction_id", *DECISION_COLUMNS)


def _row(scenario: str, events: int, res: OutageResult, what: str) -> dict:
    a = res.audit
    said = [line for line in res.log.splitlines()
            if line.startswith(("kafka ", "mongo sink:")) and what in line][:1]
    said += [line for line in res.log.splitlines()
             if ("reconnected after" in line or "recovered after" in line)][:1]
    notes = (f"{what} down {res.down_s:.1f}s (start took {res.restart_s:.1f}s); "
             f"{a.notes()}; consumer exit {res.returncode}; "
             f"CPU {res.cpu_share_down:.0%} while down; log: " + " | ".join(said))
    return {"scenario": scenario, "events": events, "lost": a.lost,
            "duplicated": a.duplicated,
            "recovery_s": None if res.recovery_s is None else round(res.recovery_s, 1),
            "notes": notes}


def broker_restart(events: int, workdir: Path, down_s: float = 8.0) -> dict:
    """Kafka broker stopped ``down_s`` seconds mid-run and started again (see module doc)."""
    frame = simulated(events)
    kafka = services.kafka_server(KAFKA_PORT)
    mongo = services.up(services.mongo_server()).server.address
    db = f"outage_{uuid.uuid4().hex[:8]}"
    services.up(kafka)
    try:
        res = run_outage(kafka, bootstrap=kafka.address, mongo_uri=mongo, db=db, events=frame,
                         expected=expected_decisions(frame), workdir=workdir, poison=POISON,
                         down_s=down_s, batch_size=BATCH_SIZE, timeout=900)
    finally:
        services.down(kafka)
        with MongoClient(mongo) as client:
            client.drop_database(db)
    return _row("broker restart", events, res, "broker")


def mongo_outage(events: int, workdir: Path, down_s: float = 12.0) -> dict:
    """FerretDB (the flag store) stopped ``down_s`` seconds mid-run and started again."""
    frame = simulated(events)
    kafka = services.up(services.kafka_server()).server.address
    mongo = services.mongo_server(MONGO_PORT)
    db = f"outage_{uuid.uuid4().hex[:8]}"
    services.up(mongo)
    try:
        res = run_outage(mongo, bootstrap=kafka, mongo_uri=mongo.address, db=db, events=frame,
                         expected=expected_decisions(frame), workdir=workdir, down_s=down_s,
                         batch_size=BATCH_SIZE, env={"MONGO_RETRY_SECONDS": "120"},
                         timeout=900)
        with MongoClient(mongo.address) as client:
            client.drop_database(db)
    finally:
        services.down(mongo)
    return _row("mongo outage", events, res, "mongo")


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m bench.fault_outages", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=count_arg, default=200_000,
                   help="events per scenario (default 200000)")
    p.add_argument("--only", default="broker,mongo",
                   help="comma-separated scenarios: broker, mongo (default both)")
    p.add_argument("--down-broker", type=positive_float_arg, default=8.0,
                   help="seconds the broker stays down (default 8)")
    p.add_argument("--down-mongo", type=positive_float_arg, default=12.0,
                   help="seconds FerretDB stays down (default 12)")
    args = p.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - {"broker", "mongo"}:
        p.error(f"--only: expected broker and/or mongo, got {args.only!r}")
    if args.events < 100:
        p.error("--events: at least 100")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fault-outages-") as tmp:
        if "broker" in only:
            rows.append(broker_restart(args.events, Path(tmp) / "broker", args.down_broker))
            print(rows[-1])
        if "mongo" in only:
            rows.append(mongo_outage(args.events, Path(tmp) / "mongo", args.down_mongo))
            print(rows[-1])
    write_results(rows, " ".join(["python -m bench.fault_outages", *(argv or sys.argv[1:])]))
    return 0


def write_results(rows: list[dict], command: str) -> None:
    """bench/results/fault_outages.{json,md} (bench/faults.py writes the combined table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "cores": os.cpu_count()}
    (RESULTS / "fault_outages.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    table = "\n".join("| " + " | ".join("–" if r[k] is None else str(r[k]) for k in KEYS)
                      + " |" for r in rows)
    (RESULTS / "fault_outages.md").write_text(
        f"# Broker restart and MongoDB outage (bench/fault_outages.py)\n\n"
        f"Run {meta['when']}, `{command}`, {meta['cores']} cores shared with Kafka, FerretDB "
        f"and other work (load {meta['load']}): recovery times are noisy. No baseline here: "
        f"bench/faults.py runs these rows next to an uninterrupted consumer. Definitions: "
        f"see the module docstring.\n\n| {' | '.join(KEYS)} |\n|{'---|' * len(KEYS)}\n"
        f"{table}\n")


if __name__ == "__main__":
    raise SystemExit(run(main))
