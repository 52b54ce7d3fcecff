"""Hit rates of the rules: pure functions over flag counts (no I/O).

A *counts* frame has one row per (year, is_fraud, fraud_scenario) group with ``rows`` and, per
rule and for ``flagged``, how many of those rows the rule flagged. ``count_flags`` builds it from a
per-transaction flags+labels frame; the backtest builds it chunk by chunk in DuckDB and sums.

Per rule: flagged, flag rate (flagged / rows), precision (fraud among flagged), recall (flagged
among fraud) and recall per fraud scenario. Without labels precision and recall are ``None``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

from fraudlake.contract import FLAGGED, RULE_NAMES

RULE_COLUMNS: tuple[str, ...] = (*RULE_NAMES, FLAGGED)
GROUP_COLUMNS: tuple[str, ...] = ("year", "is_fraud", "fraud_scenario")
COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "year": pl.Int32(), "is_fraud": pl.Boolean(), "fraud_scenario": pl.String(),
    "rows": pl.Int64(), **{name: pl.Int64() for name in RULE_COLUMNS},
}


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
    rules: dict[str, RuleHits]  # RULE_NAMES then "flagged"

    def rules_dict(self) -> dict[str, dict]:
        return {name: asdict(hits) for name, hits in self.rules.items()}


def count_flags(flags: pl.DataFrame) -> pl.DataFrame:
    """Counts frame from one row per transaction (``ts`` or ``year``, labels optional)."""
    df = flags
    if "year" not in df.columns:
        df = df.with_columns(year=pl.col("ts").dt.convert_time_zone("UTC").dt.year())
    for name, dtype in (("is_fraud", pl.Boolean()), ("fraud_scenario", pl.String())):
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype).alias(name))
    out = df.group_by(GROUP_COLUMNS).agg(
        pl.len().alias("rows"), *[pl.col(c).fill_null(False).sum().alias(c) for c in RULE_COLUMNS]
    )
    return normalize_counts(out)


def normalize_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """Contract types and one row per group (sums duplicates, e.g. from several chunks)."""
    cast = counts.select([pl.col(c).cast(t) for c, t in COUNTS_SCHEMA.items()])
    return (cast.group_by(GROUP_COLUMNS)
            .agg([pl.col(c).sum() for c in ("rows", *RULE_COLUMNS)])
            .sort(GROUP_COLUMNS, nulls_last=True))


def hit_rates(counts: pl.DataFrame) -> HitRates:
    """Overall hit rates of every rule and of ``flagged`` from a counts frame."""
    rows = int(counts["rows"].sum()) if counts.height else 0
    labelled = counts.filter(pl.col("is_fraud").is_not_null())
    fraud = labelled.filter(pl.col("is_fraud"))
    has_labels = labelled.height > 0
    fraud_rows = int(fraud["rows"].sum()) if has_labels else None
    scenarios = (fraud.filter(pl.col("fraud_scenario").is_not_null())
                 .group_by("fraud_scenario").agg(pl.col("rows", *RULE_COLUMNS).sum())
                 .sort("fraud_scenario"))
    rules = {}
    for name in RULE_COLUMNS:
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
    """A plain-text table: one line per rule and for any-rule (``flagged``)."""
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
