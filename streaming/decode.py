"""Decode raw Kafka records (JSON bytes) into a contract-typed Polars frame, or dead letters.

``decode_batch(records)`` is the one decoding step of every live path (Kafka consumer, embedded
demo). Valid records become rows typed exactly as ``fraudlake.contract.EVENT_SCHEMA`` plus the
provenance columns ``_topic, _partition, _offset``; every invalid record becomes a
``DeadLetter`` carrying its raw bytes, a one-line reason and its position. Nothing raises on
bad data.

How it stays fast: the whole batch is joined into NDJSON and read by ``pl.read_ndjson`` with
every contract field read as *text* (numbers keep their JSON text, booleans read as
``"true"``), then every check and cast is a vectorised Polars expression
(``streaming.validate``). Only when the batch is not well-formed JSON (a syntax error, ``NaN``,
a number out of double range, a value that is not an object, bytes that are not UTF-8) does
one vectorised regex screen pick the suspicious records for ``json.loads``; the rest is read
once more (bisection inside 256-line chunks finds any line the screen missed). So a poisoned
batch costs about two reads instead of one: ``bench/bench_decode.py`` measures clean batches
and 1% / 10% poison of every kind against per-record ``json.loads``.

Typing rules (what counts as "wrong type"):

* ``user_id``, ``utc_offset_min``: JSON integers (a numeric string is accepted; ``true``,
  ``1.5``, objects, arrays are not). ``lat``/``lon``: finite numbers in range.
* ``amount``: a JSON string ``"12.34"`` (parsed exactly) or a JSON number. A JSON number is a
  double to every standard parser, so its shortest decimal form is what gets parsed; at most two
  decimals (trailing zeros allowed), ``0 <= amount <= MAX_AMOUNT``.
* ``ts``: ISO-8601 text *with* an offset (``Z`` or ``+02:00``), converted to UTC microseconds,
  not before ``MIN_TS`` and not more than ``MAX_FUTURE_SECONDS`` ahead of the wall clock.
* ``is_fraud``: ``true``/``false`` if present. Text fields: at most ``MAX_STRING_LEN``
  characters, never an object or array; ``transaction_id`` must be a JSON string. Unknown keys
  are ignored.

Refused as well: a value over ``MAX_MESSAGE_BYTES`` (unread), bytes that are not UTF-8, a
string holding a lone UTF-16 surrogate escape (``"\\ud800"``), and a required key given twice
(``{"amount": "1.00", "amount": "-5"}``: parsers disagree on which wins). A required key inside
a nested object of an unknown field counts as a second occurrence too.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import polars as pl

from fraudlake.contract import MAX_MESSAGE_BYTES
from streaming.validate import (
    DECODED_SCHEMA,
    PROVENANCE_SCHEMA,
    RAW_SCHEMA,
    SHOW,
    TYPED_SCHEMA,
    validate,
    validate_typed,
)

_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # a UTF-16 surrogate escape

# shapes producers never send and the NDJSON reader may reject: a 3+-digit exponent (maybe out
# of double range), deep nesting, a second top-level value (`}{`, a trailing `}`)
_ODD_SHAPE = r"[0-9][eE][+-]?[0-9]{3}|([\[{]\s*){8}|\}\s*\{|\}\s*\}\s*$"

_SUSPECT = "|".join([
    r"^\s*$", r"^\s*[^\s{]", r"[^\s}]\s*$",  # empty, not an object
    r"[\n\r]",  # a record spanning lines
    r"[:,\[]\s*-?(NaN|Infinity)",  # bare NaN/Infinity
    _SURROGATE.pattern, _ODD_SHAPE,
])

__all__ = ["DECODED_SCHEMA", "PROVENANCE_SCHEMA", "DeadLetter", "RawRecord", "classify",
           "decode_batch"]


class RawRecord(NamedTuple):
    """One Kafka record as received: value bytes, key bytes and its position (a named tuple:
    one is built per message, ~0.25 µs cheaper than a frozen dataclass)."""

    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be decoded: raw bytes, a one-line reason and its position."""

    raw: bytes
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None = None  # the record's Kafka key, kept on the DLQ message


