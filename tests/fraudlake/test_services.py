"""Smoke tests of the real servers started by fraudlake.services (via tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, Producer
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import DuplicateKeyError

from fraudlake import services


def test_kafka_produce_then_consume(kafka_bootstrap: str, make_topic) -> None:
    topic = make_topic(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                         "acks": "all", "compression.type": "zstd"})
    for i in range(10):
        producer.produce(topic, key=str(i % 3).encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(60):
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None
                got.append(msg.value())
            if len(got) >= 10:
                break
    finally:
        consumer.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(10))


def test_mongo_insert_unique_index_upsert_find(mongo_collection) -> None:
    coll = mongo_collection
    coll.create_index([("ts", DESCENDING)])
    coll.create_index([("user_id", ASCENDING), ("ts", DESCENDING)])
    coll.create_index("tx", unique=True)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    coll.insert_many([{"_id": i, "tx": f"t{i}", "ts": t0.replace(minute=i)} for i in range(5)],
                     ordered=False)
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 99, "tx": "t1"})

    ops = [UpdateOne({"_id": i}, {"$set": {"tx": f"t{i}", "n": i},
                                  "$setOnInsert": {"first": True}}, upsert=True)
           for i in (3, 4, 5)]
    res = coll.bulk_write(ops, ordered=False)
    assert (res.upserted_count, res.matched_count) == (1, 2)
    assert coll.count_documents({}) == 6
    newest = list(coll.find({}, {"tx": 1}).sort("ts", DESCENDING).limit(2))
    assert [d["tx"] for d in newest] == ["t4", "t3"]
    assert coll.find_one({"_id": 5})["first"] is True
    assert "first" not in coll.find_one({"_id": 4})


def test_status_cli_reports_running_servers(kafka_bootstrap: str, mongo_uri: str) -> None:
    out = subprocess.run([sys.executable, "-m", "fraudlake.services", "status"],
                         capture_output=True, text=True, check=True).stdout
    assert f"kafka: ready at {kafka_bootstrap}" in out
    assert f"mongo: ready at {mongo_uri}" in out


def test_cli_rejects_unknown_server() -> None:
    proc = subprocess.run([sys.executable, "-m", "fraudlake.services", "up", "redis"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "redis" in proc.stderr


def test_port_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDLAKE_KAFKA_PORT", "19092")
    monkeypatch.setenv("FRAUDLAKE_MONGO_PORT", "37017")
    assert services.kafka_server().address == "127.0.0.1:19092"
    assert services.mongo_server().address == "mongodb://127.0.0.1:37017/"
