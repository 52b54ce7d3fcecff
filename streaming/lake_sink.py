"""Lake sink: every decided event into hive-partitioned Parquet, atomic and replay-safe.

``LakeSink(root).write(df, topic, partition, first_offset, last_offset)`` splits a decided
micro-batch by event month into

    root/transactions/year=YYYY/month=MM/{topic}-p{partition}-o{first:020d}-{last:020d}.parquet

with exactly the lake v2 schema (``fraudlake.contract.LAKE_SCHEMA``: contract columns, then
``rule_set_id, score, flagged, rules_fired`` — the same whatever the rule set; per-rule,
evidence and provenance columns are dropped), rows sorted by ``(ts, transaction_id)``.

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

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from fraudlake.atomic import replacing
from fraudlake.contract import LAKE_SCHEMA, partition_dir

RANGES_KEY = "fraudlake.ranges"
_NAME = re.compile(r"^(?P<topic>.+)-p(?P<partition>\d+)-o(?P<first>\d+)-(?P<last>\d+)"
                   r"(?P<compacted>\.c)?\.parquet$")

Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One sink or compacted file and the offsets it covers in its folder."""

    path: Path
    topic: str
    partition: int
    first: int
    last: int
    compacted: bool


def file_name(topic: str, partition: int, first: int, last: int, compacted: bool = False) -> str:
    return f"{topic}-p{partition}-o{first:020d}-{last:020d}{'.c' if compacted else ''}.parquet"


def parse_name(path: Path) -> LakeFile | None:
    m = _NAME.match(path.name)
    if m is None:
        return None
    return LakeFile(path, m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]),
                    m["compacted"] is not None)


def folder_files(folder: Path) -> list[LakeFile]:
    """Every sink/compacted file in one month folder, by (topic, partition, first)."""
    if not folder.is_dir():
        return []
    found = [f for p in folder.iterdir() if (f := parse_name(p)) is not None]
    return sorted(found, key=lambda f: (f.topic, f.partition, f.first, f.last, f.compacted))


def file_ranges(f: LakeFile) -> list[Range]:
    """The offset ranges a file covers: its name for sink files, its metadata when compacted."""
    if not f.compacted:
        return [(f.first, f.last)]
    meta = pq.read_metadata(f.path).metadata or {}
    raw = meta.get(RANGES_KEY.encode())
    return [(a, b) for a, b in json.loads(raw)] if raw else [(f.first, f.last)]


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Sorted union; touching ranges (next first = last + 1) are joined."""
    out: list[Range] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(span: Range, covered: list[Range]) -> list[Range]:
    """The parts of ``span`` not in ``covered`` (which is merged/sorted)."""
    out: list[Range] = []
    lo, hi = span
    for a, b in covered:
        if b < lo or a > hi:
            continue
        if a > lo:
            out.append((lo, a - 1))
        lo = max(lo, b + 1)
        if lo > hi:
            return out
    out.append((lo, hi))
    return out


def drop_compacted_leftovers(files: list[LakeFile], covered_by_c: list[Range]) -> list[LakeFile]:
    """Delete sink files whose offsets a compacted file already covers (a compaction that
    crashed between its rename and deleting its inputs); return the files that remain."""
    keep = []
    for f in files:
        if not f.compacted and not subtract((f.first, f.last), covered_by_c):
            f.path.unlink(missing_ok=True)
        else:
            keep.append(f)
    return keep


def atomic_write(df: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write Parquet via a temp file in the same folder + fsync + os.replace + folder fsync."""
    with replacing(path, sync_dir=True) as tmp:
        df.write_parquet(tmp, metadata=metadata, statistics=True)


def to_lake_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Exactly LAKE_SCHEMA (missing optional columns as typed nulls), sorted by ts, id."""
    cols = [
        (pl.col(n).cast(t) if n != "ts" else pl.col(n).dt.convert_time_zone("UTC")
         .dt.cast_time_unit("us")) if n in df.columns else pl.lit(None, t).alias(n)
        for n, t in LAKE_SCHEMA.items()
    ]
    return df.select(cols).sort("ts", "transaction_id")


class LakeSink:
    """Writes decided micro-batches under ``root/transactions``; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.transactions = self.root / "transactions"
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
            atomic_write(to_lake_frame(part), exact)  # same offsets again: same name, rewritten
            return [exact]
        todo = subtract(span, merge_ranges([r for f in mine for r in ranges[f.path]]))
        if todo == [span]:
            atomic_write(to_lake_frame(part), exact)
            return [exact]
        if todo and "_offset" not in part.columns:
            raise ValueError(f"{folder}: offsets {span} partly written already; need _offset")
        written = []
        for a, b in todo:
            rows = part.filter(pl.col("_offset").is_between(a, b))
            if rows.height:
                path = folder / file_name(topic, partition, a, b)
                atomic_write(to_lake_frame(rows), path)
                written.append(path)
        return written
