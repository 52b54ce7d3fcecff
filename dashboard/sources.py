"""Flag sources: the embedded SQLite store or MongoDB, chosen by configuration.

Both answer the same three questions with bound parameters only (``?`` for SQLite, a filter
document of typed values for MongoDB) and return the same normalized Polars frame
(``FLAG_COLUMNS``), newest first:

- ``recent(filter, limit)``: the latest flags matching the filter (the table + live aggregates);
- ``count(filter, cap)``: how many match, counting at most ``cap`` (bounded cost on 1M flags);
- ``export(filter)``: every matching flag (the CSV download).

``MongoFlagSource`` (re-exported here) lives in ``dashboard.cached_reader``.
Failures to reach the store raise ``FlagSourceError`` with a one-line message for the page.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

import polars as pl

from dashboard.filters import FlagFilter, sql_where
from dashboard.flag_cache import CacheConfig
from fraudlake.settings import Settings

#: The normalized flags frame every source returns (and the CSV columns, in this order).
FLAG_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "user_id": pl.Int64(),
    "amount": pl.Decimal(18, 2), "amount_cents": pl.Int64(), "currency": pl.String(),
    "merchant_name": pl.String(), "category": pl.String(), "channel": pl.String(),
    "city": pl.String(), "country": pl.String(), "rules": pl.List(pl.String()),
    "is_fraud": pl.Boolean(), "fraud_scenario": pl.String(),
    "flagged_at": pl.Datetime("us", "UTC"),
}
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"


class FlagSourceError(RuntimeError):
    """The flag store cannot be read; the message says which one and why."""


class FlagSource(Protocol):
    label: str

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame: ...

    def count(self, f: FlagFilter, cap: int) -> int: ...

    def export(self, f: FlagFilter) -> pl.DataFrame: ...


def empty_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=FLAG_COLUMNS)


class SqliteFlagSource:
    """Reads the embedded store (``flagstore.sqlite.SqliteFlagStore``) read-only.

    A connection per call: cheap, thread-safe under Streamlit, and it sees a store that
    appears after the page started. A missing file reads as no flags yet.
    """

    _SELECT = ("SELECT transaction_id, ts, user_id, amount, amount_cents, currency, merchant_name,"
               " category, channel, city, country, rules, is_fraud, fraud_scenario, flagged_at"
               " FROM flags")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = f"local store {self.path}"

    def _query(self, sql: str, params: list[object]) -> list[tuple]:
        if not self.path.exists():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=2.0)
        except sqlite3.Error as exc:
            raise FlagSourceError(f"cannot open {self.label}: {exc}") from exc
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise FlagSourceError(f"cannot read {self.label}: {exc}") from exc
        finally:
            conn.close()

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        where, params = sql_where(f)
        sql = f"{self._SELECT}{where} ORDER BY ts DESC, transaction_id DESC LIMIT ?"
        return _from_sqlite_rows(self._query(sql, [*params, int(limit)]))

    def count(self, f: FlagFilter, cap: int) -> int:
        where, params = sql_where(f)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM flags{where} LIMIT ?)"  # noqa: S608 - fixed fragments, values bound
        rows = self._query(sql, [*params, int(cap)])
        return int(rows[0][0]) if rows else 0

    def export(self, f: FlagFilter) -> pl.DataFrame:
        where, params = sql_where(f)
        sql = f"{self._SELECT}{where} ORDER BY ts DESC, transaction_id DESC"
        return _from_sqlite_rows(self._query(sql, params))


def _from_sqlite_rows(rows: list[tuple]) -> pl.DataFrame:
    raw = {**FLAG_COLUMNS, "ts": pl.String(), "amount": pl.String(), "rules": pl.String(),
           "is_fraud": pl.Int64(), "flagged_at": pl.String()}
    df = pl.DataFrame(rows, schema=raw, orient="row")
    return df.with_columns(
        pl.col("ts").str.to_datetime(_TS_FORMAT, time_zone="UTC", time_unit="us"),
        pl.col("flagged_at").str.to_datetime(_TS_FORMAT, time_zone="UTC", time_unit="us",
                                             strict=False),
        pl.col("amount").cast(pl.Decimal(18, 2)),
        pl.col("rules").str.json_decode(pl.List(pl.String())),
        pl.col("is_fraud").cast(pl.Boolean),
    ).select(list(FLAG_COLUMNS))


def open_source(settings: Settings, cache: CacheConfig | None = None) -> FlagSource:
    """MongoDB when ``MONGO_URI`` is set (cache: ``CacheConfig.from_env()`` unless given),
    else the embedded SQLite store."""
    if settings.mongo_uri:
        from dashboard.cached_reader import MongoFlagSource

        return MongoFlagSource(settings.mongo_uri, settings.mongo_db, settings.mongo_collection,
                               cache=CacheConfig.from_env() if cache is None else cache)
    return SqliteFlagSource(settings.local_flags_path)


def __getattr__(name: str) -> object:
    """``MongoFlagSource`` from here too (imported lazily: that module imports this one)."""
    if name == "MongoFlagSource":
        from dashboard.cached_reader import MongoFlagSource

        return MongoFlagSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
