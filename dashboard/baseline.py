"""The history cache: per-user baselines and per-day totals of the history, computed once.

Aggregating 47M rows takes tens of seconds, far over a page refresh, so the results are kept
in ``<cache_dir>/history-<fingerprint>/{user_baseline,daily}.parquet``. The fingerprint covers
every history file's path, size and mtime, so a changed history builds a new cache (the old
ones are removed). Written to a temp folder, then renamed: never half a cache.

Build it ahead of time (else the page builds it on first load):

    .venv/bin/python -m dashboard.baseline            # HISTORY_DIR, DASHBOARD_CACHE_DIR
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dashboard import lake_queries
from fraudlake.atomic import naming, new_folders, remove_empty, temp_path
from fraudlake.cli import ArgumentParser, UsageError, check_disjoint, check_output_dir, run
from fraudlake.settings import Settings
from lake.layout import data_files, month_folders

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Settings.history_cache_dir


@dataclass(frozen=True)
class HistoryCache:
    """The cached history aggregates (empty frames when there is no history)."""

    key: str
    files: int
    baselines: pl.DataFrame  # lake_queries.BASELINE_SCHEMA, one row per user
    daily: pl.DataFrame  # lake_queries.SERIES_SCHEMA, one row per day


def empty_cache() -> HistoryCache:
    return HistoryCache("none", 0, pl.DataFrame(schema=lake_queries.BASELINE_SCHEMA),
                        pl.DataFrame(schema=lake_queries.SERIES_SCHEMA))


def history_key(history_dir: Path) -> tuple[str, list[Path]]:
    files = data_files(history_dir)
    return lake_queries.fingerprint(files), files


def load_or_build(history_dir: Path, cache_dir: Path,
                  log=lambda msg: None) -> HistoryCache:
    """The cache for the history as it is now: read it, or build and store it first."""
    key, files = history_key(history_dir)
    if not files:
        return empty_cache()
    folder = cache_dir / f"history-{key}"
    if not (folder / "daily.parquet").exists():
        log(f"building the history cache over {len(files)} files (once)…")
        build(files, folder)
        _remove_stale(cache_dir, keep=folder)
    return HistoryCache(key, len(files), pl.read_parquet(folder / "user_baseline.parquet"),
                        pl.read_parquet(folder / "daily.parquet"))


def build(files: Sequence[Path], folder: Path) -> None:
    """Aggregate ``files`` into ``folder`` atomically (temp folder + rename)."""
    con = lake_queries.connect()
    baselines = lake_queries.user_baselines(files, None, con=con).sort("user_id")
    daily = lake_queries.amount_series(files, "day", None, None, con=con)
    tmp = temp_path(folder)
    try:
        with naming(folder):
            tmp.mkdir(parents=True)
            baselines.write_parquet(tmp / "user_baseline.parquet")
            daily.write_parquet(tmp / "daily.parquet")
        if folder.exists():  # built meanwhile by another process: same content
            shutil.rmtree(tmp)
            return
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale(cache_dir: Path, keep: Path) -> None:
    for old in cache_dir.glob("history-*"):
        if old != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    p = ArgumentParser(prog="python -m dashboard.baseline",
                       description="Build the dashboard's cache of history aggregates.")
    p.add_argument("--history-dir", type=Path, default=settings.history_dir,
                   help="history root (env HISTORY_DIR; default storage/historical)")
    p.add_argument("--cache-dir", type=Path, default=settings.history_cache_dir,
                   help=f"cache folder (env DASHBOARD_CACHE_DIR; default {DEFAULT_CACHE_DIR})")
    args = p.parse_args(argv)
    history = args.history_dir
    if not history.is_dir():
        raise UsageError(f"history dir not found: {history}")
    if not any(data_files(month) for month in month_folders(history)):
        raise UsageError(f"history dir {history}: no year=YYYY/month=MM/*.parquet files")
    cache_dir = args.cache_dir
    check_output_dir(cache_dir, "--cache-dir")
    check_disjoint(cache_dir, [history], "--cache-dir")
    t0 = time.perf_counter()
    fresh = new_folders(cache_dir)
    try:
        cache = load_or_build(history, cache_dir, log=log.info)
    except BaseException:
        remove_empty(fresh)
        raise
    print(f"history cache {cache.key}: {cache.files} files, {cache.baselines.height} users, "
          f"{cache.daily.height} days ({time.perf_counter() - t0:.1f}s) in {cache_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