def decode_batch(
    records: Sequence[RawRecord], now: datetime | None = None
) -> tuple[pl.DataFrame, list[DeadLetter]]:
    """Valid records as a ``DECODED_SCHEMA`` frame (input order), invalid ones as dead letters."""
    now = now or datetime.now(UTC)
    if not records:
        return pl.DataFrame(schema=DECODED_SCHEMA), []
    dead: list[DeadLetter] = []
    values = [r.value for r in records]
    if max(map(len, values)) > MAX_MESSAGE_BYTES:
        dead = [_oversized(r) for r in records if len(r.value) > MAX_MESSAGE_BYTES]
        records = [r for r in records if len(r.value) <= MAX_MESSAGE_BYTES]
    if not dead:
        fast = _read_typed(records, now, values)
        if fast is not None:
            return fast, []
    raw = _read_text(records)
    if raw is None:
        raw, unreadable = _structural_fallback(records)
        dead += unreadable
    good, bad = validate(raw, now)  # row index `_i` is a position in `records`
    for index, reason in bad.iter_rows():
        dead.append(_dead(records[index], reason))
    dead.sort(key=lambda d: (d.topic, d.partition, d.offset))
    return good, dead


def _dead(record: RawRecord, reason: str) -> DeadLetter:
    return DeadLetter(record.value, reason, record.topic, record.partition, record.offset,
                      record.key)


def _oversized(record: RawRecord) -> DeadLetter:
    """Refused unread. The dead letter keeps only the first ``MAX_MESSAGE_BYTES`` (a message
    near the broker's size limit would not fit in a DLQ message with its headers, and the
    consumer would stop on it); its position still points at the whole original."""
    return DeadLetter(record.value[:MAX_MESSAGE_BYTES],
                      f"message of {len(record.value):,} bytes is over the "
                      f"{MAX_MESSAGE_BYTES:,}-byte limit (DLQ keeps the first "
                      f"{MAX_MESSAGE_BYTES:,})", record.topic, record.partition, record.offset,
                      record.key)


def _provenance(records: Sequence[RawRecord], index: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "_i": index,
            "_topic": [records[i].topic for i in index],
            "_partition": [records[i].partition for i in index],
            "_offset": [records[i].offset for i in index],
            "_line": [records[i].value for i in index],
        },
        schema={"_i": pl.Int64(), **PROVENANCE_SCHEMA, "_line": pl.Binary()},
    )


def _read_typed(records: Sequence[RawRecord], now: datetime,
                values: list[bytes] | None = None) -> pl.DataFrame | None:
    """The fastest path, for a batch whose every record is valid: one ``read_ndjson`` with
    numbers and booleans typed by the reader (``TYPED_SCHEMA``) and the checks that remain; None
    when any record is not like that (a wrong JSON type, a failed check) — then the batch is
    decoded the text way, which finds each bad record and its reason. ``values``: the records'
    values, if the caller has them."""
    values = [r.value for r in records] if values is None else values
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
        return None
    try:
        typed = pl.read_ndjson(io.BytesIO(joined), schema=TYPED_SCHEMA)
    except Exception:  # noqa: BLE001 - a wrong type or bad JSON: the text way decides
        return None
    if typed.height != len(values):
        return None
    topics = {r.topic for r in records}  # one topic per batch: a repeated literal is cheaper
    typed = typed.with_columns(
        _topic=(pl.lit(next(iter(topics)), pl.String) if len(topics) == 1
                else pl.Series([r.topic for r in records], dtype=pl.String)),
        _partition=pl.Series([r.partition for r in records], dtype=pl.Int32),
        _offset=pl.Series([r.offset for r in records], dtype=pl.Int64),
    )
    return validate_typed(typed, pl.Series(values, dtype=pl.Binary), now)


def _read_text(records: Sequence[RawRecord]) -> pl.DataFrame | None:
    """The fast path: the whole batch through one ``read_ndjson``; None if it is not clean."""
    values = [r.value for r in records]
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
        return None  # a record spans lines: the per-record path re-serialises it
    try:
        text = pl.read_ndjson(io.BytesIO(joined), schema=RAW_SCHEMA)
    except Exception:  # noqa: BLE001 - any parse error: find the bad records one by one
        return None
    if text.height != len(values):
        return None
    return pl.concat([text, _provenance(records, list(range(len(values))))], how="horizontal")


