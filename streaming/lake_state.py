"""What the lake already holds for one Kafka partition — used when a consumer takes a partition.

Lake files are named ``{topic}-p{partition}-o{first:020d}-{last:020d}[.c].parquet`` (see
``lake.layout``). When a consumer is assigned a partition whose committed offset is C:

- files of that partition starting at or after C were written by an earlier consumer that died
  (or lost the partition) before committing; they are removed, because the new owner re-reads
  and rewrites those offsets, possibly cut into different batches (``discard_uncommitted``);
- files ending before C hold every valid event the partition delivered so far, with every
  contract column (lake v2, and v1 files with one Boolean per v1 rule alike); they rebuild the
  rule engine's per-user state for every rule kind — windows, last event, recent amounts,
  recent devices, list fields (``partition_history`` reads the columns
  ``RuleEngine.state_columns`` names) — so a restarted or reassigned consumer decides exactly
  as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from lake.layout import partition_files, partition_temp_files

#: What ``RuleEngine.warm_up`` needs of earlier events under the default rule set.
STATE_COLUMNS = ("user_id", "ts", "transaction_id", "amount", "lat", "lon", "utc_offset_min")


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


def partition_history(transactions_dir: Path, topic: str, partition: int, committed: int,
                      columns: Sequence[str] = STATE_COLUMNS) -> pl.DataFrame | None:
    """``columns`` of every lake event of the partition below ``committed`` (None when there
    are none). Files straddling ``committed`` (only a compaction of not yet committed files
    could make one) are left out. A column a file lacks reads as nulls."""
    files = [f.path for f in partition_files(transactions_dir, topic, partition)
             if f.last < committed]
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert",
                           extra_columns="ignore").select(list(columns)).collect()
