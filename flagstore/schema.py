"""The flag schema: what a flag is, in every store and every reader's frame (pure, no I/O).

One flag per flagged transaction, keyed by ``transaction_id``:

- the event's contract columns (``fraudlake.contract.EVENT_SCHEMA``) and ``amount_cents``
  (integer cents: exact range queries where a store has no decimal type);
- the decision (rule sets v2, ``docs/design.md``): ``rule_set_id`` (null on v1 flags),
  ``rules_fired`` (ids of the rules that fired, rule-set file order), ``score`` (null on v1
  flags) and ``evidence`` (per fired rule what it saw, as JSON text ``{"rule_id": {...}}``;
  a sub-document in MongoDB; null when the engine gave none);
- ``source`` (``topic:partition:offset`` of the Kafka record, null offline) and ``flagged_at``
  (when the store first held it; a replay keeps the first).

Text timestamps (the SQLite store, export state, CSV) use ONE format, ``TS_TEXT``: ISO-8601 UTC
with microseconds and ``Z`` (``2024-03-01T08:00:00.000000Z``), fixed width, so it sorts like time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl

from fraudlake.contract import AMOUNT_DTYPE, EVENT_SCHEMA, RULE_NAMES, TS_DTYPE

TS_TEXT = "%Y-%m-%dT%H:%M:%S%.6fZ"  #: Polars/chrono spelling; ``ts_text`` for Python values

#: The normalized flag frame every reader returns and every writer stores (in this order).
FLAG_SCHEMA: dict[str, pl.DataType] = {
    **EVENT_SCHEMA,
    "amount_cents": pl.Int64(),
    "rule_set_id": pl.String(),
    "rules_fired": pl.List(pl.String()),
    "score": pl.Float64(),
    "evidence": pl.String(),
    "source": pl.String(),
    "flagged_at": TS_DTYPE,
}
#: Columns computed from the decided events, not copied.
DERIVED: tuple[str, ...] = ("amount_cents", "rules_fired", "evidence", "source", "flagged_at")


def ts_text(ts: datetime) -> str:
    """A Python datetime as ``TS_TEXT``."""
    return pl.Series([ts.astimezone(UTC)], dtype=TS_DTYPE).dt.strftime(TS_TEXT).item()


def parse_ts_text(col: str) -> pl.Expr:
    """A ``TS_TEXT`` column back to ``timestamp(us, UTC)``."""
    return pl.col(col).str.to_datetime(TS_TEXT, time_zone="UTC", time_unit="us", strict=False)


def empty_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=FLAG_SCHEMA)


def _rules_fired(cols: list[str]) -> pl.Expr:
    """``rules_fired`` as the engine gave it, else from v1's one boolean column per rule."""
    if "rules_fired" in cols:
        return pl.col("rules_fired").cast(pl.List(pl.String())).fill_null([])
    fired = [pl.when(pl.col(r)).then(pl.lit(r)) for r in RULE_NAMES if r in cols]
    return pl.concat_list(fired).list.drop_nulls() if fired else pl.lit([], pl.List(pl.String()))


def _evidence(values: pl.Series) -> pl.Series:
    """Evidence as JSON text: kept when it is text already, dumped when it is a struct/object."""
    if values.dtype == pl.String():
        return values
    return pl.Series([None if v is None else json.dumps(v, sort_keys=True, default=str)
                      for v in values.to_list()], dtype=pl.String())


def flag_frame(flagged: pl.DataFrame, flagged_at: datetime | None = None) -> pl.DataFrame:
    """Flagged decided events (contract columns + the engine's decision columns, optionally
    ``_topic/_partition/_offset``) → ``FLAG_SCHEMA`` (pure). ``flagged_at`` None: null."""
    cols = flagged.columns
    derived: dict[str, pl.Expr] = {
        "ts": pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        "amount_cents": (pl.col("amount").cast(pl.Decimal(20, 2)) * 100).cast(pl.Int64),
        "rules_fired": _rules_fired(cols),
        "source": (pl.format("{}:{}:{}", "_topic", "_partition", "_offset")
                   if {"_topic", "_partition", "_offset"} <= set(cols) else pl.lit(None)),
        "flagged_at": pl.lit(flagged_at.astimezone(UTC) if flagged_at else None),
    }
    exprs = [derived.get(name, pl.col(name) if name in cols else pl.lit(None))
             .cast(dtype).alias(name) for name, dtype in FLAG_SCHEMA.items()
             if name != "evidence"]
    frame = flagged.select(exprs)
    evidence = (_evidence(flagged["evidence"]) if "evidence" in cols
                else pl.Series([None] * flagged.height, dtype=pl.String()))
    return frame.with_columns(evidence.alias("evidence")).select(list(FLAG_SCHEMA))


