"""Shaping what-if aggregates into report parts (drift, flips, rule value): pure functions
over small Polars frames and NumPy sums; plus the number formats the report uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

FLAGGED = "flagged"


def drift_frame(cells: pl.DataFrame, rules: Sequence[str]) -> pl.DataFrame:
    """Per (rule, year, month): rows, fraud, fired, true_pos, flag_rate, precision, recall,
    from cells with year, month, is_fraud, rows and one count column per rule."""
    timed = cells.filter(pl.col("year").is_not_null())
    if timed.height == 0:
        return pl.DataFrame()
    fraud = pl.col("is_fraud").fill_null(False)
    parts = [timed.group_by("year", "month").agg(
        pl.lit(rid).alias("rule"), pl.col("rows").sum(),
        (pl.col("rows") * fraud).sum().alias("fraud"),
        pl.col(rid).sum().alias("fired"),
        (pl.col(rid) * fraud).sum().alias("true_pos")) for rid in rules]
    df = pl.concat(parts).with_columns(
        flag_rate=pl.col("fired") / pl.col("rows"),
        precision=pl.when(pl.col("fired") > 0).then(pl.col("true_pos") / pl.col("fired")),
        recall=pl.when(pl.col("fraud") > 0).then(pl.col("true_pos") / pl.col("fraud")))
    return df.select("rule", "year", "month", "rows", "fraud", "fired", "true_pos",
                     "flag_rate", "precision", "recall").sort("rule", "year", "month")


def flips_dict(frame: pl.DataFrame, rids: Sequence[str]) -> dict:
    """``{rid: {gained, lost, by_year, by_scenario}}`` from a frame of year, fraud_scenario
    and ``gained__<rid>`` / ``lost__<rid>`` counts."""
    out = {}
    for rid in rids:
        g, lost = f"gained__{rid}", f"lost__{rid}"
        by_year = (frame.filter(pl.col("year").is_not_null()).group_by("year")
                   .agg(pl.col(g, lost).sum()).sort("year"))
        by_scen = (frame.filter(pl.col("fraud_scenario").is_not_null())
                   .group_by("fraud_scenario").agg(pl.col(g, lost).sum())
                   .sort("fraud_scenario"))
        out[rid] = {
            "gained": int(frame[g].sum()), "lost": int(frame[lost].sum()),
            "by_year": {str(y): {"gained": int(a), "lost": int(b)}
                        for y, a, b in by_year.iter_rows() if a or b},
            "by_scenario": {s: {"gained": int(a), "lost": int(b)}
                            for s, a, b in by_scen.iter_rows() if a or b},
        }
    return out


def rule_value_dict(counts: pl.DataFrame, rule_ids: Sequence[str], without: np.ndarray,
                    overlap: np.ndarray) -> dict:
    """Rule value from the variant's counts frame, the per-rule (alerts, fraud alerts) of the
    set without the rule, and the overlap matrix of alerts."""
    fraud = counts.filter(pl.col("is_fraud").fill_null(False))
    fraud_rows = int(fraud["rows"].sum())
    flagged = int(counts[FLAGGED].sum())
    tp = int(fraud[FLAGGED].sum())
    rules = {}
    for k, rid in enumerate(rule_ids):
        n, t = int(without[k, 0]), int(without[k, 1])
        rules[rid] = {
            "alerts_without": n, "recall_without": ratio(t, fraud_rows),
            "precision_without": ratio(t, n),
            "recall_lost_pp": pp(ratio(tp, fraud_rows), ratio(t, fraud_rows)),
            "alerts_only_this_rule_adds": flagged - n,
        }
    ids = list(rule_ids)
    return {"set": {"alerts": flagged, "recall": ratio(tp, fraud_rows),
                    "precision": ratio(tp, flagged)},
            "rules": rules,
            "overlap": {a: {b: int(overlap[i, j]) for j, b in enumerate(ids)}
                        for i, a in enumerate(ids)}}


def money(cents: int) -> str:
    """Cents as an exact decimal text, e.g. 123456 -> "1234.56"."""
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def pp(before: float | None, after: float | None) -> float | None:
    """Percentage points from ``before`` down to ``after`` (positive = lost)."""
    if before is None or after is None:
        return None
    return round(100 * (before - after), 4)
