"""Decoding raw JSON records: typed rows for valid ones, a dead letter with a reason otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pytest

from fraudlake.contract import EVENT_SCHEMA
from streaming.decode import DECODED_SCHEMA, RawRecord, decode_batch

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GOOD = {
    "transaction_id": "t1", "user_id": 42, "ts": "2025-06-01T10:00:00.5+02:00",
    "amount": "1234.50", "lat": 48.85, "lon": 2.35, "utc_offset_min": 120, "is_fraud": False,
    "fraud_scenario": None, "currency": "EUR", "merchant_id": "m1", "merchant_name": "Café",
    "category": "5812", "channel": "pos", "city": "Paris", "country": "FR",
    "card_last4": "0042", "device_id": None,
}


def _rec(value: object, offset: int = 0) -> RawRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawRecord(raw, b"42", "tx", 3, offset)


def _one(value: object) -> tuple[pl.DataFrame, list]:
    return decode_batch([_rec(value)], now=NOW)


def test_valid_record_is_typed_exactly() -> None:
    df, dead = _one(GOOD)
    assert dead == []
    assert df.schema == pl.Schema(DECODED_SCHEMA)
    row = df.row(0, named=True)
    assert row["amount"] == Decimal("1234.50")
    assert row["ts"] == datetime(2025, 6, 1, 8, 0, 0, 500000, tzinfo=UTC)
    assert (row["user_id"], row["is_fraud"], row["merchant_name"]) == (42, False, "Café")
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("tx", 3, 0)


def test_core_columns_alone_and_numeric_amount() -> None:
    core = {k: GOOD[k] for k in ("transaction_id", "user_id", "ts", "lat", "lon",
                                 "utc_offset_min")}
    df, dead = _one({**core, "amount": 12.3, "unknown_key": [1, 2]})
    assert dead == [] and df["amount"].to_list() == [Decimal("12.30")]
    assert df["currency"].to_list() == [None] and df["is_fraud"].to_list() == [None]


POISON = [
    (b"not json at all", "not JSON"),
    (b"", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"transaction_id": "t", "lat": NaN}', "NaN"),
    (b'{"transaction_id": "t", "lat": 1e400}', "out of range"),
    ({k: v for k, v in GOOD.items() if k != "user_id"}, "missing field user_id"),
    ({**GOOD, "ts": None}, "missing field ts"),
    ({**GOOD, "user_id": True}, "user_id is not an integer"),
    ({**GOOD, "user_id": "abc"}, "user_id is not an integer"),
    ({**GOOD, "user_id": 1.5}, "user_id is not an integer"),
    ({**GOOD, "lon": {"x": 1}}, "field lon has the wrong type"),
    ({**GOOD, "transaction_id": ["a"]}, "field transaction_id has the wrong type"),
    ({**GOOD, "lat": "north"}, "lat is not a number"),
    ({**GOOD, "lat": "NaN"}, "lat is not a finite number"),
    ({**GOOD, "lat": 91.0}, "lat out of range"),
    ({**GOOD, "lon": -180.5}, "lon out of range"),
    ({**GOOD, "amount": "-5.00"}, "amount is negative"),
    ({**GOOD, "amount": -0.01}, "amount is negative"),
    ({**GOOD, "amount": "1000000.01"}, "amount above"),
    ({**GOOD, "amount": "12.345"}, "more than 2 decimals"),
    ({**GOOD, "amount": 0.001}, "more than 2 decimals"),
    ({**GOOD, "amount": "12,34"}, "amount is not a decimal number"),
    ({**GOOD, "amount": "Infinity"}, "amount is not a decimal number"),
    ({**GOOD, "amount": True}, "amount is not a decimal number"),
    ({**GOOD, "ts": "2025-06-01T10:00:00"}, "ts is not ISO-8601 with a UTC offset"),
    ({**GOOD, "ts": "yesterday"}, "ts is not ISO-8601"),
    ({**GOOD, "ts": "2025-06-03T12:00:01Z"}, "in the future"),
    ({**GOOD, "ts": "1989-12-31T23:59:59Z"}, "ts before 1990-01-01"),
    ({**GOOD, "utc_offset_min": 15 * 60}, "utc_offset_min out of range"),
    ({**GOOD, "merchant_name": "x" * 257}, "merchant_name is longer than 256"),
    ({**GOOD, "transaction_id": ""}, "transaction_id is empty"),
    ({**GOOD, "is_fraud": "yes"}, "is_fraud is not a boolean"),
]


@pytest.mark.parametrize(("value", "reason"), POISON)
def test_poison_becomes_a_dead_letter_with_its_reason(value: object, reason: str) -> None:
    df, dead = _one(value)
    assert df.height == 0 and len(dead) == 1
    assert reason in dead[0].reason
    assert (dead[0].topic, dead[0].partition, dead[0].offset) == ("tx", 3, 0)
    assert dead[0].raw == _rec(value).value and "\n" not in dead[0].reason


def test_mixed_batch_keeps_every_valid_record_in_order() -> None:
    records = []
    for i in range(200):
        if i % 10 == 3:
            value, _ = POISON[i % len(POISON)]
        else:
            value = {**GOOD, "transaction_id": f"t{i}", "amount": f"{i}.{i % 100:02d}"}
        records.append(_rec(value, offset=i))
    df, dead = decode_batch(records, now=NOW)
    assert df.height == 180 and len(dead) == 20
    assert df["_offset"].to_list() == [i for i in range(200) if i % 10 != 3]
    assert sorted(d.offset for d in dead) == [i for i in range(200) if i % 10 == 3]
    assert df["amount"].to_list()[:2] == [Decimal("0.00"), Decimal("1.01")]


def test_structural_fallback_decides_like_the_fast_path() -> None:
    values = [{**GOOD, "transaction_id": f"t{i}", "lat": 91 if i == 5 else 1.0}
              for i in range(20)]
    fast, fast_dead = decode_batch([_rec(v, i) for i, v in enumerate(values)], now=NOW)
    slow_records = [_rec(v, i) for i, v in enumerate(values)] + [_rec(b"{oops", 20)]
    slow, slow_dead = decode_batch(slow_records, now=NOW)
    assert slow.equals(fast)
    assert [d.reason for d in slow_dead[:1]] == [d.reason for d in fast_dead]
    assert slow_dead[1].offset == 20


def test_pretty_printed_json_is_valid() -> None:
    df, dead = _one(json.dumps(GOOD, indent=2).encode())
    assert dead == [] and df["transaction_id"].to_list() == ["t1"]


def test_empty_batch() -> None:
    df, dead = decode_batch([])
    assert df.height == 0 and dead == [] and list(df.schema) == [*EVENT_SCHEMA, "_topic",
                                                                 "_partition", "_offset"]


def test_number_out_of_range_in_a_big_batch_is_isolated() -> None:
    good = [_rec({**GOOD, "transaction_id": f"t{i}"}, i) for i in range(300)]
    bad = [_rec(b'{"transaction_id": "x", "lat": 1e400}', 1000),
           _rec(b'{"transaction_id": "y", "lat": -Infinity}', 1001)]
    records = good[:100] + bad[:1] + good[100:200] + bad[1:] + good[200:]
    df, dead = decode_batch(records, now=NOW)
    assert df.height == 300 and [d.offset for d in dead] == [1000, 1001]
    assert "out of range" in dead[0].reason and "NaN/Infinity" in dead[1].reason


def test_clean_batches_take_the_typed_path_and_decode_exactly_as_the_text_path() -> None:

    from streaming import decode
    from streaming.produce import encode_events
    from streaming.validate import validate
    from tests.streaming._stream_events import random_events

    _, values = encode_events(random_events(3000, n_users=50, seed=3))
    variants = [json.dumps({**GOOD, "transaction_id": f"v{i}", **change}).encode()
                for i, change in enumerate([{"user_id": 999_999_999_999_999_999},
                                            {"lat": 90, "lon": -180}, {"is_fraud": None},
                                            {"amount": 12.5}, {"utc_offset_min": -720}])]
    records = [RawRecord(v, b"k", "tx", 1, i) for i, v in enumerate([*values, *variants])]
    fast = decode._read_typed(records, NOW.replace(year=2030))
    assert fast is not None  # every record is valid: the typed path decided the batch
    text, bad = validate(decode._read_text(records), NOW.replace(year=2030))
    assert bad.is_empty() and fast.equals(text)


@pytest.mark.parametrize("change", [{"user_id": 1_000_000_000_000_000_000},
                                    {"user_id": "12"}, {"lat": "1.5"}, {"is_fraud": 1},
                                    {"lat": 90.5}])
def test_a_record_the_typed_path_refuses_is_decided_the_text_way(change: dict) -> None:
    from streaming import decode

    records = [_rec(GOOD), _rec({**GOOD, "transaction_id": "t2", **change}, offset=1)]
    assert decode._read_typed(records, NOW) is None
    df, dead = decode_batch(records, now=NOW)
    valid_text = change in ({"user_id": "12"}, {"lat": "1.5"})  # numeric text is accepted
    assert df.height == (2 if valid_text else 1) and len(dead) == (0 if valid_text else 1)
