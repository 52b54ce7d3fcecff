"""Flag sources: the embedded SQLite store or MongoDB, chosen by configuration.

Both answer the same questions with bound parameters only (``?`` for SQLite, a filter
document of typed values for MongoDB) and return the same normalized Polars frame
(``FLAG_COLUMNS``), newest first:

- ``recent(filter, limit)``: the latest flags matching the filter (the table);
- ``count(filter, cap)``: how many match, counting at most ``cap``;
- ``export(filter)``: every matching flag (the CSV download);
- ``matching(filter)``: every matching flag as a LazyFrame (the aggregates: whatever the
  range, never a window of the latest);
- ``detail(transaction_id)``: the stored flag as a dict (``evidence`` included when recorded).

Both hold the flags in the page process (``dashboard.flag_cache``): one cold load, then only
what is new — SQLite by ``rowid`` (rows are only appended; a store that shrank, e.g. a demo
re-run, is reloaded), MongoDB by ``flagged_at`` (see ``dashboard.cached_reader``).

``MongoFlagSource`` (re-exported here) lives in ``dashboard.cached_reader``.
Failures to reach the store raise ``FlagSourceError`` with a one-line message for the page.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import polars as pl

from dashboard import flag_cache
from dashboard.filters import FlagFilter, sql_where
from dashboard.flag_cache import CacheConfig, Snapshot
from flagstore.sqlite import open_read_only
from fraudlake.settings import Settings

#: The normalized flags frame every source returns (and the CSV columns, in this order).
FLAG_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "user_id": pl.Int64(),
    "amount": pl.Decimal(18, 2), "amount_cents": pl.Int64(), "currency": pl.String(),
    "merchant_name": pl.String(), "category": pl.String(), "channel": pl.String(),
    "city": pl.String(), "country": pl.String(), "rules": pl.List(pl.String()),
    "is_fraud": pl.Boolean(), "fraud_scenario": pl.String(),
    "flagged_at": pl.Datetime("us", "UTC"),
    "score": pl.Float64(),  # rule sets v2; v1 flags: the number of rules fired
    "rule_set_id": pl.String(),  # None for v1 flags
}
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"


class FlagSourceError(RuntimeError):
    """The flag store cannot be read; the message says which one and why."""


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


def empty_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=FLAG_COLUMNS)


class SqliteFlagSource:
    """Reads the embedded store (``flagstore.sqlite.SqliteFlagStore``) read-only.

    A connection per call: cheap, thread-safe under Streamlit, and it sees a store that
    appears after the page started. A missing file reads as no flags yet (``notice`` says
    so); a file that is not a SQLite flag store raises ``FlagSourceError``. With a cache
    (default) the flags are held in the process and synced inline by ``rowid``.
    """

    _BASE = ("transaction_id", "ts", "user_id", "amount", "amount_cents", "currency",
             "merchant_name", "category", "channel", "city", "country",
             "rules_fired AS rules", "is_fraud",
             "fraud_scenario", "flagged_at")
    _CHUNK = 100_000
    COUNT_SECONDS = 30.0  # how often a full count checks for deleted rows (max(rowid): always)

    def __init__(self, path: Path, cache: CacheConfig | None = None) -> None:
        self.path = Path(path)
        self.label = f"local store {self.path}"
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

    def _connect(self) -> sqlite3.Connection | None:
        try:
            return open_read_only(self.path)
        except sqlite3.Error as exc:
            raise FlagSourceError(f"cannot open {self.label}: {exc}") from exc

    def _query(self, sql: str, params: list[object]) -> list[tuple]:
        """Run ``sql``; ``{select}`` in it stands for this store's SELECT list (``_select``)."""
        conn = self._connect()
        if conn is None:
            return []
        try:
            if "{select}" in sql:
                select = self._select(conn)
                if not select:
                    return []
                sql = sql.replace("{select}", select)
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _read_error(self.label, exc) from exc
        finally:
            conn.close()

    def _select(self, conn: sqlite3.Connection) -> str:
        """The SELECT list for this store's columns (v2 columns when the store has them)."""
        have = {r[1] for r in conn.execute("PRAGMA table_info(flags)")}
        if not have:
            return ""
        extra = [c if c in have else f"NULL AS {c}" for c in ("score", "rule_set_id")]
        return f"SELECT {', '.join(self._BASE)}, {', '.join(extra)} FROM flags"  # noqa: S608

    # --- the page's questions ----------------------------------------------------------------

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        if self.cache is not None:
            return flag_cache.view(self.snapshot(), f, limit)
        where, params = sql_where(f)
        sql = f"{{select}}{where} ORDER BY ts DESC, transaction_id DESC LIMIT ?"
        return _from_sqlite_rows(self._query(sql, [*params, int(limit)]))

    def count(self, f: FlagFilter, cap: int) -> int:
        if self.cache is not None:
            return min(flag_cache.count(self.snapshot(), f), int(cap))
        where, params = sql_where(f)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM flags{where} LIMIT ?)"  # noqa: S608 - fixed fragments, values bound
        rows = self._query(sql, [*params, int(cap)])
        return int(rows[0][0]) if rows else 0

    def export(self, f: FlagFilter) -> pl.DataFrame:
        if self.cache is not None:
            return flag_cache.view(self.snapshot(), f)
        where, params = sql_where(f)
        sql = f"{{select}}{where} ORDER BY ts DESC, transaction_id DESC"
        return _from_sqlite_rows(self._query(sql, params))

    def matching(self, f: FlagFilter) -> pl.LazyFrame:
        if self.cache is not None:
            return flag_cache.lazy_matching(self.snapshot(), f)
        return self.export(f).lazy()

    def detail(self, transaction_id: str) -> dict | None:
        conn = self._connect()
        if conn is None:
            return None
        try:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM flags WHERE transaction_id = ?",
                               [str(transaction_id)]).fetchone()
        except sqlite3.Error as exc:
            raise _read_error(self.label, exc) from exc
        finally:
            conn.close()
        if row is None:
            return None
        doc = dict(row)
        for key in ("rules", "rules_fired", "evidence"):
            if isinstance(doc.get(key), str):
                try:
                    doc[key] = json.loads(doc[key])
                except ValueError:
                    pass
        return doc

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
        notices deleted rows (a demo re-run) and reloads. One read transaction: consistent."""
        cfg = self.cache
        assert cfg is not None
        conn = self._connect()
        empty = flag_cache.cold([], empty_flags(), cfg.max_rows, cfg.overlap)
        if conn is None:
            self._rowid = self._rows = 0
            return empty
        try:
            conn.execute("BEGIN")
            select = self._select(conn)
            if not select:
                self._rowid = self._rows = 0
                return empty
            top = conn.execute("SELECT coalesce(max(rowid), 0) FROM flags").fetchone()[0]
            if snap is not None and top < self._rowid:
                snap = None  # the store shrank: reload
            if snap is not None and time.monotonic() - self._counted >= self.COUNT_SECONDS:
                self._counted = time.monotonic()
                held = self._rows + conn.execute("SELECT count(*) FROM flags WHERE rowid > ?",
                                                 [self._rowid]).fetchone()[0]
                if conn.execute("SELECT count(*) FROM flags").fetchone()[0] != held:
                    snap = None  # rows were deleted: reload
            if snap is None:
                frames = list(self._chunks(conn, select, 0, top))
                self._rows = sum(f.height for f in frames)
                self._counted = time.monotonic()
                snap = flag_cache.cold(frames, empty_flags(), cfg.max_rows, cfg.overlap)
            elif top > self._rowid:
                delta = pl.concat([empty_flags(), *self._chunks(conn, select, self._rowid, top)])
                self._rows += delta.height
                snap = flag_cache.merge(snap, delta, cfg.max_rows, cfg.overlap)
            self._rowid = top
            return snap
        except sqlite3.Error as exc:
            raise _read_error(self.label, exc) from exc
        finally:
            conn.close()

    def _chunks(self, conn: sqlite3.Connection, select: str, after: int, upto: int
                ) -> Iterator[pl.DataFrame]:
        cur = conn.execute(f"{select} WHERE rowid > ? AND rowid <= ?", [after, upto])
        while rows := cur.fetchmany(self._CHUNK):
            yield _from_sqlite_rows(rows)


def _read_error(label: str, exc: sqlite3.Error) -> FlagSourceError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        return FlagSourceError(f"{label} is not a SQLite flag store ({text})")
    return FlagSourceError(f"cannot read {label}: {text}")


def _from_sqlite_rows(rows: list[tuple]) -> pl.DataFrame:
    raw = {**FLAG_COLUMNS, "ts": pl.String(), "amount": pl.String(), "rules": pl.String(),
           "is_fraud": pl.Int64(), "flagged_at": pl.String()}
    df = pl.DataFrame(rows, schema=raw, orient="row")
    rules = pl.col("rules").str.json_decode(pl.List(pl.String()))
    return df.with_columns(
        pl.col("ts").str.to_datetime(_TS_FORMAT, time_zone="UTC", time_unit="us"),
        pl.col("flagged_at").str.to_datetime(_TS_FORMAT, time_zone="UTC", time_unit="us",
                                             strict=False),
        pl.col("amount").cast(pl.Decimal(18, 2)),
        rules,
        pl.col("is_fraud").cast(pl.Boolean),
        pl.col("score").fill_null(rules.list.len().cast(pl.Float64)),
    ).select(list(FLAG_COLUMNS))


def open_source(settings: Settings, cache: CacheConfig | None = None) -> FlagSource:
    """MongoDB when ``MONGO_URI`` is set (cache: ``CacheConfig.from_env()`` unless given),
    else the embedded SQLite store."""
    if settings.mongo_uri:
        from dashboard.cached_reader import MongoFlagSource

        return MongoFlagSource(settings.mongo_uri, settings.mongo_db, settings.mongo_collection,
                               cache=CacheConfig.from_env() if cache is None else cache)
    return SqliteFlagSource(settings.local_flags_path,
                            cache=CacheConfig.from_env() if cache is None else cache)


def __getattr__(name: str) -> object:
    """``MongoFlagSource`` from here too (imported lazily: that module imports this one)."""
    if name == "MongoFlagSource":
        from dashboard.cached_reader import MongoFlagSource

        return MongoFlagSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
