"""Export new flags to Parquet (``storage/filtered/``) and CSV (``storage/exported/``).

    python -m lake.export [--source mongo|local] [--filtered-dir storage/filtered]
        [--exported-dir storage/exported] [--lookback-seconds 180]

Source: MongoDB (``MONGO_URI``, ``MONGO_DB``, ``MONGO_COLLECTION``) or, without ``MONGO_URI``,
the embedded SQLite store (``LOCAL_FLAGS_PATH``). Each run writes one pair of files with the
same stem, ``flags-<UTC export time>.parquet`` / ``.csv``, so names sort by time (one pair per
``--chunk-rows`` flags, so a large first export stays within memory).

Incremental, by a high-water mark kept in ``<filtered-dir>/_export_state.json``: the largest
``flagged_at`` exported (W) and the ids exported with ``flagged_at >= W - lookback``. A run
reads ``flagged_at >= W - lookback`` (sorted by ``flagged_at, transaction_id``) and drops those
ids. So rows sharing ``flagged_at`` with the mark are neither skipped nor duplicated, and a flag
committed late with a ``flagged_at`` up to ``lookback`` before W (a slower concurrent writer) is
still exported; one later than that would be missed. The default, 180 s, covers the MongoDB
sink's 120 s retry window (``flagged_at`` is taken before the insert is retried). The state holds
the ids flagged in the last ``lookback`` before the mark: small, but it grows with the flag rate.
``flagged_at`` is set once, on insert; a replayed flag is not exported again.

Idempotent and crash-safe: nothing new → nothing written; files are written to temp names and
renamed (Parquet first, then CSV), and the state is written (atomically) only after both. A
Parquet file newer than the state's ``last_file`` is the trace of a crash after the rename: the
next run folds it into the state (and rewrites its CSV if missing) instead of exporting it again.
Deleting the state file rebuilds it from the Parquet files present. One export at a time per
``--filtered-dir`` (a lock file).
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import polars as pl
from pymongo.errors import ConfigurationError
from tqdm import tqdm

from flagstore.mongo import MongoFlagReader
from flagstore.protocols import FlagReader
from flagstore.schema import TS_TEXT, ts_text
from flagstore.sqlite import SqliteFlagReader
from fraudlake.atomic import new_folders, remove_empty, replacing
from fraudlake.cli import (
    ArgumentParser,
    EnvironmentFailure,
    UsageError,
    check_disjoint,
    check_output_dir,
    float_range_arg,
    positive_count_arg,
    run,
)
from fraudlake.settings import Settings, check_mongo_uri

STATE_NAME = "_export_state.json"
LOCK_NAME = ".export.lock"
STAMP = "%Y%m%dT%H%M%S%fZ"
DEFAULT_LOOKBACK = timedelta(seconds=180)
MAX_LOOKBACK_SECONDS = 7 * 86400  # the state keeps every id flagged within the lookback
DEFAULT_CHUNK = 250_000  # flags per file pair (bounds memory on a first, large export)


@dataclass(frozen=True)
class ExportState:
    source: str | None = None
    watermark: datetime | None = None  # largest flagged_at exported
    recent: tuple[tuple[str, str], ...] = ()  # (flagged_at ISO, transaction_id) near the mark
    last_file: str | None = None
    rows: int = 0

    def since(self, lookback: timedelta) -> datetime | None:
        return None if self.watermark is None else self.watermark - lookback


@dataclass(frozen=True)
class ExportResult:
    rows: int
    parquet: tuple[Path, ...]  # one file pair per chunk of new flags, in time order
    csv: tuple[Path, ...]
    recovered: int  # files folded in from an interrupted run


def new_rows(frame: pl.DataFrame, state: ExportState) -> pl.DataFrame:
    """Rows of ``frame`` not exported yet (pure): drops ids recorded near the watermark."""
    seen = [tid for _, tid in state.recent]
    return frame.filter(~pl.col("transaction_id").is_in(seen)) if seen else frame


def advance(state: ExportState, frame: pl.DataFrame, lookback: timedelta,
            file_name: str) -> ExportState:
    """The state after ``frame`` was exported as ``file_name`` (pure)."""
    if frame.is_empty():
        return replace(state, last_file=max(file_name, state.last_file or ""))
    top = cast(datetime, frame["flagged_at"].max())
    mark = top if state.watermark is None else max(state.watermark, top)
    pairs = [(ts_text(ts), tid) for ts, tid in
             frame.select("flagged_at", "transaction_id").iter_rows()]
    floor = ts_text(mark - lookback)
    recent = tuple(sorted(p for p in {*state.recent, *pairs} if p[0] >= floor))
    return replace(state, watermark=mark, recent=recent, rows=state.rows + frame.height,
                   last_file=max(file_name, state.last_file or ""))


def load_state(path: Path) -> ExportState:
    if not path.exists():
        return ExportState()
    try:
        d = json.loads(path.read_text())
        mark = datetime.fromisoformat(d["watermark"]) if d.get("watermark") else None
        return ExportState(d.get("source"), mark, tuple(tuple(p) for p in d.get("recent", [])),
                           d.get("last_file"), int(d.get("rows", 0)))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"export state {path} is unreadable: {exc}") from exc


def save_state(path: Path, state: ExportState) -> None:
    data = {"source": state.source, "rows": state.rows, "last_file": state.last_file,
            "watermark": ts_text(state.watermark) if state.watermark else None,
            "recent": [list(p) for p in state.recent]}
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def _atomic(path: Path, write) -> None:
    with replacing(path) as tmp:
        write(tmp)


def csv_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV holds no lists: ``rules_fired`` as comma-separated ids (pure)."""
    return frame.with_columns(pl.col("rules_fired").list.join(","))


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: csv_frame(frame).write_csv(tmp, datetime_format=TS_TEXT))


