"""The MongoDB (or FerretDB) flag store: ``MongoFlagStore`` writes, ``MongoFlagReader`` reads.

``MongoFlagStore`` is a ``flagstore.protocols.FlagWriter``: one document per flagged
transaction (``flag_documents``: the ``FLAG_SCHEMA`` fields, ``_id = transaction_id``, ``ts`` and
``flagged_at`` as BSON datetimes, ``amount`` exact text, ``evidence`` a sub-document), written
with ``insert_many(ordered=False)``.
A replay (after a crash, a rebalance, a broker restart) finds its documents already there
(duplicate key) and leaves them as they are: the same Kafka message decided by the same
deterministic rules gives the same document, and ``flagged_at`` keeps the first write. With
``rewrite_replays=True`` the replayed documents are rewritten instead (``$set``, ``flagged_at``
kept by ``$setOnInsert``), e.g. after changing a rule parameter; on FerretDB that costs a
collection scan per document (measured: ~80 ms each at 10k flags, ~1 min for 350 replayed
flags at 40k under load), which is why it is not the default. Amounts are stored as an exact
string plus integer cents (FerretDB has no Decimal128 guarantee).

Outages: transient errors (connection lost, server selection timeout, retryable write errors)
are retried with exponential backoff (0.1 s doubling to 5 s) for up to ``retry_seconds`` —
``Settings.mongo_retry_seconds`` (env ``MONGO_RETRY_SECONDS``), default 120 s; keep it below
the consumer's ``max.poll.interval.ms`` (300 s) — logging ``mongo sink: … retrying`` and, once
a write goes through again, ``mongo sink: recovered after Xs``; after the budget a
``MongoSinkError`` says how long it tried. One attempt can take up to the 5 s server-selection
timeout (60 s socket timeout for a server that hangs mid-request), so the bound is budget + one
attempt. Anything else fails fast naming the collection. Log lines and errors never carry the
URI (it may hold a password): only the database.collection and the error's type or (redacted)
text.

``MongoFlagReader`` is a ``flagstore.protocols.FlagReader`` querying the collection directly
with find/sort/limit, ``count_documents`` and projections only (what FerretDB supports); the
dashboard holds its flags in the page on top of it (``dashboard.cached_reader``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import polars as pl
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from flagstore.protocols import FlagReadError
from flagstore.query import FlagFilter, mongo_filter
from flagstore.schema import FLAG_SCHEMA, flag_frame, from_records
from fraudlake.errors import EnvironmentFailure
from fraudlake.settings import DEFAULT_RETRY_SECONDS, MONGO_RETRY_ENV

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Indexes behind the dashboard's queries (newest flags, one user's flags, by rule, by amount).
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("ts_desc", [("ts", DESCENDING)]),
    ("user_ts", [("user_id", ASCENDING), ("ts", DESCENDING)]),
    ("rules_fired", [("rules_fired", ASCENDING)]),
    ("amount_cents", [("amount_cents", DESCENDING)]),
    ("flagged_at", [("flagged_at", DESCENDING)]),  # the dashboard's incremental updates
)


DUPLICATE_KEY = 11000
CHUNK = 5_000  # documents per request
_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^@/\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host`` anywhere in ``text``."""
    return _CREDENTIALS.sub(r"\1***@", text)


class MongoSinkError(EnvironmentFailure, RuntimeError):
    """Writing flags to MongoDB failed terminally (or transient errors outlasted the retries)."""


def flag_documents(flagged: pl.DataFrame) -> list[dict]:
    """Flagged decided events → MongoDB flag documents (``FLAG_SCHEMA`` without
    ``flagged_at``, which the insert stamps; ``_id = transaction_id``)."""
    if flagged.is_empty():
        return []
    frame = flag_frame(flagged).drop("flagged_at")
    docs = frame.with_columns(pl.col("transaction_id").alias("_id"),
                              pl.col("amount").cast(pl.String)).to_dicts()
    for d in docs:  # pymongo stores aware datetimes as UTC; make the tz explicit and exact
        if d["ts"] is not None:
            d["ts"] = d["ts"].astimezone(UTC)
        if d["evidence"] is not None:
            d["evidence"] = json.loads(d["evidence"])
    return docs


