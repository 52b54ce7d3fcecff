"""Which flags to read: one frozen filter and its three translations, always bound.

``FlagFilter`` holds typed values only. ``sql_where`` turns it into a WHERE clause built from
fixed fragments with ``?`` placeholders (SQLite), ``mongo_filter`` into a filter document of
typed values (MongoDB; a v1 document's ``rules`` counts as its ``rules_fired``), and ``apply``
into a Polars predicate over ``FLAG_SCHEMA`` frames (the dashboard's held flags, tests). The
three agree: a flag passes one exactly when it passes the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import polars as pl

from flagstore.schema import ts_text
from rules.params import MAX_ID

#: A rule id (docs/design.md, "Rule sets (v2)"): the syntax and length the rule model accepts.
RULE_ID = re.compile(rf"^[a-z][a-z0-9_]{{0,{MAX_ID - 1}}}$")


class FilterError(ValueError):
    """A filter input that cannot be used; the message is shown next to the widget."""


@dataclass(frozen=True)
class FlagFilter:
    """Which flags the table, the CSV and the flag-side aggregates show.

    ``rules``: a flag passes when ANY of these rule ids fired (empty = no rule filter).
    Amount bounds are inclusive, in cents (exact; never a float comparison).
    """

    since: datetime | None = None
    until: datetime | None = None
    rules: tuple[str, ...] = ()
    min_cents: int | None = None
    max_cents: int | None = None
    user_id: int | None = None
    country: str | None = None
    transaction_id: str | None = None  #: one flag (the page's drill-down)

    def __post_init__(self) -> None:
        """Typed values only: whatever builds a filter, nothing but a plain value of the
        expected type can reach a query (no operator documents, no SQL text)."""
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, datetime):
                raise FilterError(f"{name} must be a datetime")
        for name in ("min_cents", "max_cents", "user_id"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int):
                raise FilterError(f"{name} must be a whole number")
        for name in ("country", "transaction_id"):
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                raise FilterError(f"{name} must be text")
        if not isinstance(self.rules, tuple) or not all(
                type(r) is str and RULE_ID.match(r) for r in self.rules):
            raise FilterError("rules must be a tuple of rule ids ([a-z][a-z0-9_]*)")


def sql_where(f: FlagFilter) -> tuple[str, list[object]]:
    """WHERE clause (fixed fragments, ``?`` placeholders) + parameters for the SQLite store."""
    # rules_fired is a JSON list of ids ([a-z][a-z0-9_]*: no escapes), so an id fired exactly
    # when its quoted text is in it; instr, not LIKE ('_' is no wildcard), and ~2x faster than
    # json_each over a million flags. One bound parameter per rule id.
    fired = "(" + " OR ".join("instr(rules_fired, ?) > 0" for _ in f.rules) + ")"
    conditions: list[tuple[str, object, list[object]]] = [  # (fragment, when set, its values)
        ("ts >= ?", f.since, [ts_text(f.since)] if f.since else []),
        ("ts < ?", f.until, [ts_text(f.until)] if f.until else []),
        (fired, f.rules or None, [f'"{r}"' for r in f.rules]),
        ("amount_cents >= ?", f.min_cents, [f.min_cents]),
        ("amount_cents <= ?", f.max_cents, [f.max_cents]),
        ("user_id = ?", f.user_id, [f.user_id]),
        ("country = ?", f.country, [f.country]),
        ("transaction_id = ?", f.transaction_id, [f.transaction_id]),
    ]
    used = [(sql, values) for sql, value, values in conditions if value is not None]
    params = [v for _sql, values in used for v in values]
    return (" WHERE " + " AND ".join(sql for sql, _v in used)) if used else "", params


def mongo_filter(f: FlagFilter) -> dict:
    """Filter document of typed values for the MongoDB store."""
    doc: dict = {}
    ts: dict = {}
    if f.since is not None:
        ts["$gte"] = f.since.astimezone(UTC)
    if f.until is not None:
        ts["$lt"] = f.until.astimezone(UTC)
    if ts:
        doc["ts"] = ts
    if f.rules:  # rule sets (v2) list the fired ids in rules_fired; a v1 document in rules
        wanted = {"$in": list(f.rules)}
        doc["$or"] = [{"rules_fired": wanted},
                      {"rules_fired": {"$exists": False}, "rules": wanted}]
    cents: dict = {}
    if f.min_cents is not None:
        cents["$gte"] = f.min_cents
    if f.max_cents is not None:
        cents["$lte"] = f.max_cents
    if cents:
        doc["amount_cents"] = cents
    if f.user_id is not None:  # plain int/str (FlagFilter checks): never an operator document
        doc["user_id"] = f.user_id
    if f.country is not None:
        doc["country"] = f.country
    if f.transaction_id is not None:
        doc["_id"] = f.transaction_id
    return doc


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def apply(f: FlagFilter, flags: Frame) -> Frame:
    """The same filter over a ``FLAG_SCHEMA`` frame (eager or lazy)."""
    pred = pl.lit(True)
    if f.since is not None:
        pred &= pl.col("ts") >= f.since
    if f.until is not None:
        pred &= pl.col("ts") < f.until
    if f.rules:
        pred &= pl.col("rules_fired").list.eval(pl.element().is_in(list(f.rules))).list.any()
    if f.min_cents is not None:
        pred &= pl.col("amount_cents") >= f.min_cents
    if f.max_cents is not None:
        pred &= pl.col("amount_cents") <= f.max_cents
    if f.user_id is not None:
        pred &= pl.col("user_id") == f.user_id
    if f.country is not None:
        pred &= pl.col("country") == f.country
    if f.transaction_id is not None:
        pred &= pl.col("transaction_id") == f.transaction_id
    return flags.filter(pred)