def write_pair(frame: pl.DataFrame, parquet: Path, csv: Path) -> None:
    _atomic(parquet, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True))
    write_csv(frame, csv)


def next_stem(state: ExportState, now: datetime) -> str:
    stem = f"flags-{now.astimezone(UTC).strftime(STAMP)}"
    if state.last_file and stem + ".parquet" <= state.last_file:  # clock went back: keep order
        last = datetime.strptime(state.last_file[6:-8], STAMP).replace(tzinfo=UTC)
        stem = f"flags-{(last + timedelta(microseconds=1)).strftime(STAMP)}"
    return stem


def recover(state: ExportState, filtered: Path, exported: Path,
            lookback: timedelta) -> tuple[ExportState, int]:
    """Fold Parquet files newer than ``last_file`` (an interrupted run) into the state."""
    orphans = sorted(p for p in filtered.glob("flags-*.parquet")
                     if state.last_file is None or p.name > state.last_file)
    for path in orphans:
        frame = pl.read_parquet(path)
        csv = exported / f"{path.stem}.csv"
        if not csv.exists():
            write_csv(frame, csv)
        state = advance(state, frame, lookback, path.name)
    return state, len(orphans)


@contextmanager
def export_lock(filtered: Path) -> Iterator[None]:
    with open(filtered / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UsageError(f"another export is running in {filtered}") from exc
        yield


def export_flags(source: FlagReader, filtered: Path, exported: Path,
                 lookback: timedelta = DEFAULT_LOOKBACK, chunk_rows: int = DEFAULT_CHUNK,
                 progress: bool = False) -> ExportResult:
    """Export the flags ``source`` holds that no earlier export wrote (see the module doc)."""
    filtered.mkdir(parents=True, exist_ok=True)
    exported.mkdir(parents=True, exist_ok=True)
    state_path = filtered / STATE_NAME
    written: list[tuple[Path, Path]] = []
    rows = 0
    with export_lock(filtered):
        state = load_state(state_path)
        if state.source not in (None, source.key):
            raise UsageError(f"{filtered} holds exports of {state.source}, not {source.key}; "
                             "use another --filtered-dir")
        state, recovered = recover(replace(state, source=source.key), filtered, exported,
                                   lookback)
        if recovered:
            save_state(state_path, state)
        with tqdm(unit="flags", file=sys.stderr, desc="export",
                  disable=None if progress else True) as bar:
            for chunk in source.read_since(state.since(lookback), chunk_rows):
                frame = new_rows(chunk, state)
                if frame.is_empty():
                    continue
                stem = next_stem(state, datetime.now(UTC))
                pair = (filtered / f"{stem}.parquet", exported / f"{stem}.csv")
                write_pair(frame, *pair)
                state = advance(state, frame, lookback, pair[0].name)
                save_state(state_path, state)  # after the files: a crash re-exports nothing
                written.append(pair)
                rows += frame.height
                bar.update(frame.height)
    return ExportResult(rows, tuple(p for p, _ in written), tuple(c for _, c in written),
                        recovered)


def open_source(kind: str | None, settings: Settings) -> FlagReader:
    kind = kind or ("mongo" if settings.mongo_uri else "local")
    if kind == "mongo":
        if not settings.mongo_uri:
            raise UsageError("--source mongo needs MONGO_URI")
        try:
            return MongoFlagReader(settings.mongo_uri, settings.mongo_db,
                                   settings.mongo_collection, timeout_ms=10_000)
        except ConfigurationError as exc:
            raise UsageError(f"bad MONGO_URI: {exc}") from exc
    if not settings.local_flags_path.is_file():
        raise UsageError(f"local flag store not found: {settings.local_flags_path} (set "
                         "LOCAL_FLAGS_PATH or MONGO_URI)")
    _check_sqlite_store(settings.local_flags_path)
    return SqliteFlagReader(settings.local_flags_path)


def _check_sqlite_store(path: Path) -> None:
    """UsageError unless ``path`` is a SQLite database with a ``flags`` table (checked before
    any output is created)."""
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            con.execute("SELECT * FROM flags LIMIT 0")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read flags from {path}: {exc}") from None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m lake.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=("mongo", "local"), default=None,
                   help="mongo: MONGO_URI/MONGO_DB/MONGO_COLLECTION; local: the SQLite store at "
                        "LOCAL_FLAGS_PATH (default: mongo when MONGO_URI is set, else local)")
    p.add_argument("--filtered-dir", type=Path, default=Path("storage/filtered"),
                   help="Parquet output folder, also holds the export state "
                        "(default: storage/filtered)")
    p.add_argument("--exported-dir", type=Path, default=Path("storage/exported"),
                   help="CSV output folder (default: storage/exported)")
    p.add_argument("--lookback-seconds", type=float_range_arg(0, MAX_LOOKBACK_SECONDS),
                   default=DEFAULT_LOOKBACK.total_seconds(),
                   help="re-read this far below the high-water mark to catch flags committed "
                        "late by concurrent or retrying writers (default: %(default).0f; "
                        f"at most {MAX_LOOKBACK_SECONDS})")
    p.add_argument("--chunk-rows", type=positive_count_arg, default=DEFAULT_CHUNK,
                   help=f"at most this many flags per file pair (default: {DEFAULT_CHUNK:,})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_mongo_uri()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_output_dir(args.filtered_dir, "--filtered-dir")
    check_output_dir(args.exported_dir, "--exported-dir")
    settings = Settings.from_env()
    source = open_source(args.source, settings)
    if isinstance(source, SqliteFlagReader):
        for out, flag in ((args.filtered_dir, "--filtered-dir"),
                          (args.exported_dir, "--exported-dir")):
            check_disjoint(out, [source.path], flag)
    fresh = new_folders(args.filtered_dir, args.exported_dir)
    try:
        res = export_flags(source, args.filtered_dir, args.exported_dir,
                           timedelta(seconds=args.lookback_seconds), args.chunk_rows,
                           progress=not args.no_progress)
    except (UsageError, EnvironmentFailure, OSError):
        remove_empty(fresh, (LOCK_NAME,))
        raise  # one line, exit 2 / the path and the OS error, exit 1 (fraudlake.cli.run)
    except Exception as exc:  # noqa: BLE001 - a server failure: one line, exit 1
        remove_empty(fresh, (LOCK_NAME,))
        where = "MongoDB" if isinstance(source, MongoFlagReader) else getattr(source, "path", "")
        raise EnvironmentFailure(f"cannot read flags from {where}: {type(exc).__name__}: "
                                 f"{(str(exc).splitlines() or [''])[0]}") from exc
    finally:
        source.close()
    if res.recovered:
        print(f"recovered {res.recovered} file(s) from an interrupted export")
    names = sorted({res.parquet[0].stem, res.parquet[-1].stem}) if res.rows else []
    where = f" in {len(res.parquet)} file pair(s): {'…'.join(names)}" if res.rows else ""
    print(f"exported {res.rows} new flag(s){where} (Parquet: {args.filtered_dir}, "
          f"CSV: {args.exported_dir})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
