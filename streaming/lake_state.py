"""What the lake already holds for one Kafka partition — used when a consumer takes a partition.

Lake files are named ``{topic}-p{partition}-o{first:020d}-{last:020d}[.c].parquet`` (see
``lake.layout``). When a consumer is assigned a partition whose committed offset is C:

- files of that partition starting at or after C were written by an earlier consumer that died
  (or lost the partition) before committing; they are removed, because the new owner re-reads
  and rewrites those offsets, possibly cut into different batches (``discard_uncommitted``);
- files ending before C hold every valid event the partition delivered so far, in the lake
  schema; they rebuild the rule engine's per-user state (``partition_history``) so a restarted
  or reassigned consumer decides exactly as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lake.layout import partition_files, partition_temp_files

#: What ``RuleEngine.warm_up`` needs of earlier events.
STATE_COLUMNS = ("user_id", "ts", "transaction_id", "lat", "lon")


def discard_uncommitted(transactions_dir: Path, topic: str, partition: int,
                        committed: int) -> list[Path]:
    """Remove files whose offsets all lie at/after ``committed``, and the partition's temp
    files of writes that never finished; return what was removed. Only the partition's owner
    writes its sink files, so on assignment none of these should still be in progress."""
    removed = []
    for f in partition_files(transactions_dir, topic, partition):
        if f.first >= committed:
            f.path.unlink(missing_ok=True)
            removed.append(f.path)
    for path in partition_temp_files(transactions_dir, topic, partition):
        path.unlink(missing_ok=True)
        removed.append(path)
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
