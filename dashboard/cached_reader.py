"""The dashboard's flag reader: MongoDB's flags held in the page, or the SQLite store.

``open_flag_reader(settings)``: a ``CachedMongoReader`` when ``MONGO_URI`` is set, else
``flagstore.sqlite.SqliteFlagReader``. Both are ``flagstore.protocols.FlagReader``s.

``CachedMongoReader`` holds the flags in this process (``dashboard.flag_cache``) on top of
``flagstore.mongo.MongoFlagReader``: one cold load, then syncs that read only the documents
stamped since the last one (a range on ``flagged_at``, indexed on MongoDB), in a background
thread or inline; reads filter in Polars and go to the store only for flags older than what is
held. ``cache=None`` (or ``max_rows=0``) queries the store on every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import polars as pl

from dashboard import flag_cache
from dashboard.flag_cache import CacheConfig, Snapshot
from flagstore.mongo import MongoFlagReader, one_line
from flagstore.protocols import FlagReader, FlagReadError
from flagstore.query import FlagFilter
from flagstore.schema import empty_flags
from flagstore.sqlite import SqliteFlagReader
from fraudlake.settings import Settings

DEFAULT_CACHE = CacheConfig()
#: What the page shows of a flag (the rest is not fetched into the held frame: memory).
PAGE_COLUMNS: tuple[str, ...] = (
    "transaction_id", "ts", "user_id", "amount", "amount_cents", "currency", "merchant_name",
    "category", "channel", "city", "country", "rule_set_id", "rules_fired", "score",
    "is_fraud", "fraud_scenario", "flagged_at")


def open_flag_reader(settings: Settings, cache: CacheConfig | None = None) -> FlagReader:
    """MongoDB when ``MONGO_URI`` is set (cache: ``CacheConfig.from_env()`` unless given),
    else the embedded SQLite store."""
    if settings.mongo_uri:
        return CachedMongoReader(settings.mongo_uri, settings.mongo_db, settings.mongo_collection,
                                 cache=CacheConfig.from_env() if cache is None else cache)
    return SqliteFlagReader(settings.local_flags_path)


class CachedMongoReader:
    """Reads ``fraud.flags``; thread-safe (one instance serves every page session)."""

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags",
                 timeout_ms: int = 2_000, cache: CacheConfig | None = DEFAULT_CACHE) -> None:
        self.store = MongoFlagReader(uri, db, collection, timeout_ms=timeout_ms,
                                     columns=PAGE_COLUMNS)
        self.collection = self.store.collection
        self.name = self.store.label
        self.key = self.store.key
        self.cache = cache if cache is not None and cache.max_rows > 0 else None
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()
        self._synced = 0.0  # time.monotonic() of the last successful load / sync
        self._last_read = 0.0
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def label(self) -> str:
        """What the page shows as the flags' origin; says so when the held flags lag."""
        if self.cache is None or self._snap is None:
            return self.name
        age = time.monotonic() - self._synced
        if age <= 3 * self.cache.sync_seconds + 2:
            return self.name
        return f"{self.name} (held in the page, last synced {age:.0f} s ago)"

    def _guard(self, what: str, action: Any) -> Any:
        return self.store.guard(what, action)

    # --- the store, queried directly -------------------------------------------------------

    def _find(self, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
        return self.store.recent(f, limit) if limit else self.store.export(f)

    def _count(self, f: FlagFilter, cap: int) -> int:
        return self.store.count(f, cap)

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        return self.store.read_since(since, chunk_rows)

    # --- the page's three questions --------------------------------------------------------

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        if self.cache is None:
            return self._find(f, limit)
        snap = self.snapshot()
        got = flag_cache.view(snap, f, limit)
        if got.height >= limit or flag_cache.covers(snap, f):
            return got
        return pl.concat([got, self._find(flag_cache.older(f, snap), limit - got.height)])

    def count(self, f: FlagFilter, cap: int) -> int:
        if self.cache is None:
            return self._count(f, cap)
        snap = self.snapshot()
        n = min(flag_cache.count(snap, f), int(cap))
        if n >= cap or flag_cache.covers(snap, f):
            return n
        return n + self._count(flag_cache.older(f, snap), int(cap) - n)

    def export(self, f: FlagFilter) -> pl.DataFrame:
        if self.cache is None:
            return self._find(f)
        snap = self.snapshot()
        got = flag_cache.view(snap, f)
        if flag_cache.covers(snap, f):
            return got
        return pl.concat([got, self._find(flag_cache.older(f, snap))])

    # --- the cache -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The held flags: loaded on first use, then synced (inline or in the background)."""
        cfg = self.cache
        assert cfg is not None
        self._last_read = time.monotonic()
        with self._lock:
            if self._snap is None:
                self._snap = self._guard("find", self._cold)
                self._synced = time.monotonic()
            elif not cfg.background and time.monotonic() - self._synced >= cfg.sync_seconds:
                self._snap = self._guard("sync", lambda: self._merged(self._snap))
                self._synced = time.monotonic()
            snap = self._snap
            if cfg.background and not self._closed.is_set() and (
                    self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._sync_loop, daemon=True,
                                                name=f"flag sync {self.name}")
                self._thread.start()
        age = time.monotonic() - self._synced
        if self._error is not None and age > cfg.stale_seconds:
            raise FlagReadError(f"{self.name}: sync failing for {age:.0f}s: {self._error}")
        return snap

    def sync(self) -> Snapshot:
        """Sync once now, whatever the mode (tests, bench); raises FlagReadError."""
        self.snapshot()
        with self._lock:
            self._snap = self._guard("sync", lambda: self._merged(self._snap))
            self._synced = time.monotonic()
            return self._snap

    def _cold(self) -> Snapshot:
        cfg = self.cache
        assert cfg is not None
        self._ensure_index()
        info = self.store.client.admin.command("buildInfo")
        if "ferretdbVersion" in info:  # FerretDB would sort in memory: stream everything
            frames = self.store.find({})
        else:  # the newest max_rows + 1, served by the ts_desc index
            frames = self.store.find({}, sort=[("ts", -1)], limit=cfg.max_rows + 1)
        return flag_cache.cold(frames, empty_flags(), cfg.max_rows, cfg.overlap)

    def _ensure_index(self) -> None:
        """The syncs' range on flagged_at needs an index (the sink creates it too); a page
        without write rights goes on without it."""
        from pymongo.errors import OperationFailure

        try:
            if "flagged_at" not in self.collection.index_information():
                self.collection.create_index([("flagged_at", -1)], name="flagged_at")
        except OperationFailure:
            pass

    def _merged(self, snap: Snapshot | None) -> Snapshot:
        cfg = self.cache
        assert cfg is not None and snap is not None
        query = {} if snap.watermark is None else {
            "flagged_at": {"$gte": snap.watermark - cfg.overlap}}
        delta = pl.concat([empty_flags(), *self.store.find(query)])
        return flag_cache.merge(snap, delta, cfg.max_rows, cfg.overlap)

    def _sync_loop(self) -> None:
        from pymongo.errors import PyMongoError

        cfg = self.cache
        assert cfg is not None
        idle = max(60.0, 10 * cfg.sync_seconds)  # nobody reads: stop; the next read restarts
        while not self._closed.wait(cfg.sync_seconds):
            if time.monotonic() - self._last_read > idle:
                return
            base = self._snap
            try:
                snap = self._merged(base)  # outside the lock: reads go on meanwhile
            except PyMongoError as exc:
                self._error = one_line(exc)
                continue
            with self._lock:
                if self._snap is base:  # else an inline sync() got there first
                    self._snap = snap
                self._synced = time.monotonic()
                self._error = None

    def close(self) -> None:
        self._closed.set()
        self.store.close()