def upsert_ops(docs: list[dict], now: datetime) -> list[UpdateOne]:
    return [UpdateOne({"_id": d["_id"]}, {"$set": d, "$setOnInsert": {"flagged_at": now}},
                      upsert=True) for d in docs]


def is_transient(exc: PyMongoError) -> bool:
    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NetworkTimeout, ServerSelection…
        return True
    if isinstance(exc, BulkWriteError):
        errors = exc.details.get("writeErrors", [])
        return bool(errors) and all(e.get("code") in (6, 7, 89, 91, 189, 11600, 11602)
                                    for e in errors)
    return exc.has_error_label("RetryableWriteError")


class MongoFlagStore:
    """``FlagWriter`` over a MongoDB (or FerretDB) collection. The client connects lazily; the
    indexes are created (with retries) on the first write or by ``ensure_indexes``."""

    thread_safe = True  # pymongo clients may be used from a background writer thread

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags", *,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS, max_delay: float = 5.0,
                 rewrite_replays: bool = False) -> None:
        self._client: MongoClient = MongoClient(uri, tz_aware=True,
                                                serverSelectionTimeoutMS=5_000,
                                                connectTimeoutMS=5_000, socketTimeoutMS=60_000)
        self.collection: Collection = self._client[db][collection]
        self.retry_seconds = retry_seconds
        self.max_delay = max_delay
        self.rewrite_replays = rewrite_replays
        self.replayed = 0  # documents found already written (a replay)
        self.retries = 0
        self.outages = 0  # outages that ended in a recovery
        self._indexed = False

    def prepare(self) -> None:
        self.ensure_indexes()

    def ensure_indexes(self) -> None:
        """Create the dashboard's indexes (retrying transient errors like a write)."""
        def create() -> None:
            for name, keys in INDEXES:
                self.collection.create_index(keys, name=name)
        self._with_retry("create indexes", create)
        self._indexed = True

    def upsert(self, flagged: pl.DataFrame) -> int:
        """Upsert every row of ``flagged``; returns the number of documents written.

        ``insert_many(ordered=False)`` of full documents; ids that already exist (duplicate
        key: a replay, or a retry of a request cut off mid-way) are left as they are, or, with
        ``rewrite_replays``, upserted (``$set``) keeping their flagged_at.
        """
        if not self._indexed:
            self.ensure_indexes()
        docs = flag_documents(flagged)
        now = datetime.now(UTC)
        for lo in range(0, len(docs), CHUNK):  # short requests: a retry resends little
            chunk = docs[lo:lo + CHUNK]
            existing = self._with_retry(f"insert of {len(chunk)} flags",
                                        partial(self._insert_new_now, chunk))
            self.replayed += len(existing)
            if existing and self.rewrite_replays:
                ops = upsert_ops(existing, now)
                self._with_retry(f"bulk_write of {len(ops)} replayed flags",
                                 partial(self.collection.bulk_write, ops, ordered=False))
        return len(docs)

    def _insert_new_now(self, docs: list[dict]) -> list[dict]:
        return self._insert_new(docs, datetime.now(UTC))

    def _insert_new(self, docs: list[dict], now: datetime) -> list[dict]:
        """Insert the documents stamped ``flagged_at=now``; return those whose _id already
        existed. Each attempt stamps anew, so flags written after an outage carry the time they
        became visible (the dashboard reads new flags by ``flagged_at``)."""
        try:
            self.collection.insert_many([{**d, "flagged_at": now} for d in docs], ordered=False)
            return []
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return [docs[e["index"]] for e in errors]

    def _with_retry(self, what: str, action: Callable[[], T]) -> T:
        t0 = time.monotonic()
        deadline = t0 + self.retry_seconds
        delay, failures = 0.1, 0
        target = f"{self.collection.database.name}.{self.collection.name}"
        while True:
            try:
                result = action()
            except PyMongoError as exc:
                if not is_transient(exc):
                    raise MongoSinkError(f"MongoDB {target}: {what} failed: "
                                         f"{redact(str(exc))}") from None
                if time.monotonic() + delay > deadline:
                    raise MongoSinkError(
                        f"MongoDB {target}: {what} still failing after "
                        f"{time.monotonic() - t0:.0f}s (budget {self.retry_seconds:.0f}s, env "
                        f"{MONGO_RETRY_ENV}): {type(exc).__name__}: "
                        f"{redact(str(exc))[:200]}") from None
                failures += 1
                self.retries += 1
                log.warning("mongo sink: %s: %s: server unreachable or transient error (%s); "
                            "retrying in %.1fs (%.0fs of %.0fs)", target, what,
                            type(exc).__name__, delay, time.monotonic() - t0,
                            self.retry_seconds)
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if failures:
                self.outages += 1
                log.warning("mongo sink: %s: recovered after %.1fs (%d retries)", target,
                            time.monotonic() - t0, failures)
            return result

    def close(self) -> None:
        self._client.close()


