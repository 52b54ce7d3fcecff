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
a number out of double range, a value that is not an object) does a vectorised screen pick the
suspicious records for ``json.loads`` (bisection finds any the screen missed); the good ones
then take the vectorised path again. ``bench/bench_decode.py`` measures both paths against
per-record ``json.loads``.

Typing rules (what counts as "wrong type"):

* ``user_id``, ``utc_offset_min``: JSON integers (a numeric string is accepted; ``true``,
  ``1.5``, objects, arrays are not). ``lat``/``lon``: finite numbers in range.
* ``amount``: a JSON string ``"12.34"`` (parsed exactly) or a JSON number. A JSON number is a
  double to every standard parser, so its shortest decimal form is what gets parsed; at most two
  decimals (trailing zeros allowed), ``0 <= amount <= MAX_AMOUNT``.
* ``ts``: ISO-8601 text *with* an offset (``Z`` or ``+02:00``), converted to UTC microseconds,
  not before ``MIN_TS`` and not more than ``MAX_FUTURE_SECONDS`` ahead of the wall clock.
* ``is_fraud``: ``true``/``false`` if present. Text fields: at most ``MAX_STRING_LEN``
  characters, never an object or array. Unknown keys are ignored.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from streaming.validate import DECODED_SCHEMA, PROVENANCE_SCHEMA, RAW_SCHEMA, SHOW, validate

__all__ = ["DECODED_SCHEMA", "PROVENANCE_SCHEMA", "DeadLetter", "RawRecord", "classify",
           "decode_batch"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as received: value bytes, key bytes and its position."""

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


def decode_batch(
    records: Sequence[RawRecord], now: datetime | None = None
) -> tuple[pl.DataFrame, list[DeadLetter]]:
    """Valid records as a ``DECODED_SCHEMA`` frame (input order), invalid ones as dead letters."""
    now = now or datetime.now(UTC)
    if not records:
        return pl.DataFrame(schema=DECODED_SCHEMA), []
    raw = _read_text(records)
    dead: list[DeadLetter] = []
    if raw is None:
        lines, keep, dead = _structural_fallback(records)
        raw = _read_text_lines(lines, keep, records)
    good, bad = validate(raw, now)
    for index, reason in bad.iter_rows():
        dead.append(_dead(records[index], reason))
    dead.sort(key=lambda d: (d.topic, d.partition, d.offset))
    return good, dead


def _dead(record: RawRecord, reason: str) -> DeadLetter:
    return DeadLetter(record.value, reason, record.topic, record.partition, record.offset)


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


def _read_text_lines(
    lines: list[bytes], keep: list[int], records: Sequence[RawRecord]
) -> pl.DataFrame:
    if not lines:
        return pl.concat(
            [pl.DataFrame(schema=RAW_SCHEMA), _provenance(records, [])], how="horizontal"
        )
    text = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=RAW_SCHEMA)
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
        obj = json.loads(value, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"not JSON: {str(exc).splitlines()[0][:120]}", b""
    if not isinstance(obj, dict):
        return f"not a JSON object: got {type(obj).__name__}", b""
    if b"\n" in value or b"\r" in value:
        return None, json.dumps(obj, ensure_ascii=False).encode()
    return None, value


def _structural_fallback(
    records: Sequence[RawRecord],
) -> tuple[list[bytes], list[int], list[DeadLetter]]:
    """Find the records that broke the batch read.

    A vectorised screen picks the suspicious records (not ``{…}``, not UTF-8, a line break,
    a bare NaN/Infinity); only those go through ``json.loads``. If the rest still does not
    read, bisection finds the lines the NDJSON reader rejects (e.g. a number out of range).
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
    if lines and not _polars_reads(lines):
        ok = _readable(lines)
        for line_ok, i in zip(ok, keep, strict=True):
            if not line_ok:
                reason, _ = classify(records[i].value)
                dead.append(_dead(records[i], reason or "not JSON: rejected by the NDJSON reader"))
        lines = [line for line, line_ok in zip(lines, ok, strict=True) if line_ok]
        keep = [i for i, line_ok in zip(keep, ok, strict=True) if line_ok]
    return lines, keep, dead


def _suspects(values: list[bytes]) -> list[bool]:
    text = pl.Series(values, dtype=pl.Binary).cast(pl.String, strict=False).str.strip_chars()
    bad = (
        text.is_null() | ~text.str.starts_with("{") | ~text.str.ends_with("}")
        | text.str.contains(r"[\n\r]") | text.str.contains(r"[:,\[]\s*-?(NaN|Infinity)")
    )
    return bad.fill_null(True).to_list()


def _polars_reads(lines: list[bytes]) -> bool:
    try:
        pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=RAW_SCHEMA)
    except Exception:  # noqa: BLE001
        return False
    return True


def _readable(lines: list[bytes]) -> list[bool]:
    """Which lines Polars reads, by bisection (few bad lines: few reads)."""
    if _polars_reads(lines):
        return [True] * len(lines)
    if len(lines) == 1:
        return [False]
    mid = len(lines) // 2
    return _readable(lines[:mid]) + _readable(lines[mid:])
