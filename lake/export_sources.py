"""Where ``lake.export`` reads flags from: MongoDB (or FerretDB) or the embedded SQLite store.

Both readers yield the flags with ``flagged_at >= since`` ordered by ``(flagged_at,
transaction_id)`` as frames of ``EXPORT_SCHEMA`` (``normalize``: pure), ``chunk_rows`` at a time.
MongoDB is queried with ``find`` + ``sort`` + projection only (what FerretDB supports); SQLite is
opened read-only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from fraudlake.cli import UsageError
from fraudlake.contract import AMOUNT_DTYPE, EXTRA_SCHEMA, RULE_NAMES, TS_DTYPE

_TEXT_COLUMNS = tuple(c for c in EXTRA_SCHEMA if c not in ("card_last4", "device_id"))

#: One row per flagged transaction, in Parquet and (as text) in CSV.
EXPORT_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(), "user_id": pl.Int64(), "ts": TS_DTYPE,
    "amount": AMOUNT_DTYPE, "amount_cents": pl.Int64(),
    **{c: pl.String() for c in _TEXT_COLUMNS},
    "lat": pl.Float64(), "lon": pl.Float64(), "utc_offset_min": pl.Int32(),
    "is_fraud": pl.Boolean(), "fraud_scenario": pl.String(),
    "rules": pl.String(),  # rule names that fired, comma-separated in RULE_NAMES order
    **{r: pl.Boolean() for r in RULE_NAMES},
    "flagged_at": TS_DTYPE, "source": pl.String(),
}
_RAW_COLUMNS = tuple(c for c in EXPORT_SCHEMA if c not in ("rules", *RULE_NAMES))
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the SQLite store's text timestamps


class FlagSource(Protocol):
    key: str  # identifies the source in the export state (e.g. ``mongo:fraud.flags``)

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        """Flags with ``flagged_at >= since`` in ``(flagged_at, transaction_id)`` order, as
        frames of at most ``chunk_rows`` rows."""
        ...


def normalize(raw: pl.DataFrame, rules: pl.Series) -> pl.DataFrame:
    """Raw rows (timestamps as datetimes, amount as text) + a List[String] of fired rules →
    ``EXPORT_SCHEMA`` (pure)."""
    missing = [pl.lit(None).alias(c) for c in _RAW_COLUMNS if c not in raw.columns]
    df = raw.with_columns(*missing).with_columns(rules.alias("_rules"))
    derived = {
        "amount": pl.col("amount").cast(pl.String).str.to_decimal(scale=2).cast(AMOUNT_DTYPE),
        "ts": pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        "flagged_at": pl.col("flagged_at").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        "rules": pl.col("_rules").list.eval(pl.element().filter(
            pl.element().is_in(list(RULE_NAMES)))).list.join(","),
        **{r: pl.col("_rules").list.contains(r) for r in RULE_NAMES},
    }
    return df.select([derived.get(c, pl.col(c)).cast(t).alias(c)
                      for c, t in EXPORT_SCHEMA.items()])


def empty() -> pl.DataFrame:
    return pl.DataFrame(schema=EXPORT_SCHEMA)


class SqliteSource:
    """The embedded store (``flagstore.sqlite.SqliteFlagStore``), opened read-only."""

    def __init__(self, path: Path) -> None:
        if not Path(path).is_file():
            raise UsageError(f"local flag store not found: {path} (set LOCAL_FLAGS_PATH or "
                             "MONGO_URI)")
        self.path = Path(path)
        self.key = f"local:{self.path.resolve()}"
        self._check()

    def _check(self) -> None:
        """UsageError unless the file is a SQLite database with a ``flags`` table (checked
        before any output is created)."""
        try:
            con = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True)
            try:
                con.execute("SELECT * FROM flags LIMIT 0")
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise UsageError(f"cannot read flags from {self.path}: {exc}") from None

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        bound = (since or datetime(1, 1, 1, tzinfo=UTC)).astimezone(UTC).strftime(ISO_FORMAT)
        con = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True)
        try:
            cur = con.execute("SELECT * FROM flags WHERE flagged_at >= ? "
                              "ORDER BY flagged_at, transaction_id", (bound,))
            names = [d[0] for d in cur.description]
            while rows := cur.fetchmany(chunk_rows):
                yield sqlite_frame(rows, names)
        except sqlite3.Error as exc:
            raise UsageError(f"cannot read flags from {self.path}: {exc}") from exc
        finally:
            con.close()


def sqlite_frame(rows: list[tuple], names: list[str]) -> pl.DataFrame:
    """Rows of the SQLite ``flags`` table → ``EXPORT_SCHEMA`` (pure)."""
    raw = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    stamp = {c: pl.col(c).str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us",
                                          time_zone="UTC") for c in ("ts", "flagged_at")}
    raw = raw.with_columns(**stamp)
    fired = pl.concat_list([pl.when(pl.col(r) == 1).then(pl.lit(r)) for r in RULE_NAMES])
    return normalize(raw, raw.select(fired.list.drop_nulls()).to_series())


class MongoSource:
    """A MongoDB/FerretDB flags collection (documents from ``flagstore.mongo``)."""

    def __init__(self, uri: str, db: str, collection: str, batch_size: int = 10_000) -> None:
        from pymongo import MongoClient
        from pymongo.errors import ConfigurationError

        try:
            self._client = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=10_000)
        except ConfigurationError as exc:
            raise UsageError(f"bad MONGO_URI: {exc}") from exc
        self.collection = self._client[db][collection]
        self.key = f"mongo:{db}.{collection}"
        self.batch_size = batch_size

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        query = {} if since is None else {"flagged_at": {"$gte": since}}
        fields = {c: 1 for c in (*_RAW_COLUMNS, "rules")}
        cursor = (self.collection.find(query, fields).sort([("flagged_at", 1), ("_id", 1)])
                  .batch_size(min(self.batch_size, chunk_rows)))
        try:
            docs: list[dict] = []
            for doc in cursor:
                docs.append(doc)
                if len(docs) >= chunk_rows:
                    yield documents_frame(docs)
                    docs = []
            if docs:
                yield documents_frame(docs)
        finally:
            cursor.close()

    def close(self) -> None:
        self._client.close()


def documents_frame(docs: Iterable[dict]) -> pl.DataFrame:
    """Flag documents → ``EXPORT_SCHEMA`` (pure; keeps the order of ``docs``)."""
    docs = list(docs)
    rows = [{c: d.get(c) for c in _RAW_COLUMNS} for d in docs]
    if not rows:
        return empty()
    schema = {c: (pl.Datetime("us", "UTC") if c in ("ts", "flagged_at") else
                  pl.String() if c == "amount" else t) for c, t in EXPORT_SCHEMA.items()
              if c in _RAW_COLUMNS}
    rules = [d.get("rules") or [] for d in docs]
    raw = pl.DataFrame(rows, schema=schema, orient="row")
    return normalize(raw, pl.Series("rules", rules, dtype=pl.List(pl.String)))