class MongoFlagReader:
    """``FlagReader`` over a MongoDB/FerretDB flags collection, queried on every call;
    thread-safe. ``columns`` limits what is fetched (the others read as null)."""

    _CHUNK = 50_000  # documents per frame while reading

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags", *,
                 timeout_ms: int = 2_000, columns: tuple[str, ...] = tuple(FLAG_SCHEMA)) -> None:
        from bson.codec_options import CodecOptions, DatetimeConversion

        given = uri.lower()  # timeouts written in the URI win over these defaults
        opts: dict[str, Any] = {k: v for k, v in {"serverSelectionTimeoutMS": timeout_ms,
                                  "connectTimeoutMS": timeout_ms,
                                  "socketTimeoutMS": 600_000}.items() if k.lower() not in given}
        self.client: MongoClient = MongoClient(uri, tz_aware=True, **opts)
        self.collection: Collection = self.client[db][collection]
        # datetimes as integer ms: converting datetime objects costs ~5 µs each
        self.docs: Collection = self.collection.with_options(codec_options=CodecOptions(
            tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_MS))
        self.projection = {c: 1 for c in columns if c != "transaction_id"} | {"rules": 1}
        self.label = f"MongoDB {db}.{collection}"
        self.key = f"mongo:{db}.{collection}"

    def guard(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action``; a MongoDB error becomes a one-line ``FlagReadError``."""
        try:
            return action()
        except PyMongoError as exc:
            raise FlagReadError(f"{self.label}: {what} failed: {one_line(exc)}") from exc

    def find(self, query: dict, sort: list[tuple[str, int]] | None = None,
             limit: int = 0, batch_size: int = 10_000) -> Iterator[pl.DataFrame]:
        """The documents of one query as ``FLAG_SCHEMA`` frames of at most ``_CHUNK`` rows."""
        cursor = self.docs.find(query, self.projection, sort=sort, limit=int(limit),
                                batch_size=batch_size)
        try:
            batch: list[dict] = []
            for doc in cursor:
                batch.append(doc)
                if len(batch) >= self._CHUNK:
                    yield from_records(batch)
                    batch = []
            if batch:
                yield from_records(batch)
        finally:
            cursor.close()

    def _frame(self, f: FlagFilter, limit: int | None = None) -> pl.DataFrame:
        def run() -> pl.DataFrame:
            found = self.find(mongo_filter(f), sort=[("ts", -1), ("_id", -1)], limit=limit or 0)
            return pl.concat([from_records([]), *found])
        return self.guard("find" if limit else "export", run)

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        return self._frame(f, limit)

    def count(self, f: FlagFilter, cap: int) -> int:
        return int(self.guard("count", lambda: self.collection.count_documents(
            mongo_filter(f), limit=int(cap))))

    def export(self, f: FlagFilter) -> pl.DataFrame:
        return self._frame(f)

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        query = {} if since is None else {"flagged_at": {"$gte": since}}
        buffer = from_records([])
        for frame in self.find(query, sort=[("flagged_at", 1), ("_id", 1)],
                               batch_size=min(10_000, chunk_rows)):
            buffer = pl.concat([buffer, frame])
            while buffer.height >= chunk_rows:
                yield buffer.head(chunk_rows)
                buffer = buffer.slice(chunk_rows)
        if buffer.height:
            yield buffer

    def close(self) -> None:
        self.client.close()


def one_line(exc: Exception) -> str:
    """A pymongo error's first line, without the topology description."""
    return redact(str(exc).split("\n")[0].split(", Timeout:")[0])
