"""The lake's layout: every folder name, file name and "is this data?" rule, in one place.

::

    storage/historical/year=YYYY/month=MM/part-*.parquet            batch history
    storage/lake/transactions/year=YYYY/month=MM/
        {topic}-p{partition}-o{first:020d}-{last:020d}.parquet      one sink write
        {topic}-p{partition}-o{first:020d}-{last:020d}.c.parquet    a compacted file
        .{name}.{8 hex}.tmp                                         a write in progress

- **Month folders** are ``year=YYYY/month=MM`` (zero-padded; DuckDB reads them back with
  ``HIVE_TYPES``, Athena's projection with ``digits=2``).
- **Sink file names** say which offsets of one Kafka topic partition the file covers in its
  folder; a compacted file lists its exact covered ranges in the Parquet key-value metadata
  ``fraudlake.ranges`` (``RANGES_KEY``) — so a replay rewrites, never duplicates.
- **Data files** are ``*.parquet`` files none of whose path parts (below the root searched)
  starts with ``.`` or ``_`` (``is_data_file``): temp files of atomic writes
  (``fraudlake.atomic.temp_path``) are hidden, and so are Spark/Hive ``_SUCCESS``/``_tmp``.
- **Remote keys** (S3, Athena, Trino): a local folder syncs to ``<prefix>/<folder name>/…``
  (``remote_name``), so ``storage/historical`` → ``historical/`` and ``storage/lake`` →
  ``lake/transactions/`` (``HISTORY_REMOTE``, ``LIVE_REMOTE``).
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import polars as pl
import pyarrow.parquet as pq

from fraudlake.atomic import TEMP_GLOB, replacing, temp_target
from fraudlake.contract import LAKE_SCHEMA, SHADOW_SCHEMA
from fraudlake.errors import InputError

HISTORY_NAME = "historical"  #: the history's folder (storage/historical) and remote prefix
LAKE_NAME = "lake"  #: the live lake's folder (storage/lake) and remote prefix
TRANSACTIONS = "transactions"  #: the live events' table folder below the lake folder
HISTORY_REMOTE: tuple[str, ...] = (HISTORY_NAME,)
LIVE_REMOTE: tuple[str, ...] = (LAKE_NAME, TRANSACTIONS)

MONTH_GLOB = "year=*/month=*"
DATA_SUFFIX = ".parquet"
RANGES_KEY = "fraudlake.ranges"
#: Hive partition columns (folder order) and the types they are read back with.
PARTITION_COLUMNS: tuple[str, ...] = ("year", "month")
HIVE_TYPES: dict[str, str] = {"year": "INTEGER", "month": "INTEGER"}

_MONTH = re.compile(r"(?:^|/)year=(\d{4})/month=(\d{1,2})(?:/|$)")
_NAME = re.compile(r"^(?P<topic>.+)-p(?P<partition>\d+)-o(?P<first>\d+)-(?P<last>\d+)"
                   r"(?P<compacted>\.c)?\.parquet$")
_GLOB_CHARS = re.compile(r"[*?\[]")

Range = tuple[int, int]


class NoDataError(InputError):
    """A path, folder or glob names no lake data."""


# --- folders ---------------------------------------------------------------------------------

def transactions_dir(lake: Path) -> Path:
    """The live events' folder below a lake folder (``storage/lake/transactions``)."""
    return Path(lake) / TRANSACTIONS


def partition_dir(year: int, month: int) -> str:
    """The hive folder of one month, e.g. ``year=2024/month=03``."""
    return f"year={year:04d}/month={month:02d}"


def month_of(path: PurePath | str) -> tuple[int, int] | None:
    """(year, month) of the ``year=/month=`` folder a path lies in, if any."""
    m = _MONTH.search(PurePath(path).as_posix())
    return (int(m[1]), int(m[2])) if m else None


def month_folders(root: Path) -> list[Path]:
    """Every ``year=*/month=*`` folder directly below ``root``, sorted."""
    return sorted(p for p in Path(root).glob(MONTH_GLOB) if p.is_dir())


def remote_name(source: Path) -> str:
    """The remote prefix a local folder syncs to: its own name (``storage/lake`` → ``lake``)."""
    return Path(source).name


# --- which files are data --------------------------------------------------------------------

def is_hidden(name: str) -> bool:
    """A name writers use for unfinished or bookkeeping files (``.x``, ``_x``)."""
    return name.startswith((".", "_"))


