"""Hit rates of a rule set: pure functions over flag counts (no I/O).

The *counts frame* is what both backtest engines return (``batch.chunked_flags.flag_counts``, the
SQL engine, and ``batch.fast_flags.flag_counts``, the fast one) and what ``hit_rates`` reads. For a
``rules.model.RuleSet`` its columns are, in this order (``counts_schema(rule_set)``):

==================  ========  ================================================================
column              type      meaning
==================  ========  ================================================================
year                Int32     UTC year of ``ts``
is_fraud            Boolean   the label; NULL = unlabelled rows
fraud_scenario      String    the injected scenario; NULL for genuine or unlabelled rows
rows                Int64     events in the group
<rule id> ...       Int64     one column per rule id, in file order: events the rule fired on
flagged             Int64     events with score >= alert_threshold
==================  ========  ================================================================

A frame may hold several rows for the same (year, is_fraud, fraud_scenario) group (e.g. one part
per chunk): ``normalize_counts`` casts to the types above and sums them into one row per group.
Rows with a NULL core column (decided false on every rule) are counted in ``rows`` like any other.
No rule id is ``rows`` (``check_rule_ids``; the other column names are reserved by the model).

Per rule and for ``flagged``: flagged count, flag rate (flagged / rows), precision (fraud among
flagged), recall (flagged among fraud) and recall per fraud scenario. Without labels precision
and recall are ``None``. ``count_flags`` builds the counts frame from a per-transaction frame
(tests, small inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import polars as pl

FLAGGED = "flagged"
GROUP_COLUMNS: tuple[str, ...] = ("year", "is_fraud", "fraud_scenario")
_GROUP_TYPES: dict[str, pl.DataType] = {
    "year": pl.Int32(), "is_fraud": pl.Boolean(), "fraud_scenario": pl.String()}


class CountsError(ValueError):
    """A rule set whose ids cannot name counts columns."""


def rule_columns(rule_ids: Sequence[str]) -> tuple[str, ...]:
    """The counted decision columns: the rule ids in file order, then ``flagged``."""
    return (*rule_ids, FLAGGED)


def check_rule_ids(rule_ids: Sequence[str]) -> None:
    """CountsError when a rule id collides with a column of the counts frame."""
    taken = {*GROUP_COLUMNS, "rows", FLAGGED}
    for rid in rule_ids:
        if rid in taken:
            raise CountsError(f"rule '{rid}': the id is a column of the hit-rate counts; "
                              "rename the rule")


def counts_schema(rule_ids: Sequence[str]) -> dict[str, pl.DataType]:
    """Column -> type of the counts frame for rules ``rule_ids`` (file order)."""
    check_rule_ids(rule_ids)
    return {**_GROUP_TYPES, "rows": pl.Int64(),
            **{name: pl.Int64() for name in rule_columns(rule_ids)}}


@dataclass(frozen=True)
class RuleHits:
    flagged: int
    flag_rate: float
    precision: float | None
    recall: float | None
    recall_by_scenario: dict[str, float]


@dataclass(frozen=True)
class HitRates:
    rows: int
    fraud_rows: int | None  # None: the input has no labels
    rules: dict[str, RuleHits]  # rule ids in file order, then "flagged"

    def rules_dict(self) -> dict[str, dict]:
        return {name: asdict(hits) for name, hits in self.rules.items()}


def count_flags(flags: pl.DataFrame, rule_ids: Sequence[str]) -> pl.DataFrame:
    """Counts frame from one row per transaction (``ts`` or ``year``, labels optional)."""
    df = flags
    if "year" not in df.columns:
        df = df.with_columns(year=pl.col("ts").dt.convert_time_zone("UTC").dt.year())
    for name, dtype in (("is_fraud", pl.Boolean()), ("fraud_scenario", pl.String())):
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype).alias(name))
    out = df.group_by(GROUP_COLUMNS).agg(
        pl.len().alias("rows"),
        *[pl.col(c).fill_null(False).sum().alias(c) for c in rule_columns(rule_ids)])
    return normalize_counts(out, rule_ids)


def normalize_counts(counts: pl.DataFrame, rule_ids: Sequence[str]) -> pl.DataFrame:
    """Contract types and one row per group (sums duplicates, e.g. from several chunks)."""
    schema = counts_schema(rule_ids)
    if counts.width == 0:
        return pl.DataFrame(schema=schema)
    cast = counts.select([pl.col(c).cast(t) for c, t in schema.items()])
    return (cast.group_by(GROUP_COLUMNS)
            .agg([pl.col(c).sum() for c in ("rows", *rule_columns(rule_ids))])
            .sort(GROUP_COLUMNS, nulls_last=True))


def counted_columns(counts: pl.DataFrame) -> tuple[str, ...]:
    """The decision columns of a counts frame, in its order (rule ids, then flagged)."""
    return tuple(c for c in counts.columns if c not in (*GROUP_COLUMNS, "rows"))


def hit_rates(counts: pl.DataFrame) -> HitRates:
    """Hit rates of every rule and of ``flagged`` from a (normalized) counts frame."""
    columns = counted_columns(counts)
    rows = int(counts["rows"].sum()) if counts.height else 0
    labelled = counts.filter(pl.col("is_fraud").is_not_null())
    fraud = labelled.filter(pl.col("is_fraud"))
    has_labels = labelled.height > 0
    fraud_rows = int(fraud["rows"].sum()) if has_labels else None
    scenarios = (fraud.filter(pl.col("fraud_scenario").is_not_null())
                 .group_by("fraud_scenario").agg(pl.col("rows", *columns).sum())
                 .sort("fraud_scenario"))
    rules = {}
    for name in columns:
        flagged = int(counts[name].sum()) if counts.height else 0
        flagged_labelled = int(labelled[name].sum()) if has_labels else 0
        true_pos = int(fraud[name].sum()) if has_labels else 0
        rules[name] = RuleHits(
            flagged=flagged,
            flag_rate=_ratio(flagged, rows) or 0.0,
            precision=_ratio(true_pos, flagged_labelled) if has_labels else None,
            recall=_ratio(true_pos, fraud_rows or 0) if has_labels else None,
            recall_by_scenario={
                s: _ratio(int(n), int(total)) or 0.0
                for s, n, total in zip(scenarios["fraud_scenario"], scenarios[name],
                                       scenarios["rows"], strict=True)
            },
        )
    return HitRates(rows=rows, fraud_rows=fraud_rows, rules=rules)


def hit_rates_by_year(counts: pl.DataFrame) -> dict[int, HitRates]:
    years = sorted(y for y in counts["year"].unique().to_list() if y is not None)
    return {y: hit_rates(counts.filter(pl.col("year") == y)) for y in years}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def format_table(rates: HitRates, title: str = "") -> str:
    """A plain-text table: one line per rule and for ``flagged``."""
    scen = sorted({s for h in rates.rules.values() for s in h.recall_by_scenario})
    head = ["rule", "flagged", "flag rate", "precision", "recall", *[f"r:{s}" for s in scen]]
    body = [[name, f"{h.flagged:,}", _pct(h.flag_rate), _pct(h.precision), _pct(h.recall),
             *[_pct(h.recall_by_scenario.get(s)) for s in scen]]
            for name, h in rates.rules.items()]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths, strict=True)))
    fraud = "n/a" if rates.fraud_rows is None else f"{rates.fraud_rows:,}"
    lines = [f"{title}rows {rates.rows:,}, fraud {fraud}", fmt(head), *map(fmt, body)]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
