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
import pyarrow as pa
import pyarrow.parquet as pq

from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    non_negative_float_arg,
    positive_count_arg,
    run,
)
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
    unreadable: tuple[str, ...] = ()  # "path: reason" of files left alone (not merged)


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


#: What a corrupt or foreign file raises on read (an OSError of the disk is not one of them).
_BAD_FILE = (pl.exceptions.PolarsError, pa.ArrowInvalid, pa.ArrowTypeError)


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


def readable(files: list[LakeFile], bad: list[str]) -> list[list[LakeFile]]:
    """``files`` split into runs of readable files (footer present); each unreadable one is
    appended to ``bad`` as ``path: reason`` and left alone."""
    runs: list[list[LakeFile]] = [[]]
    for f in files:
        try:
            _rows(f)
        except _BAD_FILE as exc:
            bad.append(f"{f.path}: {_first_line(exc)}")
            runs.append([])
        else:
            runs[-1].append(f)
    return [r for r in runs if r]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def merge_chunk(chunk: list[LakeFile],
                bad: list[str] | None = None) -> list[tuple[Path, int, int]]:
    """Merge one chunk into its compacted file, then delete the inputs. A file whose data
    cannot be read is left alone (noted in ``bad``): the readable runs around it are merged
    separately, so a compacted file never claims the offsets of a file it does not hold.
    Returns ``(compacted file, rows, input files)`` per file written."""
    frames: list[pl.DataFrame | None] = []
    for f in chunk:
        try:
            frames.append(to_lake_frame(pl.read_parquet(f.path, hive_partitioning=False)))
        except _BAD_FILE as exc:
            if bad is None:
                raise
            bad.append(f"{f.path}: {_first_line(exc)}")
            frames.append(None)
    out: list[tuple[Path, int, int]] = []
    run: list[tuple[LakeFile, pl.DataFrame]] = []
    pairs: list[tuple[LakeFile | None, pl.DataFrame | None]] = [
        *zip(chunk, frames, strict=True), (None, None)]
    for file, frame in pairs:
        if file is not None and frame is not None:
            run.append((file, frame))
            continue
        if len(run) > 1:
            out.append(_write_merged(run))
        run = []
    return out


def _write_merged(run: list[tuple[LakeFile, pl.DataFrame]]) -> tuple[Path, int, int]:
    files = [f for f, _ in run]
    ranges = merge_ranges([r for f in files for r in file_ranges(f)])
    first, last = ranges[0][0], ranges[-1][1]
    head = files[0]
    target = head.path.parent / file_name(head.topic, head.partition, first, last, True)
    df = to_lake_frame(pl.concat([frame for _, frame in run], how="diagonal_relaxed")  # ± shadow
                       ).sort("ts", "transaction_id")
    write_lake_file(df, target, metadata=ranges_metadata(ranges))
    for f in files:
        if f.path != target:
            f.path.unlink(missing_ok=True)
    return target, df.height, len(files)


def compact(lake: Path, min_files: int = 8, target_rows: int = 2_000_000,
            min_age_seconds: float = 60.0) -> CompactReport:
    """Compact every month folder of ``lake``; see the module docstring. Files that cannot be
    read are left alone and listed in ``CompactReport.unreadable``."""
    folders = month_folders(transactions_dir(lake))
    files_in = files_out = rows = leftovers = 0
    bad: list[str] = []
    newest = time.time() - min_age_seconds
    for folder in folders:
        leftovers += _recover_folder(folder)
        files = [f for f in folder_files(folder) if f.path.stat().st_mtime <= newest]
        for _, group in groupby(files, key=lambda f: (f.topic, f.partition)):
            mine = sorted(group, key=lambda f: (f.first, f.last))
            if len(mine) < min_files:
                continue
            for part in readable(mine, bad):
                for chunk in plan_chunks(part, target_rows):
                    for _target, n, inputs in merge_chunk(chunk, bad):
                        files_in += inputs
                        files_out += 1
                        rows += n
    return CompactReport(len(folders), files_in, files_out, rows, leftovers, tuple(bad))


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m lake.compact", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True,
                        help="lake folder holding transactions/year=…/month=… (e.g. storage/lake)")
    parser.add_argument("--min-files", type=positive_count_arg, default=8,
                        help="compact a topic partition's files in a month folder only when "
                             "there are at least this many (default 8)")
    parser.add_argument("--target-rows", type=positive_count_arg, default=2_000_000,
                        help="at most this many rows per compacted file (default 2e6)")
    parser.add_argument("--min-age", type=non_negative_float_arg, default=60.0, metavar="SECONDS",
                        help="leave files younger than this alone (default 60): a live "
                             "consumer's newest, not yet committed batches stay separate")
    args = parser.parse_args(argv)
    if not args.min_age >= 0:
        raise UsageError(f"--min-age must be >= 0: {args.min_age}")
    if not transactions_dir(args.lake).is_dir():
        raise UsageError(f"--lake {args.lake}: no {TRANSACTIONS}/ folder there")
    t0 = time.perf_counter()
    r = compact(args.lake, args.min_files, args.target_rows, args.min_age)
    log.info("compacted %d files into %d (%s rows) in %d month folders; removed %d leftovers; "
             "%.1f s%s", r.files_in, r.files_out, f"{r.rows:,}", r.folders, r.leftovers_removed,
             time.perf_counter() - t0,
             f"; left {len(r.unreadable)} unreadable file(s) alone: {r.unreadable[0]}"
             if r.unreadable else "")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