def is_data_file(rel: PurePath) -> bool:
    """The one rule: a Parquet file with no hidden part in its path below the searched root."""
    return rel.name.endswith(DATA_SUFFIX) and not any(is_hidden(p) for p in rel.parts)


def data_files(root: Path) -> list[Path]:
    """Every data file below ``root`` (recursive), sorted; [] when ``root`` is no folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(f"*{DATA_SUFFIX}")
                  if is_data_file(p.relative_to(root)) and p.is_file())


def resolve_files(spec: str, what: str = "--input") -> list[Path]:
    """The data files named by a file, a folder (recursive) or a glob (a matched folder counts
    with everything below it); sorted. ``NoDataError`` (naming ``what``) when there are none."""
    if _GLOB_CHARS.search(spec):
        found: list[Path] = []
        for match in map(Path, glob.glob(spec, recursive=True)):
            if match.is_dir():
                found += data_files(match)
            elif match.is_file() and not is_hidden(match.name):
                found.append(match)
        if not found:
            raise NoDataError(f"no files match {what} {spec!r}")
        return sorted(dict.fromkeys(found), key=str)
    path = Path(spec)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NoDataError(f"{what} not found: {spec}")
    files = data_files(path)
    if not files:
        raise NoDataError(f"no .parquet files under {what} {spec!r}")
    return files


# --- sink and compacted file names -----------------------------------------------------------

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


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def partition_files(transactions: Path, topic: str, partition: int) -> list[LakeFile]:
    """Every lake file of one topic partition (any month), by first offset."""
    pattern = f"{MONTH_GLOB}/{_glob_escape(topic)}-p{partition}-o*"
    found = [f for p in Path(transactions).glob(pattern)
             if (f := parse_name(p)) is not None and (f.topic, f.partition) == (topic, partition)]
    return sorted(found, key=lambda f: (f.first, f.last, str(f.path)))


def partition_temp_files(transactions: Path, topic: str, partition: int) -> list[Path]:
    """Temp files of unfinished sink writes of one topic partition (compaction's are not)."""
    pattern = f"{MONTH_GLOB}/.{_glob_escape(topic)}-p{partition}-o*.tmp"
    found = []
    for path in Path(transactions).glob(pattern):
        target = temp_target(path)
        f = parse_name(target) if target else None
        if f is not None and (f.topic, f.partition) == (topic, partition) and not f.compacted:
            found.append(path)
    return sorted(found)


def temp_files(folder: Path) -> list[Path]:
    """Every temp file of an atomic write in one folder."""
    return sorted(folder.glob(TEMP_GLOB))


# --- offset ranges ---------------------------------------------------------------------------

def file_ranges(f: LakeFile) -> list[Range]:
    """The offset ranges a file covers: its name for sink files, its metadata when compacted."""
    if not f.compacted:
        return [(f.first, f.last)]
    meta = pq.read_metadata(f.path).metadata or {}
    raw = meta.get(RANGES_KEY.encode())
    return [(a, b) for a, b in json.loads(raw)] if raw else [(f.first, f.last)]


def ranges_metadata(ranges: Sequence[Range]) -> dict[str, str]:
    """The Parquet key-value metadata of a compacted file covering ``ranges``."""
    return {RANGES_KEY: "[" + ",".join(f"[{a},{b}]" for a, b in ranges) + "]"}


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


# --- writing ---------------------------------------------------------------------------------

def to_lake_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Exactly LAKE_SCHEMA (missing optional columns as typed nulls), plus SHADOW_SCHEMA when
    ``df`` has a shadow column, sorted by ts, id."""
    schema = ({**LAKE_SCHEMA, **SHADOW_SCHEMA} if any(c in df.columns for c in SHADOW_SCHEMA)
              else LAKE_SCHEMA)
    cols = [
        (pl.col(n).cast(t) if n != "ts" else pl.col(n).dt.convert_time_zone("UTC")
         .dt.cast_time_unit("us")) if n in df.columns else pl.lit(None, t).alias(n)
        for n, t in schema.items()
    ]
    return df.select(cols).sort("ts", "transaction_id")


def write_lake_file(df: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write Parquet via a temp file in the same folder + fsync + os.replace + folder fsync."""
    with replacing(path, sync_dir=True) as tmp:
        df.write_parquet(tmp, metadata=metadata, statistics=True)
