"""Lake sink: every decided event into hive-partitioned Parquet, atomic and replay-safe.

``LakeSink(root).write(df, topic, partition, first_offset, last_offset)`` splits a decided
micro-batch by event month into

    root/transactions/year=YYYY/month=MM/{topic}-p{partition}-o{first:020d}-{last:020d}.parquet

(names, folders and range metadata: ``lake.layout``) with exactly the lake schema
(``fraudlake.contract.LAKE_SCHEMA``: history columns + rule
columns, in that order; provenance columns are dropped), rows sorted by ``(ts, transaction_id)``.

Atomic: each file is written to a hidden temp file in the same folder, fsynced, then
``os.replace``d into place (and the folder fsynced); a crash leaves a complete file or none.

Idempotent, whatever the batch boundaries of a replay: a file name records which offsets of
one topic partition it *covers* in its folder (all events of those offsets that fall in that
month). Compacted files (``….c.parquet``, see ``lake.compact``) record their exact list of
covered ranges in the Parquet key-value metadata ``fraudlake.ranges``. Before writing, the sink
subtracts what the folder already covers and writes only the uncovered sub-ranges (rows picked
by ``_offset``), so an offset is never in two files. A replay of exactly the same offsets
rewrites the same file name. The same offset always carries the same Kafka record, so the
skipped rows equal the rows already on disk.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lake.layout import (
    LakeFile,
    Range,
    drop_compacted_leftovers,
    file_name,
    file_ranges,
    folder_files,
    merge_ranges,
    partition_dir,
    subtract,
    to_lake_frame,
    transactions_dir,
    write_lake_file,
)


class LakeSink:
    """Writes decided micro-batches under ``root/transactions``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.transactions = transactions_dir(self.root)
        # compacted file → its covered ranges, keyed by (path, inode, size, mtime): a folder is
        # listed on every write (a cached listing could miss another writer's file), but
        # Parquet footers are read once per compacted file
        self._c_ranges: dict[tuple[Path, int, int, int], list[Range]] = {}

    def _listing(self, folder: Path) -> list[tuple[LakeFile, list[Range]]]:
        """Files of a folder with their covered ranges; listed again if a compaction running
        beside us removed a file in between (its coverage moved to a newer file)."""
        for _ in range(10):
            try:
                return [(f, self._ranges(f)) for f in folder_files(folder)]
            except FileNotFoundError:
                continue
        raise RuntimeError(f"{folder}: files keep disappearing while listing")

    def _ranges(self, f: LakeFile) -> list[Range]:
        if not f.compacted:
            return [(f.first, f.last)]
        st = f.path.stat()
        key = (f.path, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._c_ranges:
            self._c_ranges[key] = file_ranges(f)
        return self._c_ranges[key]

    def write(self, df: pl.DataFrame, topic: str, partition: int, first_offset: int,
              last_offset: int) -> list[Path]:
        """Write one batch (offsets ``first..last`` of one topic partition); return new files."""
        if first_offset > last_offset:
            raise ValueError(f"first_offset {first_offset} > last_offset {last_offset}")
        if df.is_empty():
            return []
        months = df.with_columns(
            _y=pl.col("ts").dt.convert_time_zone("UTC").dt.year(),
            _m=pl.col("ts").dt.convert_time_zone("UTC").dt.month(),
        ).partition_by("_y", "_m", as_dict=True)
        written: list[Path] = []
        for (year, month), part in sorted(months.items()):
            folder = self.transactions / partition_dir(int(year), int(month))
            written += self._write_month(part.drop("_y", "_m"), folder, topic, partition,
                                         (first_offset, last_offset))
        return written

    def _write_month(self, part: pl.DataFrame, folder: Path, topic: str, partition: int,
                     span: Range) -> list[Path]:
        listing = self._listing(folder)
        mine = [f for f, _ in listing if (f.topic, f.partition) == (topic, partition)]
        ranges = {f.path: r for f, r in listing}
        covered_by_c = merge_ranges([r for f in mine if f.compacted for r in ranges[f.path]])
        kept = drop_compacted_leftovers(mine, covered_by_c)
        return self._write_uncovered(part, folder, topic, partition, span, kept, ranges)

    def _write_uncovered(self, part: pl.DataFrame, folder: Path, topic: str, partition: int,
                         span: Range, mine: list[LakeFile],
                         ranges: dict[Path, list[Range]]) -> list[Path]:
        exact = folder / file_name(topic, partition, *span)
        if any(f.path == exact for f in mine):
            write_lake_file(to_lake_frame(part), exact)  # same offsets again: same name, rewritten
            return [exact]
        todo = subtract(span, merge_ranges([r for f in mine for r in ranges[f.path]]))
        if todo == [span]:
            write_lake_file(to_lake_frame(part), exact)
            return [exact]
        if todo and "_offset" not in part.columns:
            raise ValueError(f"{folder}: offsets {span} partly written already; need _offset")
        written = []
        for a, b in todo:
            rows = part.filter(pl.col("_offset").is_between(a, b))
            if rows.height:
                path = folder / file_name(topic, partition, a, b)
                write_lake_file(to_lake_frame(rows), path)
                written.append(path)
        return written
