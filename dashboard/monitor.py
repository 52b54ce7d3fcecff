"""Per-rule monitoring: live hit rates against the band the backtest predicts (pure).

The backtest report gives each rule's flag rate ``p`` over the history. Over ``n`` live events
a rule is expected to fire ``n·p`` times; the band is ``p ± 3·sqrt(p(1-p)/n)`` (binomial, 3σ).
A live rate outside it is marked as drift (up or down).
"""

from __future__ import annotations

import math

import polars as pl

BAND_SIGMAS = 3.0
SCHEMA: dict[str, pl.DataType] = {
    "rule": pl.String(), "live hits": pl.Int64(), "live rate": pl.Float64(),
    "backtest rate": pl.Float64(), "band low": pl.Float64(), "band high": pl.Float64(),
    "status": pl.String(),
}


def band(p: float, n: int, sigmas: float = BAND_SIGMAS) -> tuple[float, float]:
    """The rate band expected over ``n`` events for a rule firing at rate ``p``."""
    if n <= 0:
        return 0.0, 1.0
    half = sigmas * math.sqrt(max(p * (1 - p), 0.0) / n)
    return max(0.0, p - half), min(1.0, p + half)


def status(rate: float | None, lo: float, hi: float) -> str:
    if rate is None:
        return "no live events"
    if rate > hi:
        return "▲ drift: above band"
    if rate < lo:
        return "▼ drift: below band"
    return "in band"


def rule_monitor(per_rule: pl.DataFrame, live_events: int, report: dict | None
                 ) -> pl.DataFrame:
    """One row per rule seen live or in the backtest: live rate vs the backtest band.

    ``per_rule`` has (rule, flags) counted over the same events as ``live_events``."""
    expected = {name: float(r.get("flag_rate") or 0.0)
                for name, r in ((report or {}).get("rules") or {}).items()
                if name != "flagged" and isinstance(r, dict)
                and isinstance(r.get("flag_rate"), int | float)}
    hits = dict(zip(per_rule["rule"].to_list(), per_rule["flags"].to_list(), strict=True))
    rows = []
    for rule in sorted(set(expected) | set(hits)):
        n_hits = int(hits.get(rule, 0))
        rate = n_hits / live_events if live_events else None
        p = expected.get(rule)
        if p is None:
            rows.append({"rule": rule, "live hits": n_hits, "live rate": rate,
                         "backtest rate": None, "band low": None, "band high": None,
                         "status": "no backtest figure"})
            continue
        lo, hi = band(p, live_events)
        rows.append({"rule": rule, "live hits": n_hits, "live rate": rate, "backtest rate": p,
                     "band low": lo, "band high": hi, "status": status(rate, lo, hi)})
    return pl.DataFrame(rows, schema=SCHEMA, orient="row") if rows else pl.DataFrame(
        schema=SCHEMA)


def rule_band_series(hits: pl.DataFrame, live: pl.DataFrame, rule: str, p: float | None
                     ) -> pl.DataFrame:
    """One rule over time: bucket, live events, hits, expected, band low/high (in hits), drift.

    ``hits``: (bucket, rule, flags); ``live``: (bucket, events) zero-filled over the range."""
    mine = hits.filter(pl.col("rule") == rule).select("bucket", pl.col("flags").alias("hits"))
    out = live.join(mine, on="bucket", how="left").with_columns(pl.col("hits").fill_null(0))
    if p is None:
        return out.with_columns(pl.lit(None, pl.Float64).alias(c)
                                for c in ("expected", "band low", "band high")).with_columns(
            pl.lit(False).alias("drift"))
    half = BAND_SIGMAS * (pl.col("events").cast(pl.Float64) * p * (1 - p)).sqrt()
    expected = pl.col("events").cast(pl.Float64) * p
    out = out.with_columns(expected.alias("expected"),
                           (expected - half).clip(lower_bound=0).alias("band low"),
                           (expected + half).alias("band high"))
    return out.with_columns(((pl.col("events") > 0) & ((pl.col("hits") < pl.col("band low"))
                                                      | (pl.col("hits") > pl.col("band high"))))
                            .alias("drift"))
