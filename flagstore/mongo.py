"""MongoDB flag store: one ``bulk_write`` of idempotent upserts per micro-batch.

Same protocol as ``flagstore.sqlite.FlagStore`` (``upsert(flagged) -> int``). One document
per flagged transaction, ``_id = transaction_id``, written with ``insert_many(ordered=False)``.
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
env ``MONGO_RETRY_SECONDS``, default 120 s; keep it below the consumer's
``max.poll.interval.ms`` (300 s) — logging ``mongo sink: … retrying`` and, once a write goes
through again, ``mongo sink: recovered after Xs``; after the budget a ``MongoSinkError`` says
how long it tried. One attempt can take up to the 5 s server-selection timeout (60 s socket
timeout for a server that hangs mid-request), so the bound is budget + one attempt. Anything
else fails fast naming the collection. Log lines and errors never carry the URI (it may hold
a password): only the database.collection and the error's type or (redacted) text.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import polars as pl
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from fraudlake.cli import seconds_from_env
from fraudlake.contract import RULE_NAMES

DOC_FIELDS: tuple[str, ...] = (
    "transaction_id", "user_id", "ts", "amount", "amount_cents", "currency", "merchant_id",
    "merchant_name", "category", "channel", "city", "country", "lat", "lon", "utc_offset_min",
    "is_fraud", "fraud_scenario", "rules", "source",
)

#: Indexes behind the dashboard's queries (newest flags, one user's flags, by rule, by amount).
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("ts_desc", [("ts", DESCENDING)]),
    ("user_ts", [("user_id", ASCENDING), ("ts", DESCENDING)]),
    ("rules", [("rules", ASCENDING)]),
    ("amount_cents", [("amount_cents", DESCENDING)]),
    ("flagged_at", [("flagged_at", DESCENDING)]),  # the dashboard's incremental updates
)


DUPLICATE_KEY = 11000
CHUNK = 5_000  # documents per request
MONGO_RETRY_ENV = "MONGO_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^@/\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host`` anywhere in ``text``."""
    return _CREDENTIALS.sub(r"\1***@", text)


def retry_seconds_from_env(env: Mapping[str, str] | None = None) -> float:
    """The retry budget from env ``MONGO_RETRY_SECONDS`` (default 120); a bad value is a
    one-line ``UsageError``."""
    return seconds_from_env(MONGO_RETRY_ENV, DEFAULT_RETRY_SECONDS, env)


class MongoSinkError(RuntimeError):
    """Writing flags to MongoDB failed terminally (or transient errors outlasted the retries)."""


def flag_documents(flagged: pl.DataFrame) -> list[dict]:
    """Flagged events (contract + rule columns) → MongoDB flag documents (without flagged_at)."""
    if flagged.is_empty():
        return []
    cols = flagged.columns
    fired = [pl.when(pl.col(r)).then(pl.lit(r)) for r in RULE_NAMES if r in cols]
    exprs: list[pl.Expr] = [
        pl.col("transaction_id").alias("_id"),
        pl.col("amount").cast(pl.String).alias("amount"),
        (pl.col("amount").cast(pl.Decimal(20, 2)) * 100).cast(pl.Int64).alias("amount_cents"),
        (pl.concat_list(fired).list.drop_nulls() if fired else pl.lit([], pl.List(pl.String)))
        .alias("rules"),
    ]
    if {"_topic", "_partition", "_offset"} <= set(cols):
        exprs.append(pl.format("{}:{}:{}", "_topic", "_partition", "_offset").alias("source"))
    else:
        exprs.append(pl.lit(None, pl.String).alias("source"))
    derived = {"amount", "amount_cents", "rules", "source"}
    keep = [pl.col(c) for c in DOC_FIELDS if c in cols and c not in derived]
    missing = [pl.lit(None).alias(c) for c in DOC_FIELDS if c not in cols and c not in derived]
    docs = flagged.select(*exprs, *keep, *missing).to_dicts()
    for d in docs:  # pymongo stores aware datetimes as UTC; make the tz explicit and exact
        ts = d["ts"]
        if ts is not None:
            d["ts"] = ts.astimezone(UTC)
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
    """``FlagStore`` over a MongoDB (or FerretDB) collection."""

    thread_safe = True  # pymongo clients may be used from a background writer thread

    def __init__(self, uri: str, db: str = "fraud", collection: str = "flags", *,
                 retry_seconds: float | None = None, max_delay: float = 5.0,
                 log: Callable[[str], None] | None = None,
                 rewrite_replays: bool = False) -> None:
        self._client: MongoClient = MongoClient(uri, tz_aware=True,
                                                serverSelectionTimeoutMS=5_000,
                                                connectTimeoutMS=5_000, socketTimeoutMS=60_000)
        self.collection: Collection = self._client[db][collection]
        self.retry_seconds = (retry_seconds_from_env() if retry_seconds is None
                              else retry_seconds)
        self.max_delay = max_delay
        self.rewrite_replays = rewrite_replays
        self.replayed = 0  # documents found already written (a replay)
        self.retries = 0
        self.outages = 0  # outages that ended in a recovery
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self._with_retry("create indexes", self.ensure_indexes)

    def ensure_indexes(self) -> None:
        for name, keys in INDEXES:
            self.collection.create_index(keys, name=name)

    def upsert(self, flagged: pl.DataFrame) -> int:
        """Upsert every row of ``flagged``; returns the number of documents written.

        ``insert_many(ordered=False)`` of full documents; ids that already exist (duplicate
        key: a replay, or a retry of a request cut off mid-way) are left as they are, or, with
        ``rewrite_replays``, upserted (``$set``) keeping their flagged_at.
        """
        docs = flag_documents(flagged)
        now = datetime.now(UTC)
        for lo in range(0, len(docs), CHUNK):  # short requests: a retry resends little
            chunk = docs[lo:lo + CHUNK]
            existing = self._with_retry(f"insert of {len(chunk)} flags",
                                        lambda c=chunk: self._insert_new(c, datetime.now(UTC)))
            self.replayed += len(existing)
            if existing and self.rewrite_replays:
                ops = upsert_ops(existing, now)
                self._with_retry(f"bulk_write of {len(ops)} replayed flags",
                                 lambda o=ops: self.collection.bulk_write(o, ordered=False))
        return len(docs)

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

    def _with_retry(self, what: str, action: Callable[[], object]) -> object:
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
                self._log(f"mongo sink: {target}: {what}: server unreachable or transient "
                          f"error ({type(exc).__name__}); retrying in {delay:.1f}s "
                          f"({time.monotonic() - t0:.0f}s of {self.retry_seconds:.0f}s)")
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if failures:
                self.outages += 1
                self._log(f"mongo sink: {target}: recovered after "
                          f"{time.monotonic() - t0:.1f}s ({failures} retries)")
            return result

    def close(self) -> None:
        self._client.close()
