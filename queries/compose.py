"""Compose the flags query of a rule set from one SQL template per kind (``queries/kinds``).

``compose_flags(rule_set)`` returns a ``FlagsQuery``: SQL text plus the values of its bound
parameters. The text is built only from this package's fixed fragments:

    events    the contract columns of ``transactions`` + ``ts_us`` (epoch µs) + ``decidable``
              (no NULL in user_id, ts, amount, lat, lon, utc_offset_min; an empty device_id
              reads as NULL)
    decided   the decidable events only: NULL-core rows never enter a window, history or pair
    r1 … rN   one CTE per rule, in file order, from its kind's template: the previous CTE's
              rows plus one boolean column named ``r<i>`` (helper columns are prefixed ``r<i>_``)
    scored    rN's rows, and the undecidable rows with every rule false, plus score units
    final     transaction_id, user_id, ts, lat, lon, is_fraud, fraud_scenario, r1 … rN,
              score (double) and flagged

Template parameters ``$name`` become ``$r<i>_name`` (``$r3_threshold``), list values (scope and
``in_list``) are bound as lists, the weights as integer units (``RuleSet.weight_units``):
``flagged`` = the sum of the fired rules' units >= ``$threshold_units``, ``score`` = that sum /
``$weight_scale``. Nothing from the rule file is formatted into the text: not a value, not an id.
The rule ids name the output columns through the engine's API instead (``flags_relation``
renames ``r<i>`` with a DuckDB projection; ``rename_columns`` does it for Arrow data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from rules.model import KINDS, Rule, RuleSet

#: Parquet key-value metadata key naming the rule set of a flags file.
RULE_SET_METADATA = "fraudlake.rule_set_id"
KINDS_DIR = Path(__file__).resolve().parent / "kinds"
CORE = ("user_id", "ts", "amount", "lat", "lon", "utc_offset_min")
PASSTHROUGH = ("transaction_id", "user_id", "ts", "lat", "lon", "is_fraud", "fraud_scenario")
_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_PLACEHOLDER = re.compile(r"\{(prev|col|in_scope)\}")

_EVENTS = """events as (
    select
        transaction_id, user_id, ts, amount, lat, lon, utc_offset_min, is_fraud,
        fraud_scenario, channel, category, nullif(device_id, '') as device_id, merchant_id,
        card_last4, country, city, epoch_us(ts) as ts_us,
        user_id is not null and ts is not null and amount is not null and lat is not null
        and lon is not null and utc_offset_min is not null as decidable
    from transactions
)"""
_DECIDED = "decided as (\n    select * from events where decidable\n)"
_CHANNELS = "coalesce(list_contains(cast(${col}_channels as varchar[]), channel), false)"
_CATEGORIES = "coalesce(list_contains(cast(${col}_categories as varchar[]), category), false)"


@dataclass(frozen=True)
class FlagsQuery:
    """The composed SQL, its bound values, and which positional column is which rule id."""

    sql: str
    params: dict[str, Any]
    columns: tuple[str, ...]  # r1 … rN
    rule_ids: tuple[str, ...]  # the same, by id (file order)

    @property
    def names(self) -> dict[str, str]:
        """Positional column -> rule id."""
        return dict(zip(self.columns, self.rule_ids, strict=True))


@cache
def template(kind: str) -> str:
    """The SQL template of a kind (``queries/kinds/<kind>.sql``) without its header comment."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    text = (KINDS_DIR / f"{kind}.sql").read_text()
    return "\n".join(line for line in text.splitlines() if not line.startswith("--")).strip()


def template_params(kind: str) -> list[str]:
    """The ``$name`` parameters a kind's template uses, in first-use order."""
    return list(dict.fromkeys(_PARAM.findall(template(kind))))


