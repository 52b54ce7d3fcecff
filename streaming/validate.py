"""Vectorised validation of decoded JSON text: every contract check as one Polars expression.

``validate(raw, now)`` takes the text frame built by ``streaming.decode`` (every contract field
as the text of its JSON value, plus ``_i`` and ``_line``) and returns the rows that pass, typed
as ``DECODED_SCHEMA``, and ``(_i, _reason)`` for the rest. The first failing check (in the
order of ``_checks``) names the reason. See ``streaming.decode`` for the typing rules.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import polars as pl

from fraudlake.contract import (
    EVENT_SCHEMA,
    EXTRA_SCHEMA,
    MAX_AMOUNT,
    MAX_FUTURE_SECONDS,
    MAX_STRING_LEN,
    MAX_UTC_OFFSET_MIN,
    MIN_TS,
    MIN_UTC_OFFSET_MIN,
    REQUIRED_COLUMNS,
    TS_DTYPE,
)

PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "_topic": pl.String(), "_partition": pl.Int32(), "_offset": pl.Int64(),
}
DECODED_SCHEMA: dict[str, pl.DataType] = {**EVENT_SCHEMA, **PROVENANCE_SCHEMA}
RAW_SCHEMA = {name: pl.String() for name in EVENT_SCHEMA}
#: The fast path's schema: JSON numbers and booleans read as such (a value of another JSON type
#: makes the reader fail, and the batch goes the text way).
TYPED_SCHEMA = {**RAW_SCHEMA, "user_id": pl.Int64(), "utc_offset_min": pl.Int64(),
                "lat": pl.Float64(), "lon": pl.Float64(), "is_fraud": pl.Boolean()}
_MAX_INT = 10**18  # _INT allows at most 18 digits

_TEXT_FIELDS = ("transaction_id", "fraud_scenario", *EXTRA_SCHEMA)
_CONTAINER_KEY = r'"(' + "|".join(EVENT_SCHEMA) + r')"\s*:\s*[\[{]'
_INT = r"^-?[0-9]{1,18}$"
_DECIMAL = r"^-?[0-9]{1,16}(\.[0-9]*)?$"
_TWO_DECIMALS = r"^-?[0-9]+(\.[0-9]{0,2}0*)?$"
SHOW = 40  # characters of an offending value quoted in a reason
_REQUIRED_KEY = r'"(' + "|".join(REQUIRED_COLUMNS) + r')"\s*:'
_TID_NOT_TEXT = r'"transaction_id"\s*:\s*[-0-9tf]'
_SURROGATE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
_DUPLICATE = "duplicate key"  # completed with the key's name for the few rows concerned


def _checks(now: datetime, typed: bool = False) -> list[tuple[pl.Expr, pl.Expr | str]]:
    """(is-bad condition, reason) in the order they are reported; the first that fails wins.
    ``typed``: the frame has ``TYPED_SCHEMA`` (numbers and booleans already typed)."""
    c = pl.col
    checks: list[tuple[pl.Expr, pl.Expr | str]] = [
        (c("_container").is_not_null(),
         pl.format("field {} has the wrong type (object or array)", c("_container")))
    ]
    checks += [(c("_unicode").is_not_null(), c("_unicode"))]
    checks += [(c(name).is_null(), f"missing field {name}") for name in REQUIRED_COLUMNS]
    checks += [(c("_keys") > len(REQUIRED_COLUMNS), _DUPLICATE)]
    checks += [(c("_tid_type"), pl.format("transaction_id is not a JSON string: {}",
                                          c("transaction_id").str.slice(0, SHOW)))]
    checks += [
        (c(name).str.len_chars() > MAX_STRING_LEN,
         f"field {name} is longer than {MAX_STRING_LEN} characters")
        for name in _TEXT_FIELDS
    ]
    checks += [(c("transaction_id").str.len_chars() == 0, "transaction_id is empty")]
    checks += [
        ((c(name) >= _MAX_INT) | (c(name) <= -_MAX_INT) if typed
         else ~c(name).str.contains(_INT),
         pl.format(f"{name} is not an integer: {{}}", _shown(name)))
        for name in ("user_id", "utc_offset_min")
    ]
    checks += _number_checks()
    checks += _amount_checks()
    checks += _ts_checks(now)
    if not typed:
        checks += [
            (c("is_fraud").is_not_null() & ~c("is_fraud").is_in(["true", "false"]),
             pl.format("is_fraud is not a boolean: {}", _shown("is_fraud"))),
        ]
    return checks


def _shown(name: str) -> pl.Expr:
    """The start of a value, for a reason (text of a typed value too)."""
    return pl.col(name).cast(pl.String).str.slice(0, SHOW)


def _number_checks() -> list[tuple[pl.Expr, pl.Expr | str]]:
    c = pl.col
    bounds = {"lat": 90.0, "lon": 180.0}
    out: list[tuple[pl.Expr, pl.Expr | str]] = []
    for name, limit in bounds.items():
        value = c(name).cast(pl.Float64, strict=False)
        out.append((value.is_null(),
                    pl.format(f"{name} is not a number: {{}}", _shown(name))))
        out.append((~value.is_finite(), f"{name} is not a finite number"))
        out.append((value.abs() > limit, pl.format(f"{name} out of range ±{limit:g}: {{}}",
                                                   _shown(name))))
    offset = c("utc_offset_min").cast(pl.Int64, strict=False)
    out.append((~offset.is_between(MIN_UTC_OFFSET_MIN, MAX_UTC_OFFSET_MIN),
                pl.format("utc_offset_min out of range: {}", c("utc_offset_min"))))
    return out


def _amount_checks() -> list[tuple[pl.Expr, pl.Expr | str]]:
    a = pl.col("amount")
    shown = a.str.slice(0, SHOW)
    value = a.cast(pl.Decimal(18, 2), strict=False)
    return [
        (~a.str.contains(_DECIMAL), pl.format("amount is not a decimal number: {}", shown)),
        (~a.str.contains(_TWO_DECIMALS), pl.format("amount has more than 2 decimals: {}", shown)),
        (a.str.starts_with("-") & (value != 0), pl.format("amount is negative: {}", shown)),
        (value > MAX_AMOUNT, pl.format(f"amount above {MAX_AMOUNT}: {{}}", shown)),
    ]


def _ts_checks(now: datetime) -> list[tuple[pl.Expr, pl.Expr | str]]:
    ts = pl.col("_ts")
    shown = pl.col("ts").str.slice(0, SHOW)
    latest = now + timedelta(seconds=MAX_FUTURE_SECONDS)
    return [
        (ts.is_null(), pl.format("ts is not ISO-8601 with a UTC offset: {}", shown)),
        (ts < MIN_TS, pl.format(f"ts before {MIN_TS.date()}: {{}}", shown)),
        (ts > latest, pl.format(f"ts more than {MAX_FUTURE_SECONDS} s in the future: {{}}",
                                shown)),
    ]


def _line_checks(lines: pl.Series) -> pl.DataFrame:
    """Checks on the raw JSON text that the typed-as-text frame cannot see, per line:

    * ``_container``: the first contract key whose value is an object or array (else null);
    * ``_keys``: how many times the required keys occur (> their number = a duplicate key,
      which JSON parsers resolve differently, so it is refused);
    * ``_tid_type``: transaction_id is a JSON number/boolean rather than a string;
    * ``_unicode``: a reason when a string holds a lone UTF-16 surrogate escape (the NDJSON
      reader would silently turn it into another character).
    """
    text = lines.cast(pl.String, strict=False)
    t = pl.col("t")
    scan = pl.DataFrame({"t": text}).select(  # one select: the regex passes run in parallel
        _keys=t.str.count_matches(_REQUIRED_KEY),
        _tid_type=t.str.contains(_TID_NOT_TEXT),
        _nested=t.str.contains(r":\s*[\[{]"),
        _surrogate=t.str.contains(_SURROGATE),
    )
    n = len(text)
    container = pl.Series("_container", [None] * n, dtype=pl.String)
    if scan["_nested"].any():
        where = scan["_nested"].arg_true()
        container = container.scatter(where, text.gather(where).str.extract(_CONTAINER_KEY, 1))
    unicode = pl.Series("_unicode", [None] * n, dtype=pl.String)
    if scan["_surrogate"].any():
        where = scan["_surrogate"].arg_true()
        unicode = unicode.scatter(where, [_surrogate_problem(text[i]) for i in where])
    return pl.DataFrame([container, scan["_keys"], scan["_tid_type"], unicode])


def _surrogate_problem(line: str) -> str | None:
    """A reason if the JSON line holds a lone surrogate escape; None for proper pairs."""
    try:
        json.dumps(json.loads(line), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"invalid unicode: lone surrogate \\u{ord(exc.object[exc.start]):04x} in a string"
    except (ValueError, RecursionError):
        return "not JSON: rejected by the JSON parser"
    return None


def duplicate_key(line: bytes) -> str:
    """The first required key that occurs more than once in ``line`` (for the reason)."""
    seen: set[str] = set()
    for m in re.finditer(_REQUIRED_KEY, line.decode("utf-8", "replace")):
        name = m.group(1)
        if name in seen:
            return name
        seen.add(name)
    return "?"


def validate(raw: pl.DataFrame, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split the text frame into typed good rows and (row index, reason) bad rows."""
    pre = pl.concat([raw, _line_checks(raw["_line"])], how="horizontal").with_columns(
        _ts=pl.col("ts").str.to_datetime("%+", time_zone="UTC", time_unit="us", strict=False),
    )
    reason = pl.coalesce(
        [pl.when(bad).then(pl.lit(msg) if isinstance(msg, str) else msg)
         for bad, msg in _checks(now)]
    )
    checked = pre.with_columns(_reason=reason)
    bad = checked.filter(pl.col("_reason").is_not_null()).select("_i", "_reason", "_line")
    if (bad["_reason"] == _DUPLICATE).any():
        bad = bad.with_columns(_reason=pl.Series([
            f"duplicate key {duplicate_key(line)}" if reason == _DUPLICATE else reason
            for reason, line in zip(bad["_reason"], bad["_line"], strict=True)]))
    bad = bad.select("_i", "_reason")
    good = checked.filter(pl.col("_reason").is_null())
    return _typed(good), bad


