"""What the lake already holds for one Kafka partition — used when a consumer takes a partition.

Lake files are named ``{topic}-p{partition}-o{first:020d}-{last:020d}[.c].parquet`` (see
``streaming.lake_sink``). When a consumer is assigned a partition whose committed offset is C:

- files of that partition starting at or after C were written by an earlier consumer that died
  (or lost the partition) before committing; they are removed, because the new owner re-reads
  and rewrites those offsets, possibly cut into different batches (``discard_uncommitted``);
- files ending before C hold every valid event the partition delivered so far, in the lake
  schema; they rebuild the rule engine's per-user state (``partition_history``) so a restarted
  or reassigned consumer decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from streaming.lake_sink import LakeFile, parse_name

#: What ``RuleEngine.warm_up`` needs of earlier events.
STATE_COLUMNS = ("user_id", "ts", "transaction_id", "lat", "lon")


def partition_files(transactions_dir: Path, topic: str, partition: int) -> list[LakeFile]:
    """Every lake file of one topic partition (any month), by first offset."""
    if not transactions_dir.exists():
        return []
    found = []
    for path in transactions_dir.glob(f"year=*/month=*/{glob_escape(topic)}-p{partition}-o*"):
        f = parse_name(path)
        if f is not None and f.topic == topic and f.partition == partition:
            found.append(f)
    return sorted(found, key=lambda f: (f.first, f.last, str(f.path)))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def discard_uncommitted(transactions_dir: Path, topic: str, partition: int,
                        committed: int) -> list[Path]:
    """Remove files whose offsets all lie at/after ``committed``; return what was removed."""
    removed = []
    for f in partition_files(transactions_dir, topic, partition):
        if f.first >= committed:
            f.path.unlink(missing_ok=True)
            removed.append(f.path)
    return removed


def partition_history(transactions_dir: Path, topic: str, partition: int,
                      committed: int) -> pl.DataFrame | None:
    """The state columns of every lake event of the partition below ``committed`` (None when
    there are none). Files straddling ``committed`` (only a compaction of not yet committed
    files could make one) are left out."""
    files = [f.path for f in partition_files(transactions_dir, topic, partition)
             if f.last < committed]
    if not files:
        return None
    return pl.read_parquet(files, columns=list(STATE_COLUMNS), hive_partitioning=False)
