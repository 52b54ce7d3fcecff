"""Shared by the reliability tests and ``bench/faults.py``: run the consumer CLI as a real
process, kill it, and audit what reached the lake and MongoDB against what was produced.

Counting (the same in tests and benchmark), all by ``transaction_id``:

- lake ``lost``: produced ids with no lake row; lake ``duplicated``: lake rows beyond the first
  of their id (plus rows whose id was never produced);
- flags ``lost``: ids the rules should flag with no MongoDB document; flags ``duplicated``:
  MongoDB documents whose id should not be flagged (``_id`` is unique, so a replay can only
  add a document that should not exist, never a second copy);
- ``mismatched``: ids whose rule columns in the lake, or rule list in MongoDB, differ from the
  expected decision (a restarted consumer deciding differently shows up here).

The expected decision is an uninterrupted run: the pure-Python reference in the tests, the
rule engine over the whole event set in one pass in the benchmark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from confluent_kafka import Consumer, TopicPartition

from fraudlake.contract import FLAGGED

ROOT = Path(__file__).resolve().parents[2]
#: What is compared per transaction between the uninterrupted decision and the lake.
DECISION_COLUMNS = ["score", FLAGGED, "rules_fired"]


def consume_cmd(bootstrap: str, topic: str, lake: Path, mongo_uri: str, group: str, *,
                batch_size: int = 200, timeout: float | None = None,
                instance_id: str | None = None, rules: Path | None = None) -> list[str]:
    """The consumer CLI (``python -m streaming.consume``); with ``instance_id`` it is a static
    group member (``--group-instance-id``): a restart after kill -9 takes its partitions back at
    once instead of waiting out the killed member's session timeout (10 s)."""
    return [sys.executable, "-m", "streaming.consume", "--bootstrap", bootstrap,
            "--topic", topic, "--dlq-topic", f"{topic}.dlq",
            "--group", group, "--lake", str(lake), "--mongo-uri", mongo_uri,
            "--batch-size", str(batch_size), "--metrics-interval", "1",
            "--metrics-file", str(lake.parent / f"metrics-{group}.json"),
            *(["--timeout", str(timeout)] if timeout is not None else []),
            *(["--group-instance-id", instance_id] if instance_id else []),
            *(["--rules", str(rules)] if rules is not None else [])]


def start(cmd: list[str], mongo_db: str, log: Path, collection: str = "flags"
          ) -> subprocess.Popen:
    """Start ``cmd`` from the project root, flags into ``mongo_db.collection``, stderr (appended)
    into ``log``."""
    env = {**os.environ, "MONGO_DB": mongo_db, "MONGO_COLLECTION": collection,
           "PYTHONPATH": str(ROOT)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=fh)


def wait_for_line(log: Path, needle: str, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    """True once ``needle`` is in ``log``; False if the process ended first or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    """Wait for a bounded run (``--timeout``) to end; fail with its log if it failed."""
    rc = proc.wait(timeout=timeout)
    if rc != 0:
        raise AssertionError(f"consumer exited {rc}:\n{log.read_text(errors='replace')[-3000:]}")


def drain(cmd: list[str], mongo_db: str, log: Path, offsets: Offsets, total: int) -> None:
    """After the kills: one last bounded run (``--timeout 4``) takes what is left; then every
    one of the ``total`` events is committed."""
    finish(start([*cmd, "--timeout", "4"], mongo_db, log), log)
    assert offsets.committed() == offsets.end() == total


# --- Kafka offsets ---------------------------------------------------------------------------
class Offsets:
    """The group's committed offsets and the topic's end offsets (without joining the group)."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                            "enable.auto.commit": False})
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]

    def by_partition(self) -> dict[int, int]:
        """partition → committed offset (0 when nothing is committed yet)."""
        return {tp.partition: max(tp.offset, 0)
                for tp in self._c.committed(self._tps, timeout=10)}

    def ends(self) -> dict[int, int]:
        return {tp.partition: self._c.get_watermark_offsets(tp, timeout=10)[1]
                for tp in self._tps}

    def committed(self) -> int:
        return sum(self.by_partition().values())

    def end(self) -> int:
        return sum(self.ends().values())

    def close(self) -> None:
        self._c.close()


