"""Compact the live lake: merge many small sink files of a month folder into one, atomically.

``python -m lake.compact --lake DIR [--min-files N] [--target-rows R]``

Per ``DIR/transactions/year=YYYY/month=MM`` folder and per (topic, partition): when there are
at least N files, consecutive files (by first offset) are merged into chunks of at most R rows.
A chunk becomes ``{topic}-p{p}-o{min}-{max}.c.parquet`` whose Parquet metadata
``fraudlake.ranges`` lists exactly the offset ranges of its inputs, so the lake sink (and a
replay) knows which offsets it covers; gaps between inputs stay uncovered.

Crash safety. Order of work: write the merged temp file, fsync, ``os.replace`` it into its
final name, then delete the inputs. A crash before the rename leaves only the inputs (the temp
file is hidden and ignored, and removed by the next run). A crash after the rename and before
all deletes leaves inputs whose offsets the compacted file covers: a reader may see those rows
twice until the next ``compact`` run or the next sink write into that folder, which both delete
such leftovers first (``recover``). Deleting inputs *before* the rename instead would make rows
vanish in the same window, which is worse, so leftovers (never loss) is the chosen failure mode.
Call ``recover(lake_dir)`` before a read that must not see that window.

Files younger than ``--min-age`` seconds are left alone, so the newest batches of a live
consumer (written, not yet committed to Kafka) are not merged with committed ones; a consumer
taking over a partition can then still drop uncommitted files by name.

A compacted file itself may be an input of a later compaction (its ranges are carried over).
Running beside a live sink is safe: the sink never writes offsets a folder already covers.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from fraudlake.cli import ArgumentParser, UsageError, positive_count_arg, run
from lake.layout import (
    TRANSACTIONS,
    LakeFile,
    drop_compacted_leftovers,
    file_name,
    file_ranges,
    folder_files,
    merge_ranges,
    month_folders,
    ranges_metadata,
    temp_files,
    to_lake_frame,
    transactions_dir,
    write_lake_file,
)

log = logging.getLogger(__name__)

STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class CompactReport:
    folders: int
    files_in: int
    files_out: int
    rows: int
    leftovers_removed: int


def recover(lake: Path) -> int:
    """Remove leftovers of crashed compactions and stale temp files; return how many."""
    removed = 0
    for folder in month_folders(transactions_dir(lake)):
        removed += _recover_folder(folder)
    return removed


def _recover_folder(folder: Path) -> int:
    removed = 0
    now = time.time()
    for tmp in temp_files(folder):
        if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
            tmp.unlink(missing_ok=True)
            removed += 1
    files = folder_files(folder)
    for _, group in groupby(files, key=lambda f: (f.topic, f.partition)):
        mine = list(group)
        covered = merge_ranges([r for f in mine if f.compacted for r in file_ranges(f)])
        removed += len(mine) - len(drop_compacted_leftovers(mine, covered))
    return removed


def _rows(f: LakeFile) -> int:
    return pq.read_metadata(f.path).num_rows


def plan_chunks(files: list[LakeFile], target_rows: int) -> list[list[LakeFile]]:
    """Consecutive files grouped greedily up to ``target_rows``; only groups of 2+ files."""
    chunks: list[list[LakeFile]] = []
    current: list[LakeFile] = []
    size = 0
    for f in files:
        n = _rows(f)
        if current and size + n > target_rows:
            chunks.append(current)
            current, size = [], 0
        current.append(f)
        size += n
    if current:
        chunks.append(current)
    return [c for c in chunks if len(c) > 1]


def merge_chunk(chunk: list[LakeFile]) -> tuple[Path, int]:
    """Merge one chunk into its compacted file, then delete the inputs."""
    ranges = merge_ranges([r for f in chunk for r in file_ranges(f)])
    first, last = ranges[0][0], ranges[-1][1]
    head = chunk[0]
    target = head.path.parent / file_name(head.topic, head.partition, first, last, True)
    df = to_lake_frame(pl.concat([pl.read_parquet(f.path, hive_partitioning=False)
                                  for f in chunk], how="diagonal_relaxed"))  # ± shadow columns
    write_lake_file(df, target, metadata=ranges_metadata(ranges))
    for f in chunk:
        if f.path != target:
            f.path.unlink(missing_ok=True)
    return target, df.height


def compact(lake: Path, min_files: int = 8, target_rows: int = 2_000_000,
            min_age_seconds: float = 60.0) -> CompactReport:
    """Compact every month folder of ``lake``; see the module docstring."""
    folders = month_folders(transactions_dir(lake))
    files_in = files_out = rows = leftovers = 0
    newest = time.time() - min_age_seconds
    for folder in folders:
        leftovers += _recover_folder(folder)
        files = [f for f in folder_files(folder) if f.path.stat().st_mtime <= newest]
        for _, group in groupby(files, key=lambda f: (f.topic, f.partition)):
            mine = sorted(group, key=lambda f: (f.first, f.last))
            if len(mine) < min_files:
                continue
            for chunk in plan_chunks(mine, target_rows):
                _, n = merge_chunk(chunk)
                files_in += len(chunk)
                files_out += 1
                rows += n
    return CompactReport(len(folders), files_in, files_out, rows, leftovers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m lake.compact", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True,
                        help="lake folder holding transactions/year=…/month=… (e.g. storage/lake)")
    parser.add_argument("--min-files", type=positive_count_arg, default=8,
                        help="compact a topic partition's files in a month folder only when "
                             "there are at least this many (default 8)")
    parser.add_argument("--target-rows", type=positive_count_arg, default=2_000_000,
                        help="at most this many rows per compacted file (default 2e6)")
    parser.add_argument("--min-age", type=float, default=60.0, metavar="SECONDS",
                        help="leave files younger than this alone (default 60): a live "
                             "consumer's newest, not yet committed batches stay separate")
    args = parser.parse_args(argv)
    if not args.min_age >= 0:
        raise UsageError(f"--min-age must be >= 0: {args.min_age}")
    if not transactions_dir(args.lake).is_dir():
        raise UsageError(f"--lake {args.lake}: no {TRANSACTIONS}/ folder there")
    t0 = time.perf_counter()
    r = compact(args.lake, args.min_files, args.target_rows, args.min_age)
    log.info(f"compacted {r.files_in} files into {r.files_out} ({r.rows:,} rows) in {r.folders} "
          f"month folders; removed {r.leftovers_removed} leftovers; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