def _read_lines(lines: list[bytes], keep: list[int],
                records: Sequence[RawRecord]) -> pl.DataFrame | None:
    """The text frame of ``lines`` (records ``keep``), or None if Polars rejects one of them."""
    if not lines:
        return pl.concat(
            [pl.DataFrame(schema=RAW_SCHEMA), _provenance(records, [])], how="horizontal"
        )
    try:
        text = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=RAW_SCHEMA)
    except Exception:  # noqa: BLE001 - some line is still unreadable: the caller bisects
        return None
    if text.height != len(lines):
        return None
    return pl.concat([text, _provenance(records, keep)], how="horizontal")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (NaN/Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:SHOW]} is out of range")
    return value


def classify(value: bytes) -> tuple[str | None, bytes]:
    """Per-record structural check: (reason or None, one-line JSON for the vectorised path)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: invalid byte at position {exc.start}", b""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {str(exc).splitlines()[0][:120]}", b""
    if not isinstance(obj, dict):
        return f"not a JSON object: got {_json_type(obj)}", b""
    try:
        line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(exc.object[exc.start])
        return f"invalid unicode: lone surrogate \\u{code:04x} in a string", b""
    if b"\n" in value or b"\r" in value or _SURROGATE.search(text):
        return None, line  # re-serialised: one line, surrogate pairs as UTF-8
    return None, value


def _json_type(obj: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(obj), "number")


def _structural_fallback(
    records: Sequence[RawRecord],
) -> tuple[pl.DataFrame, list[DeadLetter]]:
    """The text frame of the records that broke the batch read, and the dead letters.

    A vectorised screen picks the suspicious records (not ``{…}``, not UTF-8, a line break,
    a bare NaN/Infinity, a surrogate escape); only those go through ``json.loads``. The rest
    is read once more; only if that still fails does bisection find the lines the NDJSON
    reader rejects (e.g. a number out of double range).
    """
    lines: list[bytes] = []
    keep: list[int] = []
    dead: list[DeadLetter] = []
    suspect = _suspects([r.value for r in records])
    for i, record in enumerate(records):
        if not suspect[i]:
            lines.append(record.value)
            keep.append(i)
            continue
        reason, line = classify(record.value)
        if reason is None:
            lines.append(line)
            keep.append(i)
        else:
            dead.append(_dead(record, reason))
    frame = _read_lines(lines, keep, records)
    if frame is not None:
        return frame, dead
    ok = _readable(lines)
    for line_ok, i in zip(ok, keep, strict=True):
        if not line_ok:
            reason, _ = classify(records[i].value)
            dead.append(_dead(records[i], reason or "not JSON: rejected by the NDJSON reader"))
    lines = [line for line, line_ok in zip(lines, ok, strict=True) if line_ok]
    keep = [i for i, line_ok in zip(keep, ok, strict=True) if line_ok]
    frame = _read_lines(lines, keep, records)
    if frame is None:  # every line reads alone but not together: a reader bug, not bad data
        raise RuntimeError("NDJSON reader rejects lines it reads one by one")
    return frame, dead


def _suspects(values: list[bytes]) -> list[bool]:
    """Records the fast path may not read: one vectorised regex screen (False = looks fine)."""
    binary = pl.Series(values, dtype=pl.Binary)
    try:
        text = binary.cast(pl.String)
    except pl.exceptions.ComputeError:  # some record is not UTF-8: find which in Python
        text = pl.Series([_utf8_or_none(v) for v in values], dtype=pl.String)
    return text.str.contains(_SUSPECT).fill_null(True).to_list()


def _utf8_or_none(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _polars_reads(lines: list[bytes]) -> bool:
    try:
        pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=RAW_SCHEMA)
    except Exception:  # noqa: BLE001
        return False
    return True


def _readable(lines: list[bytes], chunk: int = 256) -> list[bool]:
    """Which lines Polars reads: chunks first (one pass over the bytes), then bisection inside
    the chunks that fail (few bad lines: few small reads)."""
    if len(lines) > chunk:
        return [ok for lo in range(0, len(lines), chunk)
                for ok in _readable(lines[lo:lo + chunk], chunk)]
    if _polars_reads(lines):
        return [True] * len(lines)
    if len(lines) == 1:
        return [False]
    mid = len(lines) // 2
    return _readable(lines[:mid], chunk) + _readable(lines[mid:], chunk)
