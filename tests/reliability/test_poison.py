"""Poison input: every malformed message lands in the DLQ with a reason and its position; every
valid one is processed exactly as if the poison were absent.

Unit part: the whole catalogue (``_poison.POISON``) through ``decode_batch``, alone and mixed.
Service part: the same mixes (1% and 10%) through the real broker, the consumer and FerretDB,
compared with a run of the same valid events without poison.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest
from confluent_kafka import Producer

from flagstore.mongo import MongoFlagStore
from fraudlake.contract import MAX_MESSAGE_BYTES
from streaming.dead_letters import DLQ_REASON_HEADER
from streaming.decode import RawRecord, decode_batch
from streaming.kafka_io import ensure_topics, producer_config
from streaming.produce import encode_events
from tests.reliability._poison import POISON, VALID_VARIANTS, mix
from tests.streaming._kafka_data import (
    consume_config,
    lake_events,
    make_events,
    read_topic,
    run_consumer,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EVENT = {"transaction_id": "t1", "user_id": 42, "ts": "2025-06-01T10:00:00.5+02:00",
         "amount": "1234.50", "lat": 48.85, "lon": 2.35, "utc_offset_min": 120,
         "is_fraud": False, "fraud_scenario": None, "currency": "EUR", "city": "Paris"}
GOOD = json.dumps(EVENT).encode()


def _records(values: list[bytes]) -> list[RawRecord]:
    return [RawRecord(v, b"42", "tx", 1, i) for i, v in enumerate(values)]


@pytest.mark.parametrize("poison", POISON, ids=[p.kind for p in POISON])
def test_each_kind_is_a_dead_letter_with_reason_and_position(poison) -> None:
    bad = poison.make(EVENT)
    df, dead = decode_batch(_records([GOOD, bad, GOOD]), now=NOW)
    assert df.height == 2 and df["_offset"].to_list() == [0, 2]
    assert len(dead) == 1, [d.reason for d in dead]
    letter = dead[0]
    assert poison.reason in letter.reason
    assert (letter.topic, letter.partition, letter.offset, letter.key) == ("tx", 1, 1, b"42")
    assert letter.raw == bad[:MAX_MESSAGE_BYTES]  # whole, unless refused for its size
    assert "\n" not in letter.reason and len(letter.reason) < 200
    alone, alone_dead = decode_batch(_records([bad]), now=NOW)  # also without company
    assert alone.height == 0 and [d.reason for d in alone_dead] == [letter.reason]


@pytest.mark.parametrize("variant", VALID_VARIANTS, ids=[v[0] for v in VALID_VARIANTS])
def test_odd_but_valid_encodings_decode_to_the_same_row(variant) -> None:
    _name, make = variant
    plain, _ = decode_batch(_records([GOOD]), now=NOW)
    odd, dead = decode_batch(_records([make(EVENT)]), now=NOW)
    assert dead == [] and odd.equals(plain)


def test_zero_amount_numeric_user_id_text_and_surrogate_pairs_are_valid() -> None:
    """Documented leniencies: 0.00 is within the contract bounds; a numeric string user_id is
    accepted; an escaped surrogate PAIR is a proper character."""
    values = [json.dumps({**EVENT, "amount": "0.00"}).encode(),
              json.dumps({**EVENT, "user_id": "42"}).encode(),
              json.dumps({**EVENT, "city": "Zürich 😀"}).encode()]  # ensure_ascii: \ud83d\ude00
    df, dead = decode_batch(_records(values), now=NOW)
    assert dead == [] and df["user_id"].to_list() == [42, 42, 42]
    assert df["city"].to_list()[2] == "Zürich 😀" and str(df["amount"][0]) == "0.00"


@pytest.mark.parametrize("fraction", [0.01, 0.10, 0.5])
def test_mixed_batches_keep_exactly_the_valid_rows(fraction: float) -> None:
    events = make_events(3000, users=40, seed=3)
    _keys, values = encode_events(events)
    mixed = mix(values, fraction)
    clean, _ = decode_batch(_records(values), now=datetime.now(UTC))
    got_parts, dead = [], []
    for lo in range(0, len(mixed), 700):  # consumer-sized batches
        part, letters = decode_batch(
            [RawRecord(v, None, "tx", 0, lo + i) for i, (v, _, _) in enumerate(mixed[lo:lo + 700])])
        got_parts.append(part)
        dead += letters
    got = pl.concat(got_parts)
    expected = {i: r for i, (_, _, r) in enumerate(mixed) if r is not None}
    assert len(expected) >= fraction * len(mixed) * 0.99
    assert {d.offset: d.reason for d in dead}.keys() == expected.keys()
    assert all(expected[d.offset] in d.reason for d in dead)
    drop = ["_topic", "_partition", "_offset"]
    assert got.drop(drop).equals(clean.drop(drop))


# --- the real broker ---------------------------------------------------------------------------

def _produce_raw(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> list:
    """Produce (key, value) pairs in order; return each one's (partition, offset)."""
    producer = Producer({**producer_config(bootstrap), "message.max.bytes": 2_000_000})
    positions: list = [None] * len(messages)

    def delivered(i: int):
        def cb(err, msg) -> None:
            assert err is None, err
            positions[i] = (msg.partition(), msg.offset())
        return cb

    for i, (key, value) in enumerate(messages):
        producer.produce(topic, value=value, key=key, on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(60) == 0
    return positions


def _flags(store: MongoFlagStore) -> dict[str, list[str]]:
    return {d["_id"]: d["rules_fired"] for d in store.collection.find({}, {"rules_fired": 1})}


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return make_events(2000, users=25, seed=11)


@pytest.fixture(scope="module")
def run_stream(kafka_bootstrap: str, mongo_uri: str, tmp_path_factory) -> Iterator:
    """``run(messages) -> (consumer, lake frame, flags, topic, positions)`` on a fresh topic,
    lake and MongoDB database each time; all removed at the end."""
    from confluent_kafka.admin import AdminClient
    from pymongo import MongoClient

    topics: list[str] = []
    dbs: list[str] = []

    def run(messages: list[tuple[bytes, bytes]]):
        name = f"poison-{uuid.uuid4().hex[:8]}"
        topics.extend([name, f"{name}.dlq"])
        ensure_topics(kafka_bootstrap, [name], 4)
        positions = _produce_raw(kafka_bootstrap, name, messages)
        lake = tmp_path_factory.mktemp(name)
        dbs.append(name.replace("-", "_"))
        store = MongoFlagStore(mongo_uri, dbs[-1], "flags")
        try:
            consumer = run_consumer(consume_config(
                kafka_bootstrap, name, lake, batch_size=500, max_messages=len(messages),
                idle_timeout=60.0), store)
            return consumer, lake_events(lake), _flags(store), name, positions
        finally:
            store.close()

    yield run
    AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics(topics)
    with MongoClient(mongo_uri) as client:
        for db in dbs:
            client.drop_database(db)


@pytest.fixture(scope="module")
def clean_run(events: pl.DataFrame, run_stream):
    keys, values = encode_events(events)
    return run_stream(list(zip(keys, values, strict=True)))


@pytest.mark.parametrize("fraction", [0.01, 0.10])
def test_poisoned_stream_dead_letters_every_bad_message_and_loses_no_valid_one(
        fraction: float, events: pl.DataFrame, run_stream, clean_run,
        kafka_bootstrap: str) -> None:
    keys, values = encode_events(events)
    mixed = mix(values, fraction)
    messages, key = [], keys[0]
    for value, index, _reason in mixed:  # poison takes its neighbour's key: same partition
        key = keys[index] if index is not None else key
        messages.append((key, value))
    consumer, lake, flags, topic, positions = run_stream(messages)
    _, clean_lake, clean_flags, _, _ = clean_run

    poison = {positions[i]: (value, reason) for i, (value, _, reason) in enumerate(mixed)
              if reason is not None}
    assert len(poison) >= fraction * len(mixed) * 0.99
    kinds = {reason for _, _, reason in mixed if reason is not None}
    assert len(kinds) >= 10 and (fraction < 0.05 or kinds == {p.reason for p in POISON})
    assert consumer.stats.events == events.height
    assert consumer.stats.dead_letters == len(poison)
    # every valid event processed exactly as without poison: same lake rows, same flags
    assert lake.height == events.height and lake["transaction_id"].n_unique() == events.height
    assert lake.equals(clean_lake)
    assert len(clean_flags) > 50 and flags == clean_flags
    # every poison message in the DLQ: raw bytes, reason, position of the original
    dlq = read_topic(kafka_bootstrap, f"{topic}.dlq", len(poison), timeout=60)
    assert len(dlq) == len(poison)
    for m in dlq:
        h = dict(m.headers())
        assert h["fraudlake.topic"].decode() == topic
        where = (int(h["fraudlake.partition"]), int(h["fraudlake.offset"]))
        value, reason = poison.pop(where)
        assert (m.value() or b"") == value[:MAX_MESSAGE_BYTES]
        assert reason in h[DLQ_REASON_HEADER].decode()
    assert poison == {}


def test_a_batch_of_only_oversized_messages() -> None:
    df, dead = decode_batch(_records([b"{" + b" " * 70_000 + b"}", b"x" * 65_537]), now=NOW)
    assert df.height == 0 and [d.offset for d in dead] == [0, 1]
    assert all("-byte limit" in d.reason and len(d.raw) == 65_536 for d in dead)
