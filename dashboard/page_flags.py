"""What the page holds of a flag: ``FLAG_SCHEMA`` cut to ``PAGE_COLUMNS`` (pure), and one
flag whole for the drill-down.

Every dashboard source reads through a ``flagstore.protocols.FlagReader`` and hands the page
``page_frame``s: the ``flagstore.schema.FLAG_SCHEMA`` columns the tables, aggregates and CSV
use, in that schema's order and types. The one presentation rule: a v1 flag (no ``score``)
scores the number of rules it fired, as the rule sets' default weights would.
"""

from __future__ import annotations

import json

import polars as pl

from flagstore.protocols import FlagReader
from flagstore.query import FlagFilter
from flagstore.schema import FLAG_SCHEMA, empty_flags

_SHOWN = {"transaction_id", "ts", "user_id", "amount", "amount_cents", "currency",
          "merchant_name", "category", "channel", "city", "country", "is_fraud",
          "fraud_scenario", "rule_set_id", "rules_fired", "score", "flagged_at"}
#: The ``FLAG_SCHEMA`` columns the page holds (the readers fetch only these).
PAGE_COLUMNS: tuple[str, ...] = tuple(c for c in FLAG_SCHEMA if c in _SHOWN)


def page_frame(flags: pl.DataFrame) -> pl.DataFrame:
    """A ``FLAG_SCHEMA`` frame → ``PAGE_COLUMNS``, v1 flags scored by their rule count."""
    fired = pl.col("rules_fired").list.len().cast(pl.Float64)
    return flags.select(PAGE_COLUMNS).with_columns(pl.col("score").fill_null(fired))


def empty_page() -> pl.DataFrame:
    return page_frame(empty_flags())


def flag_detail(reader: FlagReader, transaction_id: str) -> dict | None:
    """One stored flag with every ``FLAG_SCHEMA`` field (``evidence`` parsed from its JSON
    text), or None when the store has no such flag."""
    found = reader.export(FlagFilter(transaction_id=str(transaction_id)))
    if found.is_empty():
        return None
    flag = found.row(0, named=True)
    if isinstance(flag["evidence"], str):
        try:
            flag["evidence"] = json.loads(flag["evidence"])
        except ValueError:
            pass
    return flag
