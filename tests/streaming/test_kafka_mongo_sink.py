"""MongoFlagStore on the real FerretDB: documents, idempotent upserts, indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from flagstore.mongo import INDEXES, MongoFlagStore, flag_documents
from fraudlake.contract import LAKE_SCHEMA, conform

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _flagged(n: int, start: int = 0) -> pl.DataFrame:
    rows = [{
        "transaction_id": f"tx{i:05d}", "user_id": i % 7, "ts": T0 + timedelta(seconds=i),
        "amount": Decimal("1234.56") + i, "lat": 48.85, "lon": 2.35, "utc_offset_min": 60,
        "is_fraud": i % 2 == 0, "fraud_scenario": "burst" if i % 2 == 0 else None,
        "currency": "EUR", "merchant_id": "m1", "merchant_name": "Shop", "category": "5411",
        "channel": "pos", "city": "Paris", "country": "FR",
        "high_amount": True, "high_frequency": i % 3 == 0, "unusual_hour": False,
        "geo_mismatch": i % 5 == 0, "flagged": True,
        "_topic": "transactions", "_partition": 2, "_offset": 100 + i,
    } for i in range(start, start + n)]
    schema = {**LAKE_SCHEMA, "_topic": pl.String, "_partition": pl.Int32, "_offset": pl.Int64}
    return conform(pl.DataFrame(rows, schema={k: schema[k] for k in rows[0]}))


def test_flag_documents_shape() -> None:
    doc = flag_documents(_flagged(1))[0]
    assert doc["_id"] == doc["transaction_id"] == "tx00000"
    assert doc["amount"] == "1234.56" and doc["amount_cents"] == 123456
    assert doc["rules"] == ["high_amount", "high_frequency", "geo_mismatch"]
    assert doc["source"] == "transactions:2:100"
    assert doc["ts"] == T0 and doc["ts"].utcoffset() == timedelta(0)
    assert "flagged_at" not in doc and "card_last4" not in doc


def test_flag_documents_without_optional_columns() -> None:
    df = _flagged(2).drop("merchant_name", "_topic", "_partition", "_offset", "is_fraud")
    docs = flag_documents(df)
    assert [d["merchant_name"] for d in docs] == [None, None]
    assert docs[0]["source"] is None and docs[0]["is_fraud"] is None
    assert flag_documents(df.head(0)) == []


def test_upsert_is_idempotent_and_keeps_flagged_at(mongo_uri: str, mongo_db) -> None:
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        assert store.upsert(_flagged(50)) == 50
        first = {d["_id"]: d["flagged_at"] for d in store.collection.find({}, {"flagged_at": 1})}
        assert store.upsert(_flagged(60)) == 60  # replay of 50 + 10 new
        coll = store.collection
        assert coll.count_documents({}) == 60
        again = {d["_id"]: d["flagged_at"] for d in coll.find({"_id": {"$in": list(first)}})}
        assert again == first
        doc = coll.find_one({"_id": "tx00007"})
        assert doc["amount"] == "1241.56" and doc["amount_cents"] == 124156
        assert doc["ts"] == T0 + timedelta(seconds=7)
        assert coll.count_documents({"rules": "geo_mismatch"}) == 12
        newest = coll.find({"user_id": 3}).sort("ts", -1).limit(1)[0]
        assert newest["transaction_id"] == "tx00059"
        names = set(coll.index_information())
        assert {name for name, _ in INDEXES} <= names
    finally:
        store.close()


def test_upsert_nothing_writes_nothing(mongo_uri: str, mongo_db) -> None:
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        assert store.upsert(_flagged(3).head(0)) == 0
        assert store.collection.count_documents({}) == 0
    finally:
        store.close()


def test_unreachable_server_fails_with_a_named_error() -> None:
    from flagstore.mongo import MongoSinkError

    with pytest.raises(MongoSinkError, match="fraud.flags"):
        MongoFlagStore("mongodb://127.0.0.1:9/", retry_seconds=0.5, log=lambda _m: None)


def test_replay_leaves_documents_unless_asked_to_rewrite(mongo_uri: str, mongo_db) -> None:
    """A replay is a duplicate-key insert: cheap on FerretDB (no per-document upsert scan)."""
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        store.upsert(_flagged(20))
        changed = _flagged(20).with_columns(pl.lit(False).alias("geo_mismatch"))
        assert store.upsert(changed) == 20 and store.replayed == 20
        coll = store.collection
        assert coll.count_documents({}) == 20
        assert coll.count_documents({"rules": "geo_mismatch"}) == 4  # left as first written
        first = coll.find_one({"_id": "tx00005"})["flagged_at"]
        rewriting = MongoFlagStore(mongo_uri, mongo_db.name, "flags", rewrite_replays=True)
        try:
            assert rewriting.upsert(changed) == 20 and rewriting.replayed == 20
        finally:
            rewriting.close()
        assert coll.count_documents({"rules": "geo_mismatch"}) == 0
        assert coll.count_documents({}) == 20
        assert coll.find_one({"_id": "tx00005"})["flagged_at"] == first
    finally:
        store.close()
