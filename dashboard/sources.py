"""Flag sources: the page's questions over a ``flagstore`` reader, chosen by configuration.

A source wraps a ``flagstore.protocols.FlagReader`` (``flagstore.sqlite.SqliteFlagReader`` or
``flagstore.mongo.MongoFlagReader``: they hold the queries, bound parameters only) and answers
with ``dashboard.page_flags`` frames, newest first:

- ``recent(filter, limit)``: the latest flags matching the filter (the table);
- ``count(filter, cap)``: how many match, counting at most ``cap``;
- ``export(filter)``: every matching flag (the CSV download);
- ``matching(filter)``: every matching flag as a LazyFrame (the aggregates: whatever the
  range, never a window of the latest);
- ``detail(transaction_id)``: the stored flag as a dict (``evidence`` included when recorded).

Both hold the flags in the page process (``dashboard.flag_cache``): one cold load, then only
what is new — SQLite by ``rowid`` (``SqliteFlagSource`` here: rows are only appended; a store
that shrank, e.g. a demo re-run, is reloaded), MongoDB by ``flagged_at``
(``dashboard.cached_reader.MongoFlagSource``). Failures to read the store raise
``flagstore.protocols.FlagReadError`` with a one-line message for the page.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

import polars as pl

from dashboard import flag_cache
from dashboard.flag_cache import CacheConfig, Snapshot
from dashboard.page_flags import PAGE_COLUMNS, empty_page, flag_detail, page_frame
from flagstore.query import FlagFilter
from flagstore.sqlite import SqliteFlagReader
from fraudlake.settings import Settings


class FlagSource(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def notice(self) -> str | None:
        """One line the page shows about the store (missing, lagging), or None."""
        ...

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame: ...

    def count(self, f: FlagFilter, cap: int) -> int: ...

    def export(self, f: FlagFilter) -> pl.DataFrame: ...

    def matching(self, f: FlagFilter) -> pl.LazyFrame: ...

    def detail(self, transaction_id: str) -> dict | None: ...


class SqliteFlagSource:
    """Reads the embedded store (``flagstore.sqlite``) read-only, through its reader.

    A missing file reads as no flags yet (``notice`` says so); a file that is not a SQLite
    flag store raises ``FlagReadError``. With a cache the flags are held in the process and
    synced inline by ``rowid``; without (the default here), every call queries the store.
    """

    COUNT_SECONDS = 30.0  # how often a full count checks for deleted rows (max(rowid): always)

    def __init__(self, path: Path, cache: CacheConfig | None = None) -> None:
        self.path = Path(path)
        self.reader = SqliteFlagReader(self.path, columns=PAGE_COLUMNS)
        self.label = self.reader.label
        self.cache = cache if cache is None or cache.max_rows > 0 else None
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._rowid = 0  # newest rowid held
        self._rows = 0  # rows the store had at the last sync
        self._synced = 0.0
        self._counted = 0.0  # time.monotonic() of the last full row count (shrink check)

    @property
    def notice(self) -> str | None:
        if not self.path.exists():
            return (f"no flag store at {self.path} (not created yet, moved or renamed): "
                    "no flags to show; run streaming.demo or check LOCAL_FLAGS_PATH")
        return None

    # --- the page's questions ----------------------------------------------------------------

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        if self.cache is not None:
            return flag_cache.view(self.snapshot(), f, limit)
        return page_frame(self.reader.recent(f, limit))

    def count(self, f: FlagFilter, cap: int) -> int:
        if self.cache is not None:
            return min(flag_cache.count(self.snapshot(), f), int(cap))
        return self.reader.count(f, cap)

    def export(self, f: FlagFilter) -> pl.DataFrame:
        if self.cache is not None:
            return flag_cache.view(self.snapshot(), f)
        return page_frame(self.reader.export(f))

    def matching(self, f: FlagFilter) -> pl.LazyFrame:
        if self.cache is not None:
            return flag_cache.lazy_matching(self.snapshot(), f)
        return self.export(f).lazy()

    def detail(self, transaction_id: str) -> dict | None:
        return flag_detail(SqliteFlagReader(self.path), transaction_id)

    # --- the cache ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The held flags; synced when older than ``sync_seconds`` (new rowids only)."""
        cfg = self.cache
        assert cfg is not None
        with self._lock:
            if self._snap is None or time.monotonic() - self._synced >= cfg.sync_seconds:
                self._snap = self._sync(self._snap)
                self._synced = time.monotonic()
            return self._snap

    def _sync(self, snap: Snapshot | None) -> Snapshot:
        """New rows by rowid (the store only appends); a full count every ``COUNT_SECONDS``
        notices deleted rows (a demo re-run) and reloads. Each read is one transaction."""
        cfg = self.cache
        assert cfg is not None
        check = snap is not None and time.monotonic() - self._counted >= self.COUNT_SECONDS
        got = self.reader.appended(self._rowid if snap is not None else 0, count=check)
        if got is not None and snap is not None:
            held = self._rows + sum(frame.height for frame in got.frames)
            if got.top < self._rowid or (got.rows is not None and got.rows != held):
                snap = None  # the store shrank or rows were deleted: reload
                got = self.reader.appended(0)
        if check:
            self._counted = time.monotonic()
        if got is None:
            self._rowid = self._rows = 0
            return flag_cache.cold([], empty_page(), cfg.max_rows, cfg.overlap)
        frames = [page_frame(frame) for frame in got.frames]
        if snap is None:
            self._rows = sum(frame.height for frame in frames)
            self._counted = time.monotonic()
            snap = flag_cache.cold(frames, empty_page(), cfg.max_rows, cfg.overlap)
        elif got.top > self._rowid:
            delta = pl.concat([empty_page(), *frames])
            self._rows += delta.height
            snap = flag_cache.merge(snap, delta, cfg.max_rows, cfg.overlap)
        self._rowid = got.top
        return snap


def open_source(settings: Settings, cache: CacheConfig | None = None) -> FlagSource:
    """MongoDB when ``MONGO_URI`` is set (cache: ``CacheConfig.from_env()`` unless given),
    else the embedded SQLite store."""
    if settings.mongo_uri:
        from dashboard.cached_reader import MongoFlagSource  # pymongo only when used

        return MongoFlagSource(settings.mongo_uri, settings.mongo_db, settings.mongo_collection,
                               cache=CacheConfig.from_env() if cache is None else cache)
    return SqliteFlagSource(settings.local_flags_path,
                            cache=CacheConfig.from_env() if cache is None else cache)