def from_records(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """Stored flags as dicts (MongoDB documents, rows by name) → ``FLAG_SCHEMA``.

    Column by column, for speed (a cold dashboard load converts a million documents).
    Accepted spellings: ``_id`` for ``transaction_id``; ``ts``/``flagged_at`` as datetimes,
    integer ms since the epoch (BSON ``DatetimeMS``) or ``TS_TEXT``; ``amount`` as text;
    ``rules_fired`` as a list or JSON text (v1 documents named it ``rules``); ``evidence`` as a
    dict or JSON text.
    """
    if not records:
        return empty_flags()
    return from_columns({name: _values(records, name) for name in FLAG_SCHEMA}, len(records))


def from_columns(columns: Mapping[str, Sequence[Any]], rows: int) -> pl.DataFrame:
    """Stored flags given column by column (``rows`` values each; a column not given reads as
    null) → ``FLAG_SCHEMA``; the values spelled as ``from_records`` accepts them."""
    if not rows:
        return empty_flags()
    cols = [_column(name, list(columns[name]), dtype) if name in columns else
            pl.repeat(None, rows, dtype=dtype, eager=True).alias(name)
            for name, dtype in FLAG_SCHEMA.items()]
    return pl.DataFrame(cols).select(list(FLAG_SCHEMA))


_SEP = "\x1f"  # joins rule ids while converting (never in a rule id)


def _values(records: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    if name == "transaction_id":
        return [r.get("transaction_id", r.get("_id")) for r in records]
    if name == "rules_fired":
        return [r.get("rules_fired", r.get("rules")) for r in records]
    return [r.get(name) for r in records]


def _column(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series:
    if name in ("ts", "flagged_at"):
        return _times(name, values)
    if name == "amount":
        text = pl.Series(name, [None if v is None else str(v) for v in values], pl.String())
        return text.str.to_decimal(scale=2).cast(AMOUNT_DTYPE)
    if name == "rules_fired":
        if all(v is None or isinstance(v, str) for v in values):  # JSON text: parsed in Polars
            text = pl.Series(name, values, pl.String())
            return text.str.json_decode(dtype).fill_null([]).cast(dtype)
        lists = [json.loads(v) if isinstance(v, str) else v for v in values]
        joined = pl.Series(name, [None if v is None else _SEP.join(v) for v in lists], pl.String())
        return (joined.str.split(_SEP).list.eval(pl.element().filter(pl.element() != ""))
                .fill_null([]).cast(dtype))
    if name == "evidence":
        return pl.Series(name, [v if v is None or isinstance(v, str) else
                                json.dumps(v, sort_keys=True, default=str) for v in values],
                         pl.String())
    return pl.Series(name, values, dtype, strict=False)


def _times(name: str, values: list[Any]) -> pl.Series:
    """Datetimes, integer ms (BSON DatetimeMS) or ``TS_TEXT`` → ``timestamp(us, UTC)``."""
    first = next((v for v in values if v is not None), None)
    if isinstance(first, str):
        return (pl.DataFrame({name: pl.Series(values, dtype=pl.String())})
                .select(parse_ts_text(name)).to_series())
    if first is None or isinstance(first, datetime):
        return pl.Series(name, [None if v is None else v.astimezone(UTC) for v in values],
                         TS_DTYPE)
    ms = pl.Series(name, [None if v is None else int(v) for v in values], pl.Int64())
    return ms.cast(pl.Datetime("ms", "UTC")).cast(TS_DTYPE)
