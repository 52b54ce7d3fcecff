"""What the lake already holds for one Kafka partition — used when a consumer takes a partition.

Lake files are named ``{topic}-p{partition}-o{first:020d}-{last:020d}[.c].parquet`` (see
``streaming.lake_sink``). When a consumer is assigned a partition whose committed offset is C:

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

import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from streaming.lake_sink import LakeFile, parse_name

#: What ``RuleEngine.warm_up`` needs of earlier events under the default rule set.
STATE_COLUMNS = ("user_id", "ts", "transaction_id", "amount", "lat", "lon", "utc_offset_min")


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


_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]+\.tmp$")


def temp_files(transactions_dir: Path, topic: str, partition: int) -> list[Path]:
    """Temp files of interrupted sink writes of one topic partition (compaction's are not)."""
    if not transactions_dir.exists():
        return []
    found = []
    pattern = f"year=*/month=*/.{glob_escape(topic)}-p{partition}-o*.tmp"
    for path in transactions_dir.glob(pattern):
        m = _TEMP.match(path.name)
        f = parse_name(path.with_name(m["name"])) if m else None
        if f is not None and (f.topic, f.partition) == (topic, partition) and not f.compacted:
            found.append(path)
    return sorted(found)


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
    for path in temp_files(transactions_dir, topic, partition):
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
