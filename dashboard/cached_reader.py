"""The MongoDB flag source (MongoDB or FerretDB), with the page's in-process flag cache.

With a cache (the default), the flags live in this process (``dashboard.flag_cache``): one
cold load, then syncs that read only the documents stamped since the last one (a range on
``flagged_at``, indexed on MongoDB), in a background thread or inline; reads filter in
Polars and go to the store only for flags older than what is held. ``cache=None`` (or
``max_rows=0``) queries the store on every call: find/sort/limit and count_documents.
See ``dashboard.sources`` for the three questions every source answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS

from dashboard import flag_cache
from dashboard.filters import FlagFilter, mongo_filter
from dashboard.flag_cache import CacheConfig, Snapshot
from dashboard.sources import FLAG_COLUMNS, FlagSourceError, empty_flags

DEFAULT_CACHE = CacheConfig()


class MongoFlagSource:
    """Reads ``fraud.flags``; thread-safe (one instance serves every page session)."""

    _PROJECTION = {**{name: 1 for name in FLAG_COLUMNS if name != "transaction_id"},
                   "rules_fired": 1}
    notice: str | None = None
    _CHUNK = 50_000  # documents per frame while loading

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags",
                 timeout_ms: int = 2_000, cache: CacheConfig | None = DEFAULT_CACHE) -> None:
        from pymongo import MongoClient

        given = uri.lower()  # timeouts written in the URI win over these defaults
        opts: dict[str, Any] = {k: v for k, v in {"serverSelectionTimeoutMS": timeout_ms,
                                  "connectTimeoutMS": timeout_ms,
                                  "socketTimeoutMS": 600_000}.items() if k.lower() not in given}
        self._client: Any = MongoClient(uri, tz_aware=True, **opts)
        self.collection = self._client[db][collection]
        # datetimes as integer ms: converting datetime objects costs ~5 µs each
        self._docs: Any = self.collection.with_options(codec_options=CodecOptions(
            tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_MS))
        self.name = f"MongoDB {db}.{collection}"
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

    def _guard(self, what: str, action: Callable[[], Any]) -> Any:
        from pymongo.errors import PyMongoError

        try:
            return action()
        except PyMongoError as exc:
            raise FlagSourceError(f"{self.name}: {what} failed: {_one_line(exc)}") from exc

    # --- the store, queried directly -------------------------------------------------------

    def _find(self, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
        def run() -> list[dict]:
            return list(self._docs.find(mongo_filter(f), self._PROJECTION,
                                             sort=[("ts", -1), ("_id", -1)],
                                             limit=int(limit or 0)))
        return _from_documents(self._guard("find" if limit else "export", run))

    def _count(self, f: FlagFilter, cap: int) -> int:
        return int(self._guard("count", lambda: self.collection.count_documents(
            mongo_filter(f), limit=int(cap))))

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
        """The stored flag document (evidence included), ``_id`` as ``transaction_id``."""
        doc = self._guard("find", lambda: self.collection.find_one({"_id": str(transaction_id)}))
        if doc is None:
            return None
        doc["transaction_id"] = doc.pop("_id")
        return doc

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
            raise FlagSourceError(f"{self.name}: sync failing for {age:.0f}s: {self._error}")
        return snap

    def sync(self) -> Snapshot:
        """Sync once now, whatever the mode (tests, bench); raises FlagSourceError."""
        self.snapshot()
        with self._lock:
            self._snap = self._guard("sync", lambda: self._merged(self._snap))
            self._synced = time.monotonic()
            return self._snap

    def _cold(self) -> Snapshot:
        cfg = self.cache
        assert cfg is not None
        self._ensure_index()
        info = self._client.admin.command("buildInfo")
        if "ferretdbVersion" in info:  # FerretDB would sort in memory: stream everything
            cursor = self._docs.find({}, self._PROJECTION, batch_size=10_000)
        else:  # the newest max_rows + 1, served by the ts_desc index
            cursor = self._docs.find({}, self._PROJECTION, sort=[("ts", -1)],
                                          limit=cfg.max_rows + 1, batch_size=10_000)
        return flag_cache.cold(_frames(cursor, self._CHUNK), empty_flags(), cfg.max_rows,
                               cfg.overlap)

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
        cursor = self._docs.find(query, self._PROJECTION)
        delta = pl.concat([empty_flags(), *_frames(cursor, self._CHUNK)])
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
                self._error = _one_line(exc)
                continue
            with self._lock:
                if self._snap is base:  # else an inline sync() got there first
                    self._snap = snap
                self._synced = time.monotonic()
                self._error = None

    def close(self) -> None:
        self._closed.set()
        self._client.close()


def _one_line(exc: Exception) -> str:
    return str(exc).split("\n")[0].split(", Timeout:")[0]


def _frames(cursor: Any, size: int) -> Iterator[pl.DataFrame]:
    """A cursor's documents as normalized frames of at most ``size`` rows."""
    batch: list[dict] = []
    for doc in cursor:
        batch.append(doc)
        if len(batch) >= size:
            yield _from_documents(batch)
            batch = []
    if batch:
        yield _from_documents(batch)


_SEP = "\x1f"  # joins rule names while converting (never in a rule name)


def _millis(value: Any) -> int | None:
    """A BSON datetime as ms since the epoch (DatetimeMS from our codec, or a datetime)."""
    if value is None:
        return None
    if isinstance(value, DatetimeMS):
        return int(value)
    return int(value.timestamp() * 1000)


def _from_documents(docs: list[dict]) -> pl.DataFrame:
    """Documents → ``FLAG_COLUMNS``, column by column (datetimes as integers, rule lists as
    joined strings: building those per value in Polars costs ~30 µs a document)."""
    if not docs:
        return empty_flags()
    data: dict[str, pl.Series] = {}
    for name, dtype in FLAG_COLUMNS.items():
        if name == "rules":  # rule sets v2 call it rules_fired
            values = [d.get("rules_fired", d.get("rules")) for d in docs]
        else:
            values = [d.get("_id" if name == "transaction_id" else name) for d in docs]
        if name in ("ts", "flagged_at"):
            data[name] = pl.Series(name, [_millis(v) for v in values], pl.Int64())
        elif name == "rules":
            data[name] = pl.Series(name, [None if v is None else _SEP.join(v) for v in values],
                                   pl.String())
        elif name == "amount":
            data[name] = pl.Series(name, values, pl.String(), strict=False)
        else:
            data[name] = pl.Series(name, values, dtype, strict=False)
    split = pl.col("rules").str.split(_SEP).list.eval(pl.element().filter(pl.element() != ""))
    return pl.DataFrame(data).with_columns(
        *(pl.col(c).cast(pl.Datetime("ms", "UTC")).cast(FLAG_COLUMNS[c])
          for c in ("ts", "flagged_at")),
        pl.col("amount").cast(pl.Decimal(18, 2)),
        split.cast(FLAG_COLUMNS["rules"]),
    ).with_columns(pl.col("score").fill_null(pl.col("rules").list.len().cast(pl.Float64))
                   ).select(list(FLAG_COLUMNS))
