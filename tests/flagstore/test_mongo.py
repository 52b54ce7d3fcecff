"""flagstore.mongo on the real FerretDB: documents, idempotent upserts, indexes, the reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from flagstore.mongo import INDEXES, MongoFlagReader, MongoFlagStore, flag_documents
from flagstore.query import FlagFilter
from flagstore.schema import FLAG_SCHEMA, flag_frame
from fraudlake.contract import LAKE_SCHEMA, RULE_NAMES, RULE_SCHEMA, conform

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
    schema = {**LAKE_SCHEMA, **RULE_SCHEMA, "_topic": pl.String, "_partition": pl.Int32,
              "_offset": pl.Int64}
    return conform(pl.DataFrame(rows, schema={k: schema[k] for k in rows[0]}))


def test_flag_documents_shape() -> None:
    doc = flag_documents(_flagged(1))[0]
    assert doc["_id"] == doc["transaction_id"] == "tx00000"
    assert doc["amount"] == "1234.56" and doc["amount_cents"] == 123456
    assert doc["rules_fired"] == ["high_amount", "high_frequency", "geo_mismatch"]
    assert doc["rule_set_id"] is None and doc["score"] is None and doc["evidence"] is None
    assert doc["source"] == "transactions:2:100"
    assert doc["ts"] == T0 and doc["ts"].utcoffset() == timedelta(0)
    assert "flagged_at" not in doc and "rules" not in doc


def test_flag_documents_of_engine_output_carry_rule_set_score_and_evidence(
        mongo_uri: str, mongo_db) -> None:
    from streaming.engine import RuleEngine

    frame = _flagged(2).drop("high_amount", "high_frequency", "unusual_hour", "geo_mismatch",
                             "flagged").with_columns(
        lat=pl.Series([34.0522, 55.7558]), lon=pl.Series([-118.2437, 37.6173]),
        city=pl.Series(["Los Angeles", "Moscow"]), user_id=pl.lit(1, pl.Int64),
        ts=pl.Series([T0, T0 + timedelta(minutes=15, seconds=30)]).dt.cast_time_unit("us"))
    engine = RuleEngine()
    decided = engine.process(frame)
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        store.upsert(decided.filter("flagged"))
        doc = store.collection.find_one({"_id": "tx00001"})
    finally:
        store.close()
    assert doc["rule_set_id"] == engine.rule_set_id and doc["score"] == 2.0
    assert doc["rules_fired"] == ["high_amount", "geo_mismatch"] and "rules" not in doc
    travel = doc["evidence"]["geo_mismatch"]
    assert travel["from_city"] == "Los Angeles" and travel["minutes"] == 15.5
    assert round(travel["km"]) in range(9_700, 9_800) and travel["kmh"] > 37_000
    assert doc["evidence"]["high_amount"]["amount"] == "1235.56"
    assert doc["evidence"]["high_amount"]["threshold"] == "1000.00"


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
        assert coll.count_documents({"rules_fired": "geo_mismatch"}) == 12
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

    store = MongoFlagStore("mongodb://127.0.0.1:9/", retry_seconds=0.5)  # connects lazily
    with pytest.raises(MongoSinkError, match="fraud.flags"):
        store.upsert(_flagged(1))


def test_v2_decision_fields_are_stored(mongo_uri: str, mongo_db) -> None:
    flagged = _flagged(2).drop(*RULE_NAMES).with_columns(
        rule_set_id=pl.lit("default-1@0123456789ab"),
        rules_fired=pl.lit(["high_amount"], pl.List(pl.String)), score=pl.lit(1.5),
        evidence=pl.lit('{"high_amount": {"amount": "1234.56", "threshold": "1000.00"}}'))
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        store.upsert(flagged)
        doc = store.collection.find_one({"_id": "tx00001"})
    finally:
        store.close()
    assert doc["rule_set_id"] == "default-1@0123456789ab" and doc["score"] == 1.5
    assert doc["rules_fired"] == ["high_amount"]
    assert doc["evidence"] == {"high_amount": {"amount": "1234.56", "threshold": "1000.00"}}


def test_reader_returns_what_the_store_wrote(mongo_uri: str, mongo_db) -> None:
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    reader = MongoFlagReader(mongo_uri, mongo_db.name, "flags")
    try:
        store.upsert(_flagged(30))
        got = reader.export(FlagFilter())
        assert got.schema == pl.Schema(FLAG_SCHEMA) and got.height == 30
        assert got["ts"].to_list() == sorted(got["ts"].to_list(), reverse=True)
        want = flag_frame(_flagged(30)).drop("flagged_at").sort("transaction_id")
        assert got.drop("flagged_at").sort("transaction_id").equals(want)
        assert reader.count(FlagFilter(rules=("geo_mismatch",)), 100) == 6
        assert reader.recent(FlagFilter(user_id=3), 2)["transaction_id"].to_list() == [
            "tx00024", "tx00017"]
        chunks = list(reader.read_since(None, 7))
        assert [c.height for c in chunks] == [7, 7, 7, 7, 2]
        assert pl.concat(chunks)["transaction_id"].n_unique() == 30
    finally:
        store.close()
        reader.close()


def test_replay_leaves_documents_unless_asked_to_rewrite(mongo_uri: str, mongo_db) -> None:
    """A replay is a duplicate-key insert: cheap on FerretDB (no per-document upsert scan)."""
    store = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    try:
        store.upsert(_flagged(20))
        changed = _flagged(20).with_columns(pl.lit(False).alias("geo_mismatch"))
        assert store.upsert(changed) == 20 and store.replayed == 20
        coll = store.collection
        assert coll.count_documents({}) == 20
        assert coll.count_documents({"rules_fired": "geo_mismatch"}) == 4  # left as first written
        first = coll.find_one({"_id": "tx00005"})["flagged_at"]
        rewriting = MongoFlagStore(mongo_uri, mongo_db.name, "flags", rewrite_replays=True)
        try:
            assert rewriting.upsert(changed) == 20 and rewriting.replayed == 20
        finally:
            rewriting.close()
        assert coll.count_documents({"rules_fired": "geo_mismatch"}) == 0
        assert coll.count_documents({}) == 20
        assert coll.find_one({"_id": "tx00005"})["flagged_at"] == first
    finally:
        store.close()
