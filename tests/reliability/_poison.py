"""A catalogue of malformed Kafka values (and of odd-but-valid ones) for the poison tests and
``bench/fault_poison.py``.

Each ``Poison`` turns one valid event (the JSON object a producer sends, as a dict) into the
bytes of a malformed message and names a fragment of the reason the decoder must give. ``mix``
interleaves them with valid values at a given fraction, deterministically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

CORE = ("transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min")


@dataclass(frozen=True)
class Poison:
    kind: str
    make: Callable[[dict], bytes]
    reason: str  # a fragment the dead letter's reason must contain


def _dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _with(**changes: object) -> Callable[[dict], bytes]:
    return lambda ev: _dumps({**ev, **changes})


def _without(name: str) -> Callable[[dict], bytes]:
    return lambda ev: _dumps({k: v for k, v in ev.items() if k != name})


def _raw_number(name: str, token: bytes) -> Callable[[dict], bytes]:
    """The event with ``name``'s value replaced by a raw JSON token (NaN, 1e400…)."""
    def make(ev: dict) -> bytes:
        body = _dumps({k: v for k, v in ev.items() if k != name})
        return body[:-1] + b', "' + name.encode() + b'": ' + token + b"}"
    return make


def _bad_utf8(ev: dict) -> bytes:
    return _dumps({**ev, "merchant_name": "@@"}).replace(b"@@", b"\xff\xfe")


def _duplicate(name: str, value: object) -> Callable[[dict], bytes]:
    def make(ev: dict) -> bytes:
        body = _dumps(ev)
        return body[:-1] + b', "' + name.encode() + b'": ' + _dumps(value) + b"}"
    return make


POISON: tuple[Poison, ...] = (
    Poison("not json", lambda ev: b"this is not json", "not JSON"),
    Poison("truncated json", lambda ev: _dumps(ev)[:37], "not JSON"),
    Poison("empty message", lambda ev: b"", "not JSON"),
    Poison("json array", lambda ev: _dumps([ev]), "not a JSON object"),
    Poison("json scalar", lambda ev: b"42", "not a JSON object"),
    Poison("json string", lambda ev: b'"hello"', "not a JSON object"),
    Poison("json null", lambda ev: b"null", "not a JSON object"),
    Poison("bad utf-8", _bad_utf8, "not UTF-8"),
    Poison("lone surrogate", lambda ev: _dumps({**ev, "city": "\ud800"}), "surrogate"),
    Poison("amount is a list", _with(amount=["12.00"]), "field amount has the wrong type"),
    Poison("amount is a bool", _with(amount=True), "amount is not a decimal number"),
    Poison("amount is an object", _with(amount={"$gt": 0}), "field amount has the wrong type"),
    Poison("user_id is text", _with(user_id="alice"), "user_id is not an integer"),
    Poison("user_id is a float", _with(user_id=12.5), "user_id is not an integer"),
    Poison("user_id overflows", _raw_number("user_id", b"123456789012345678901234"),
           "user_id is not an integer"),
    Poison("transaction_id is a number", _with(transaction_id=12345),
           "transaction_id is not a JSON string"),
    *(Poison(f"missing {name}", _without(name), f"missing field {name}") for name in CORE),
    Poison("null ts", _with(ts=None), "missing field ts"),
    Poison("lat NaN", _raw_number("lat", b"NaN"), "NaN"),
    Poison("lon Infinity", _raw_number("lon", b"-Infinity"), "NaN/Infinity"),
    Poison("lat 1e400", _raw_number("lat", b"1e400"), "out of range"),
    Poison("amount NaN text", _with(amount="NaN"), "amount is not a decimal number"),
    # ~1 MB: under the broker's default limit (1,048,588 bytes) but over the producer's
    # (1,000,000): the DLQ cannot hold it whole, it keeps the first MAX_MESSAGE_BYTES
    Poison("huge merchant_name (~1 MB)", _with(merchant_name="x" * 1_040_000),
           "-byte limit"),
    Poison("long merchant_name (300 chars)", _with(merchant_name="m" * 300),
           "merchant_name is longer than"),
    Poison("huge transaction_id", _with(transaction_id="t" * 5000),
           "transaction_id is longer than"),
    Poison("negative amount", _with(amount="-0.01"), "amount is negative"),
    Poison("amount too large", _with(amount="1000000.01"), "amount above"),
    Poison("too many decimals", _with(amount="12.345"), "more than 2 decimals"),
    Poison("lat 91", _with(lat=91.0), "lat out of range"),
    Poison("lon -181", _with(lon=-181.0), "lon out of range"),
    Poison("utc offset 15 h", _with(utc_offset_min=900), "utc_offset_min out of range"),
    Poison("ts far future", _with(ts="2999-01-01T00:00:00+00:00"), "in the future"),
    Poison("ts far past", _with(ts="1970-01-01T00:00:00+00:00"), "ts before"),
    Poison("ts not a timestamp", _with(ts="last tuesday"), "ts is not ISO-8601"),
    Poison("ts epoch number", _with(ts=1_700_000_000), "ts is not ISO-8601"),
    Poison("ts without offset", _with(ts="2024-01-01T10:00:00"), "ts is not ISO-8601"),
    Poison("is_fraud text", _with(is_fraud="yes"), "is_fraud is not a boolean"),
    Poison("duplicate amount key", _duplicate("amount", "-5.00"), "duplicate key amount"),
    Poison("duplicate user_id key", _duplicate("user_id", 7), "duplicate key user_id"),
    Poison("deeply nested", lambda ev: b"{\"x\": " + b"[" * 5_000 + b"]" * 5_000 + b"}",
           "not JSON"),
    Poison("trailing garbage", lambda ev: _dumps(ev) + b" }", "not JSON"),
    Poison("two objects", lambda ev: _dumps(ev) + _dumps(ev), "not JSON"),
)

#: Odd but valid encodings of the SAME event (decode to exactly the same row).
VALID_VARIANTS: tuple[tuple[str, Callable[[dict], bytes]], ...] = (
    ("unknown extra fields", lambda ev: _dumps({**ev, "loyalty": {"tier": [1, 2]}, "x": None})),
    ("keys reordered", lambda ev: _dumps(dict(reversed(list(ev.items()))))),
    ("pretty printed", lambda ev: json.dumps(ev, indent=2).encode()),
    ("surrounding whitespace", lambda ev: b"  " + _dumps(ev) + b"\t "),
)


def mix(values: list[bytes], fraction: float, *, variants: bool = True
        ) -> list[tuple[bytes, int | None, str | None]]:
    """Interleave poison among ``values`` so that ``fraction`` of the output is poison.

    Returns (bytes, index of the valid value it stands for or None, expected reason fragment or
    None). Poison kinds cycle through the catalogue; every 7th valid value gets an odd-but-valid
    encoding when ``variants``. Deterministic.
    """
    out: list[tuple[bytes, int | None, str | None]] = []
    n_poison = max(1, round(len(values) * fraction / (1 - fraction)))
    every = len(values) / n_poison
    made = 0
    for i, value in enumerate(values):
        if variants and i % 7 == 3:
            _name, variant = VALID_VARIANTS[(i // 7) % len(VALID_VARIANTS)]
            value = variant(json.loads(value))
        out.append((value, i, None))
        while made < n_poison and (made + 1) * every <= i + 1:
            p = POISON[made % len(POISON)]
            out.append((p.make(json.loads(values[i])), None, p.reason))
            made += 1
    return out