def compose_flags(rule_set: RuleSet) -> FlagsQuery:
    """The flags query of ``rule_set`` (see the module docstring)."""
    units, threshold_units, scale = rule_set.weight_units()
    ctes = [_EVENTS, _DECIDED]
    params: dict[str, Any] = {"threshold_units": threshold_units, "weight_scale": scale}
    columns: list[str] = []
    prev = "decided"
    for i, (rule, unit) in enumerate(zip(rule_set.rules, units, strict=True), start=1):
        col = f"r{i}"
        ctes.append(f"{col} as (\n{_rule_cte(rule, col, prev)}\n)")
        params.update(_rule_params(rule, col))
        params[f"{col}_weight_units"] = unit
        columns.append(col)
        prev = col
    ctes.append(_scored(prev, columns))
    ctes.append(_final(columns))
    sql = ("-- One row per transaction: the decisions of a rule set (composed by "
           "queries/compose.py).\nwith " + ",\n\n".join(ctes) + "\n\nselect * from final\n")
    return FlagsQuery(sql=sql, params=params, columns=tuple(columns),
                      rule_ids=rule_set.rule_ids)


def _rule_cte(rule: Rule, col: str, prev: str) -> str:
    body = _PARAM.sub(lambda m: f"${col}_{m.group(1)}", template(rule.kind))
    fragments = {"prev": prev, "col": col, "in_scope": _scope(rule, col)}
    return _PLACEHOLDER.sub(lambda m: fragments[m.group(1)], body)


def _scope(rule: Rule, col: str) -> str:
    parts = ([_CHANNELS.replace("{col}", col)] if rule.channels is not None else []) + \
            ([_CATEGORIES.replace("{col}", col)] if rule.categories is not None else [])
    return "(" + " and ".join(parts) + ")" if parts else "true"


def bindable_params(rule: Rule) -> dict[str, Any]:
    """Every parameter of the rule as a bindable value (decimals as exact text, lists)."""
    return {name: _bindable(value) for name, value in rule.params.items()}


def output_columns(query: FlagsQuery) -> tuple[str, ...]:
    """The columns of the composed query, in order (rule columns positional)."""
    return (*PASSTHROUGH, *query.columns, "score", "flagged")


def _rule_params(rule: Rule, col: str) -> dict[str, Any]:
    """``$r<i>_<name>`` values for the rule's template and scope."""
    out: dict[str, Any] = {}
    values = bindable_params(rule)
    for name in template_params(rule.kind):
        out[f"{col}_{name}"] = values[name]
    if rule.channels is not None:
        out[f"{col}_channels"] = list(rule.channels)
    if rule.categories is not None:
        out[f"{col}_categories"] = list(rule.categories)
    return out


def _bindable(value: Any) -> Any:
    """Decimals as exact text (the templates cast them to DECIMAL), tuples as lists."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _scored(prev: str, columns: list[str]) -> str:
    units = " + ".join(f"cast({c} as bigint) * ${c}_weight_units" for c in columns)
    falses = ", ".join(f"false as {c}" for c in columns)
    keep = ", ".join(PASSTHROUGH)
    # only fixed names and positional columns (r1 ...), never rule-file text
    return (f"scored as (\n    select {keep}, {', '.join(columns)},\n        {units} as units\n"  # noqa: S608
            f"    from {prev}\n    union all\n    select {keep}, {falses}, 0 as units\n"
            "    from events where not decidable\n)")


def _final(columns: list[str]) -> str:
    return ("final as (\n    select\n        " + ", ".join([*PASSTHROUGH, *columns])
            + ",\n        cast(units as double) / $weight_scale as score,\n"
            "        units >= $threshold_units as flagged\n    from scored\n)")


# --- running it -------------------------------------------------------------------------------

def flags_relation(con: duckdb.DuckDBPyConnection, rule_set: RuleSet,
                   query: FlagsQuery | None = None) -> duckdb.DuckDBPyRelation:
    """The flags of the connection's ``transactions`` view, columns named by rule id."""
    q = query or compose_flags(rule_set)
    rel = con.sql(q.sql, params=q.params)
    names = q.names
    return rel.project(*[duckdb.ColumnExpression(c).alias(names[c]) if c in names
                         else duckdb.ColumnExpression(c) for c in rel.columns])


def rename_columns(data: pa.Table | pa.RecordBatch,
                   names: Mapping[str, str]) -> pa.Table | pa.RecordBatch:
    """Arrow data with positional rule columns (``r1`` …) renamed to rule ids."""
    renamed = [names.get(c, c) for c in data.schema.names]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(data.columns, names=renamed)
    return data.rename_columns(renamed)
