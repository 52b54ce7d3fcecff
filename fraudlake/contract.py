"""The event contract (v1): one place for column names, types and validity bounds.

Kafka value = one JSON object; Parquet column = same name. Every stage imports this module,
so the live lake and the history share one schema and one DuckDB glob reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import polars as pl
import pyarrow as pa

AMOUNT_DTYPE = pl.Decimal(18, 2)
TS_DTYPE = pl.Datetime("us", "UTC")

#: Columns every tool must accept on their own.
CORE_SCHEMA: dict[str, pl.DataType] = {
    "transaction_id": pl.String(),
    "user_id": pl.Int64(),
    "ts": TS_DTYPE,
    "amount": AMOUNT_DTYPE,
    "lat": pl.Float64(),
    "lon": pl.Float64(),
    "utc_offset_min": pl.Int32(),
    "is_fraud": pl.Boolean(),
    "fraud_scenario": pl.String(),
}

#: Expected beside the core columns; optional, may be absent.
EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "currency": pl.String(),
    "merchant_id": pl.String(),
    "merchant_name": pl.String(),
    "category": pl.String(),
    "channel": pl.String(),
    "city": pl.String(),
    "country": pl.String(),
    "card_last4": pl.String(),
    "device_id": pl.String(),
}

EVENT_SCHEMA: dict[str, pl.DataType] = {**CORE_SCHEMA, **EXTRA_SCHEMA}

#: Core columns a tool may not do without (labels are optional on live input).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min",
)
LABEL_COLUMNS: tuple[str, ...] = ("is_fraud", "fraud_scenario")

#: One boolean column per rule, in this order, then their OR.
RULE_NAMES: tuple[str, ...] = ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")
FLAGGED = "flagged"
RULE_SCHEMA: dict[str, pl.DataType] = {name: pl.Boolean() for name in (*RULE_NAMES, FLAGGED)}

#: Lake v2: the decision columns, the same whatever the rule set (docs/design.md "Rule sets (v2)").
DECISION_SCHEMA: dict[str, pl.DataType] = {
    "rule_set_id": pl.String(), "score": pl.Float64(), FLAGGED: pl.Boolean(),
    "rules_fired": pl.List(pl.String()),
}
#: A shadow rule set's decisions beside the active ones, after LAKE_SCHEMA in the files of a
#: consumer that follows the control topic (null while no shadow set runs; other lake files
#: lack them: read with missing columns inserted). Never sent to the alert store.
SHADOW_SCHEMA: dict[str, pl.DataType] = {
    "shadow_rule_set_id": pl.String(), "shadow_score": pl.Float64(),
    "shadow_flagged": pl.Boolean(), "shadow_rules_fired": pl.List(pl.String()),
}
#: The live lake (v2) = every event + its decision columns. v1 lake files carry one Boolean per
#: v1 rule (RULE_SCHEMA) instead; both read together with union_by_name.
LAKE_SCHEMA: dict[str, pl.DataType] = {**EVENT_SCHEMA, **DECISION_SCHEMA}

CHANNELS: tuple[str, ...] = ("pos", "online", "atm")

# Validity bounds for a single event (live input outside them goes to the DLQ).
MAX_AMOUNT = Decimal("1000000.00")
MIN_TS = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE_SECONDS = 24 * 3600  # an event more than a day ahead of the wall clock is invalid
MIN_UTC_OFFSET_MIN, MAX_UTC_OFFSET_MIN = -12 * 60, 14 * 60
MAX_STRING_LEN = 256
#: A Kafka value longer than this is refused unread (a valid event is a few hundred bytes).
MAX_MESSAGE_BYTES = 64 * 1024


class ContractError(ValueError):
    """Data does not satisfy the event contract; the message names the column."""


def arrow_schema(columns: Mapping[str, pl.DataType] = EVENT_SCHEMA) -> pa.Schema:
    """The Arrow schema of the given contract columns (default: core + extra)."""
    return pl.DataFrame(schema=dict(columns)).to_arrow().schema


def check_columns(schema: Mapping[str, pl.DataType], required=REQUIRED_COLUMNS) -> None:
    """Raise ContractError naming the first missing or mistyped contract column."""
    missing = [c for c in required if c not in schema]
    if missing:
        raise ContractError(f"missing core column(s): {', '.join(missing)}")
    for name, dtype in schema.items():
        expected = EVENT_SCHEMA.get(name) or RULE_SCHEMA.get(name)
        if expected is not None and not _compatible(dtype, expected):
            raise ContractError(f"column {name!r} has type {dtype}, expected {expected}")


def _compatible(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Same type family; a decimal of any scale or a tz-aware timestamp of any unit is fine."""
    if isinstance(expected, pl.Decimal):
        return isinstance(actual, pl.Decimal)
    if isinstance(expected, pl.Datetime):
        return isinstance(actual, pl.Datetime) and actual.time_zone is not None
    if expected == pl.Int64() or expected == pl.Int32():
        return actual.is_integer()
    if expected == pl.Float64():
        return actual.is_float() or actual.is_integer()
    if expected == pl.String():
        return actual in (pl.String(), pl.Categorical(), pl.Null()) or isinstance(
            actual, pl.Categorical | pl.Enum
        )
    return actual == expected or actual == pl.Null()


def conform(df: pl.DataFrame | pl.LazyFrame, extra: Mapping[str, pl.DataType] = {}):
    """Cast known contract columns to their exact contract types; keep others as they are.

    Raises ContractError (via check_columns) when a core column is missing or of the wrong family.
    """
    schema = df.collect_schema()
    check_columns(schema)
    targets = {**LAKE_SCHEMA, **RULE_SCHEMA, **extra}
    casts = [
        pl.col(name).cast(targets[name]) if name != "ts" else pl.col(name).dt.convert_time_zone(
            "UTC").dt.cast_time_unit("us")
        for name in schema.names() if name in targets
    ]
    return df.with_columns(casts)
