"""Broker restart and MongoDB outage under a running consumer: shared by
``tests/reliability/test_outages.py`` and ``bench/fault_outages.py``.

One scenario (``run_outage``): a fresh 4-partition topic gets the first half of a known event
set (plus poison messages for the DLQ); the consumer CLI (``python -m streaming.consume``, its
own lake folder and group, flags into MongoDB/FerretDB) starts as a real process; once it has
committed something, a thread produces the second half in chunks while the server is stopped
(``services.down``) for ``down_s`` seconds and started again (``services.up``); the test waits
until the group has committed every message, stops the consumer with SIGTERM and audits the lake
and MongoDB by transaction_id (``_faults.audit``: lost, duplicated, decisions differing).

``recovery_s``: seconds from the server being ready again (``services.up`` returned: the broker
answers a metadata request / FerretDB answers ``ping``) until every partition that still had
work has committed beyond the offset it had committed during the outage (for MongoDB read just
before the restart; for Kafka, which cannot be asked while it is down, just before the stop):
the consumer processes and commits again everywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from fraudlake import services
from streaming.kafka_io import BrokerWatch, ensure_topics, producer_config
from streaming.produce import produce
from tests.reliability._faults import (
    ROOT,
    Audit,
    Offsets,
    audit,
    consume_cmd,
    lake_rows,
    mongo_flags,
)
from tests.streaming._kafka_data import read_topic

PARTITIONS = 4


@dataclass(frozen=True)
class OutageResult:
    audit: Audit
    recovery_s: float | None  # server ready again → every partition with work committed again
    down_s: float  # services.down called → services.up returned
    restart_s: float  # how long services.up took (server start until ready)
    total_s: float
    returncode: int
    log: str  # the consumer's stderr
    cpu_share_down: float  # consumer CPU seconds / wall seconds while the server was away
    dlq: list[bytes] = field(default_factory=list)
    produced_failed: int = 0
    producer_log: tuple[str, ...] = ()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # noqa: BLE001 - a server still coming up: ask again
            pass
        time.sleep(step)
    raise TimeoutError(f"{what} after {timeout:.0f}s")


def wait_resumed(offsets: Offsets, before: dict[int, int], since: float,
                 timeout: float, proc: subprocess.Popen) -> float | None:
    """Seconds from ``since`` until every partition that had work left at ``before`` (its
    committed offsets at the fault) has committed beyond it; None on timeout. Like
    ``_faults.wait_resumed``, but asks again while a restarted broker has no leaders yet, and
    gives up (None) when the consumer process has ended."""
    waiting: set[int] | None = None
    while time.monotonic() - since < timeout and proc.poll() is None:
        try:
            if waiting is None:
                ends = offsets.ends()
                waiting = {p for p, o in before.items() if o < ends[p]}
            now = offsets.by_partition()
        except KafkaException:
            time.sleep(0.2)
            continue
        waiting = {p for p in waiting if now[p] <= before[p]}
        if not waiting:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def wait_leaders(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ready() -> bool:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        return (md is not None and md.error is None and len(md.partitions) == partitions
                and all(p.leader >= 0 for p in md.partitions.values()))

    wait_for(ready, timeout, f"topic {topic} has no leaders")


def run_outage(server: services.Server, *, bootstrap: str, mongo_uri: str, db: str,
               events: pl.DataFrame, expected: pl.DataFrame, workdir: Path,
               poison: list[bytes] = (), down_s: float = 6.0, batch_size: int = 200,
               env: dict[str, str] | None = None, chunks: int = 8,
               timeout: float = 240.0) -> OutageResult:
    """Run the scenario with ``server`` (the Kafka broker at ``bootstrap`` or the FerretDB at
    ``mongo_uri``, started by the caller) stopped for ``down_s`` seconds mid-run. ``expected``:
    transaction_id + rule columns of an uninterrupted run over ``events``."""
    t0 = time.monotonic()
    topic = f"outage-{uuid.uuid4().hex[:10]}"
    group = f"g-{topic}"
    lake = workdir / "lake"
    log_path = workdir / "consumer.log"
    workdir.mkdir(parents=True, exist_ok=True)
    ensure_topics(bootstrap, [topic], PARTITIONS)
    wait_leaders(bootstrap, topic, PARTITIONS)
    half = events.height // 2
    producer_log: list[str] = []
    producer = Producer(producer_config(bootstrap, watch=BrokerWatch("producer",
                                                                    producer_log.append)))
    first = produce(producer, topic, [events.head(half)], progress=False)
    for value in poison:
        producer.produce(topic, value=value, key=b"poison")
    producer.flush(60)

    cmd = consume_cmd(bootstrap, topic, lake, mongo_uri, group, batch_size=batch_size)
    full_env = {**os.environ, "MONGO_DB": db, "MONGO_COLLECTION": "flags",
                "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                                stderr=fh)
    offsets = Offsets(bootstrap, group, topic, PARTITIONS)
    failed = [first.failed]
    try:
        wait_for(lambda: offsets.committed() > 0 or proc.poll() is not None, 120,
                 "the consumer committed nothing")
        rest = events.slice(half)
        size = -(-rest.height // chunks)

        def second_half() -> None:
            for lo in range(0, rest.height, size):
                failed[0] += produce(producer, topic, [rest.slice(lo, size)],
                                     progress=False).failed
                time.sleep(down_s / chunks)

        thread = threading.Thread(target=second_half, daemon=True)
        thread.start()
        before = offsets.by_partition()
        cpu0, t_down = cpu_seconds(proc.pid), time.monotonic()
        services.down(server)
        time.sleep(down_s)
        if server.name == "mongo":  # Kafka still answers: the offsets the outage left behind
            before = offsets.by_partition()
        t_start = time.monotonic()
        services.up(server)
        t_up = time.monotonic()
        cpu_share = (cpu_seconds(proc.pid) - cpu0) / max(t_up - t_down, 1e-9)
        recovery = wait_resumed(offsets, before, t_up, timeout, proc)
        thread.join(timeout)
        wait_for(lambda: offsets.committed() >= half + len(poison) + rest.height
                 or proc.poll() is not None, timeout, "the consumer did not commit everything")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        offsets.close()
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=30_000)
    try:
        flags = mongo_flags(client[db]["flags"])
    finally:
        client.close()
    dlq = [m.value() for m in read_topic(bootstrap, f"{topic}.dlq", len(poison))] if poison \
        else []
    AdminClient({"bootstrap.servers": bootstrap}).delete_topics([topic, f"{topic}.dlq"])
    return OutageResult(audit(expected, lake_rows(lake), flags), recovery, t_up - t_down,
                        t_up - t_start, time.monotonic() - t0, rc,
                        log_path.read_text(errors="replace"), cpu_share, dlq, failed[0],
                        tuple(producer_log))
