"""Flag stores: where flagged transactions go. ``FlagStore`` protocol + the embedded SQLite one.

``SqliteFlagStore(path)`` is the local store of embedded mode (no MongoDB): one table ``flags``
keyed by ``transaction_id`` (PRIMARY KEY) and written with ``INSERT … ON CONFLICT DO UPDATE``,
so a replay updates rows and never duplicates them (``flagged_at`` keeps the first write).
WAL journal mode lets the dashboard read while the consumer writes. Timestamps are ISO-8601
UTC text with microseconds (``2024-03-01T08:00:00.000000Z``), which sorts like time; amounts are
exact text (``"1234.56"``) plus integer cents for range queries.

The MongoDB store (``flagstore.mongo.MongoFlagStore``) follows the same protocol and builds
its documents with ``flagstore.mongo.flag_documents``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from fraudlake.contract import RULE_NAMES


class FlagStore(Protocol):
    def upsert(self, flagged: pl.DataFrame) -> int:
        """Store flagged events (contract + rule columns); return how many rows were sent."""
        ...


#: SQLite column → type; one 0/1 column per rule after ``rules``.
COLUMNS: dict[str, str] = {
    "transaction_id": "TEXT PRIMARY KEY", "user_id": "INTEGER NOT NULL", "ts": "TEXT NOT NULL",
    "amount": "TEXT NOT NULL", "amount_cents": "INTEGER NOT NULL", "currency": "TEXT",
    "merchant_id": "TEXT", "merchant_name": "TEXT", "category": "TEXT", "channel": "TEXT",
    "city": "TEXT", "country": "TEXT", "lat": "REAL", "lon": "REAL", "utc_offset_min": "INTEGER",
    "is_fraud": "INTEGER", "fraud_scenario": "TEXT", "rules": "TEXT NOT NULL",
    **{name: "INTEGER NOT NULL" for name in RULE_NAMES},
    "flagged_at": "TEXT NOT NULL", "source": "TEXT",
}
INDEXES: dict[str, str] = {
    "flags_ts": "ts", "flags_user_ts": "user_id, ts", "flags_amount_cents": "amount_cents",
}
# Built once from the constant column names above; every value is a bound ``?`` parameter.
UPSERT_SQL = (
    f"INSERT INTO flags ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "  # noqa: S608
    "ON CONFLICT(transaction_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in COLUMNS if n not in ("transaction_id", "flagged_at"))
)
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def flag_rows(flagged: pl.DataFrame, flagged_at: datetime) -> pl.DataFrame:
    """Flagged events → one row per ``COLUMNS`` entry, typed for SQLite (pure)."""
    cols = flagged.columns
    fired = [pl.when(pl.col(r)).then(pl.lit(f'"{r}"')) for r in RULE_NAMES if r in cols]
    quoted = (pl.concat_list(fired).list.drop_nulls() if fired
              else pl.lit([], pl.List(pl.String)))  # names are identifiers: JSON-safe as is
    source = (pl.format("{}:{}:{}", "_topic", "_partition", "_offset")
              if {"_topic", "_partition", "_offset"} <= set(cols) else pl.lit(None, pl.String))
    derived = {
        "ts": pl.col("ts").dt.convert_time_zone("UTC").dt.strftime(TS_FORMAT),
        "amount": pl.col("amount").cast(pl.String),
        "amount_cents": (pl.col("amount").cast(pl.Decimal(20, 2)) * 100).cast(pl.Int64),
        "rules": pl.format("[{}]", quoted.list.join(",")),
        "flagged_at": pl.lit(flagged_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
        "source": source,
        "is_fraud": pl.col("is_fraud").cast(pl.Int64) if "is_fraud" in cols else None,
        **{r: pl.col(r).fill_null(False).cast(pl.Int64) if r in cols else pl.lit(0)
           for r in RULE_NAMES},
    }
    exprs = []
    for name in COLUMNS:
        expr = derived.get(name)
        if expr is None:
            expr = pl.col(name) if name in cols else pl.lit(None)
        exprs.append(expr.alias(name))
    return flagged.select(exprs)


class SqliteFlagStore:
    """Embedded flag store (see the module docstring). One connection; not thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._create()

    def _create(self) -> None:
        body = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        with self.conn:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS flags ({body})")
            for name, cols in INDEXES.items():
                self.conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON flags ({cols})")

    def upsert(self, flagged: pl.DataFrame) -> int:
        """Insert or update flagged rows by transaction_id in one transaction."""
        if flagged.is_empty():
            return 0
        rows = flag_rows(flagged, datetime.now(UTC)).rows()
        with self.conn:
            self.conn.executemany(UPSERT_SQL, rows)
        return len(rows)

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM flags").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteFlagStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flag_documents(flagged: pl.DataFrame) -> list[dict]:
    """MongoDB flag documents (``_id = transaction_id``, ts as datetime, ``rules`` list).

    One implementation for both stores' callers: delegates to ``flagstore.mongo``
    (imported lazily so the embedded mode never needs pymongo loaded).
    """
    from flagstore.mongo import flag_documents as build

    return build(flagged)
