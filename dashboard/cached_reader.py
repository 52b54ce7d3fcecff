"""The MongoDB flag source (MongoDB or FerretDB), with the page's in-process flag cache.

It reads through ``flagstore.mongo.MongoFlagReader`` (the queries, ``FLAG_SCHEMA`` frames).
With a cache (the default), the flags live in this process (``dashboard.flag_cache``): one
cold load, then syncs that read only the documents stamped since the last one (a range on
``flagged_at``, indexed on MongoDB), in a background thread or inline; reads filter in
Polars and go to the store only for flags older than what is held. ``cache=None`` (or
``max_rows=0``) queries the store on every call: find/sort/limit and count_documents.
See ``dashboard.sources`` for the questions every source answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import polars as pl
from pymongo.errors import OperationFailure, PyMongoError

from dashboard import flag_cache
from dashboard.flag_cache import CacheConfig, Snapshot
from dashboard.page_flags import PAGE_COLUMNS, empty_page, flag_detail, page_frame
from flagstore.mongo import MongoFlagReader, one_line
from flagstore.protocols import FlagReadError
from flagstore.query import FlagFilter

DEFAULT_CACHE = CacheConfig()


class MongoFlagSource:
    """Reads ``fraud.flags``; thread-safe (one instance serves every page session)."""

    notice: str | None = None

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags",
                 timeout_ms: int = 2_000, cache: CacheConfig | None = DEFAULT_CACHE) -> None:
        self.reader = MongoFlagReader(uri, db, collection, timeout_ms=timeout_ms,
                                      columns=PAGE_COLUMNS)
        self._whole: MongoFlagReader | None = None  # every column, for ``detail``
        self._store = (uri, db, collection, timeout_ms)
        self.name = self.reader.label
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

    # --- the store, queried directly -------------------------------------------------------

    def _find(self, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
        if limit:
            return page_frame(self.reader.recent(f, limit))
        return page_frame(self.reader.export(f))

    def _count(self, f: FlagFilter, cap: int) -> int:
        return self.reader.count(f, cap)

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

    def matching(self, f: FlagFilter) -> pl.LazyFrame:
        if self.cache is None:
            return self._find(f).lazy()
        snap = self.snapshot()
        held = flag_cache.lazy_matching(snap, f)
        if flag_cache.covers(snap, f):
            return held
        return pl.concat([self._find(flag_cache.older(f, snap)).reverse().lazy(), held])

    def detail(self, transaction_id: str) -> dict | None:
        """The stored flag, every field (evidence included)."""
        if self._whole is None:
            uri, db, collection, timeout_ms = self._store
            self._whole = MongoFlagReader(uri, db, collection, timeout_ms=timeout_ms)
        return flag_detail(self._whole, transaction_id)

    # --- the cache -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The held flags: loaded on first use, then synced (inline or in the background)."""
        cfg = self.cache
        assert cfg is not None
        self._last_read = time.monotonic()
        with self._lock:
            if self._snap is None:
                self._snap = self.reader.guard("find", self._cold)
                self._synced = time.monotonic()
            elif not cfg.background and time.monotonic() - self._synced >= cfg.sync_seconds:
                self._snap = self.reader.guard("sync", lambda: self._merged(self._snap))
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
            self._snap = self.reader.guard("sync", lambda: self._merged(self._snap))
            self._synced = time.monotonic()
            return self._snap

    def _cold(self) -> Snapshot:
        cfg = self.cache
        assert cfg is not None
        self._ensure_index()
        info = self.reader.client.admin.command("buildInfo")
        if "ferretdbVersion" in info:  # FerretDB would sort in memory: stream everything
            found = self.reader.find({})
        else:  # the newest max_rows + 1, served by the ts_desc index
            found = self.reader.find({}, sort=[("ts", -1)], limit=cfg.max_rows + 1)
        return flag_cache.cold(_page(found), empty_page(), cfg.max_rows, cfg.overlap)

    def _ensure_index(self) -> None:
        """The syncs' range on flagged_at needs an index (the sink creates it too); a page
        without write rights goes on without it."""
        collection = self.reader.collection
        try:
            if "flagged_at" not in collection.index_information():
                collection.create_index([("flagged_at", -1)], name="flagged_at")
        except OperationFailure:
            pass

    def _merged(self, snap: Snapshot | None) -> Snapshot:
        cfg = self.cache
        assert cfg is not None and snap is not None
        query = {} if snap.watermark is None else {
            "flagged_at": {"$gte": snap.watermark - cfg.overlap}}
        delta = pl.concat([empty_page(), *_page(self.reader.find(query))])
        return flag_cache.merge(snap, delta, cfg.max_rows, cfg.overlap)

    def _sync_loop(self) -> None:
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
        self.reader.close()
        if self._whole is not None:
            self._whole.close()


def _page(frames: Iterable[pl.DataFrame]) -> Iterable[pl.DataFrame]:
    return (page_frame(frame) for frame in frames)