def wait_resumed(offsets: Offsets, before: dict[int, int], since: float,
                 timeout: float = 300.0, every: bool = True) -> float | None:
    """Seconds from ``since`` (a ``time.monotonic()``) until the partitions that had work left
    at ``before`` (committed offsets then) have committed beyond it — ``every`` one of them
    (the whole group processes again), or any one (a single consumer processes again).
    0 when no partition had work left; None on timeout."""
    ends = offsets.ends()
    waiting = {p for p, o in before.items() if o < ends[p]}
    need = len(waiting) if every else min(1, len(waiting))
    moved: set[int] = set()
    while time.monotonic() - since < timeout:
        if len(moved) >= need:
            return time.monotonic() - since
        now = offsets.by_partition()
        moved |= {p for p in waiting if now[p] > before[p]}
        time.sleep(0.05)
    return None


# --- what landed -----------------------------------------------------------------------------
_SCHEMA = {"transaction_id": pl.String, "score": pl.Float64, FLAGGED: pl.Boolean,
           "rules_fired": pl.List(pl.String)}


def lake_rows(lake: Path) -> pl.DataFrame:
    """transaction_id + the lake v2 decision columns of every Parquet file under ``lake``
    (temp files are hidden ``.….tmp`` and not read)."""
    files = sorted(p for p in lake.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        return pl.DataFrame(schema=_SCHEMA)
    return pl.read_parquet(files, columns=list(_SCHEMA), hive_partitioning=False)


def expected_rows(reference: pl.DataFrame, rule_ids: Sequence[str]) -> pl.DataFrame:
    """``reference_decisions`` output (one bool per rule id) → the lake's decision columns."""
    listed = [pl.when(pl.col(r)).then(pl.lit(r)) for r in rule_ids]
    return reference.select("transaction_id", "score", FLAGGED,
                            rules_fired=pl.concat_list(listed).list.drop_nulls())


def mongo_flags(collection) -> dict[str, list[str]]:
    return {d["_id"]: sorted(d["rules_fired"]) for d in collection.find({}, {"rules_fired": 1})}


def fired(frame: pl.DataFrame) -> dict[str, list[str]]:
    """Flagged ids → the sorted ids of the rules that fired (``expected_rows`` columns)."""
    flagged = frame.filter(pl.col(FLAGGED))
    return {row["transaction_id"]: sorted(row["rules_fired"])
            for row in flagged.select("transaction_id", "rules_fired").iter_rows(named=True)}


@dataclass(frozen=True)
class Audit:
    produced: int
    lake_rows: int
    lake_lost: int
    lake_duplicated: int
    flags_expected: int
    flags_lost: int
    flags_duplicated: int
    mismatched: int

    @property
    def lost(self) -> int:
        return self.lake_lost + self.flags_lost

    @property
    def duplicated(self) -> int:
        return self.lake_duplicated + self.flags_duplicated

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.mismatched == 0

    def notes(self) -> str:
        return (f"lake {self.lake_rows:,} rows (lost {self.lake_lost}, "
                f"dup {self.lake_duplicated}); "
                f"flags {self.flags_expected:,} expected (lost {self.flags_lost}, "
                f"extra {self.flags_duplicated}); decisions differing {self.mismatched}")


def audit(expected: pl.DataFrame, lake: pl.DataFrame, mongo: dict[str, list[str]]) -> Audit:
    """``expected``: one row per produced event, ``expected_rows(...)`` (the uninterrupted
    decision); ``lake``: ``lake_rows(...)``; ``mongo``: ``mongo_flags(...)``."""
    produced = expected.select("transaction_id").unique()
    counts = lake.group_by("transaction_id").len()
    lake_lost = produced.join(counts, on="transaction_id", how="anti").height
    extra_rows = counts.join(produced, on="transaction_id", how="anti")["len"].sum()
    lake_dup = int((counts["len"] - 1).sum()) + int(extra_rows or 0) if counts.height else 0
    joined = expected.join(lake.unique("transaction_id", keep="first"), on="transaction_id",
                           suffix="_lake")
    differs = pl.any_horizontal([pl.col(c) != pl.col(f"{c}_lake") for c in DECISION_COLUMNS])
    bad_ids = set(joined.filter(differs)["transaction_id"])
    want = fired(expected)
    flags_lost = sum(1 for i in want if i not in mongo)
    flags_dup = sum(1 for i in mongo if i not in want)
    bad_ids |= {i for i, rules in mongo.items() if i in want and rules != want[i]}
    return Audit(expected.height, lake.height, lake_lost, lake_dup, len(want), flags_lost,
                 flags_dup, len(bad_ids))


def leftover_temp_files(lake: Path) -> list[Path]:
    return [p for p in lake.rglob(".*.tmp")]