def validate_typed(typed: pl.DataFrame, lines: pl.Series, now: datetime
                   ) -> pl.DataFrame | None:
    """The fast path: a ``TYPED_SCHEMA`` frame of one batch (``lines`` its raw JSON) → the
    typed good rows, or None if any row fails a check (the caller then decodes the batch the
    text way, which names each reason exactly as always)."""
    pre = pl.concat([typed, _line_checks(lines)], how="horizontal").with_columns(
        _ts=pl.col("ts").str.to_datetime("%+", time_zone="UTC", time_unit="us", strict=False),
    )
    bad = pl.any_horizontal([cond for cond, _msg in _checks(now, typed=True)])
    if pre.select(bad.fill_null(False).any()).item():  # null = not bad, as in `validate`
        return None
    return _typed(pre, typed=True)


def _typed(good: pl.DataFrame, typed: bool = False) -> pl.DataFrame:
    c = pl.col
    casts = {
        "transaction_id": c("transaction_id"),
        "user_id": c("user_id").cast(pl.Int64),
        "ts": c("_ts").cast(TS_DTYPE),
        "amount": c("amount").str.strip_prefix("-").cast(pl.Decimal(18, 2)),
        "lat": c("lat").cast(pl.Float64),
        "lon": c("lon").cast(pl.Float64),
        "utc_offset_min": c("utc_offset_min").cast(pl.Int32),
        "is_fraud": c("is_fraud") if typed else c("is_fraud") == "true",
    }
    exprs = [casts.get(name, c(name)).cast(dtype).alias(name)
             for name, dtype in DECODED_SCHEMA.items()]
    return good.select(exprs)
