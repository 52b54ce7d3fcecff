"""The live shadow comparison: what the shadow set would change, from the lake.

``compare(lake)`` takes lake rows (any ``LazyFrame``/``DataFrame`` with the lake v2 columns;
rows without a shadow decision are ignored) and returns one row per (active set, shadow set)
pair that ran together: ``events``, ``active_alerts``, ``shadow_alerts``, ``both``, ``added``
(alerts the shadow set would raise that the active one did not), ``removed`` (the reverse),
and, over the rows with a label (``is_fraud`` not null), ``labelled``, ``frauds``, each set's
``*_precision`` (fraud among its alerts) and ``*_recall`` (its alerts among frauds), and
``added_fraud`` / ``removed_fraud``. Precision/recall are null when nothing is labelled.
``scan_lake`` is the I/O edge; ``python -m streaming.rules compare`` prints it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from fraudlake.contract import LAKE_SCHEMA, SHADOW_SCHEMA
from lake.layout import transactions_dir

PAIR = ["rule_set_id", "shadow_rule_set_id"]
READ = ("is_fraud", "flagged", "shadow_flagged", *PAIR)


def compare(lake: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """One row per (active, shadow) pair; see the module docstring."""
    rows = lake.lazy().filter(pl.col("shadow_rule_set_id").is_not_null())
    act = pl.col("flagged").fill_null(False)
    sh = pl.col("shadow_flagged").fill_null(False)
    labelled = pl.col("is_fraud").is_not_null()
    fraud = pl.col("is_fraud").fill_null(False)
    out = rows.group_by(PAIR).agg(
        events=pl.len(),
        active_alerts=act.sum(),
        shadow_alerts=sh.sum(),
        both=(act & sh).sum(),
        added=(sh & ~act).sum(),
        removed=(act & ~sh).sum(),
        labelled=labelled.sum(),
        frauds=(labelled & fraud).sum(),
        _act_lab=(act & labelled).sum(),
        _sh_lab=(sh & labelled).sum(),
        _act_tp=(act & fraud).sum(),
        _sh_tp=(sh & fraud).sum(),
        added_fraud=(sh & ~act & fraud).sum(),
        removed_fraud=(act & ~sh & fraud).sum(),
    )
    return out.with_columns(
        active_precision=_ratio("_act_tp", "_act_lab"),
        shadow_precision=_ratio("_sh_tp", "_sh_lab"),
        active_recall=_ratio("_act_tp", "frauds"),
        shadow_recall=_ratio("_sh_tp", "frauds"),
    ).drop("_act_lab", "_sh_lab", "_act_tp", "_sh_tp").sort(PAIR).collect()


def _ratio(num: str, den: str) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None)


def scan_lake(lake_root: Path) -> pl.LazyFrame:
    """The live lake's rows, the columns ``compare`` reads (a file written without shadow
    columns reads them as null)."""
    want = {c: t for c, t in {**LAKE_SCHEMA, **SHADOW_SCHEMA}.items() if c in READ}
    files = sorted(p for p in transactions_dir(lake_root).rglob("*.parquet")
                   if not p.name.startswith("."))
    frames = []
    for f in files:
        lazy = pl.scan_parquet(f, hive_partitioning=False)
        names = lazy.collect_schema().names()
        frames.append(lazy.select([pl.col(c).cast(t) if c in names else pl.lit(None, t).alias(c)
                                   for c, t in want.items()]))
    return pl.concat(frames) if frames else pl.LazyFrame(schema=want)


def format_comparison(table: pl.DataFrame) -> str:
    if table.is_empty():
        return "no shadow decisions in the lake"
    lines = []
    for r in table.iter_rows(named=True):
        lines.append(f"active {r['rule_set_id']}  vs  shadow {r['shadow_rule_set_id']}: "
                     f"{r['events']:,} events")
        lines.append(f"  alerts: active {r['active_alerts']:,}, shadow {r['shadow_alerts']:,} "
                     f"(both {r['both']:,}; shadow adds {r['added']:,}, removes "
                     f"{r['removed']:,})")
        if r["labelled"]:
            lines.append(f"  labelled {r['labelled']:,} ({r['frauds']:,} fraud): precision "
                         f"active {_pct(r['active_precision'])} / shadow "
                         f"{_pct(r['shadow_precision'])}; recall active "
                         f"{_pct(r['active_recall'])} / shadow {_pct(r['shadow_recall'])}; "
                         f"added alerts that are fraud {r['added_fraud']:,}, removed "
                         f"{r['removed_fraud']:,}")
        else:
            lines.append("  no labels: precision unknown")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
