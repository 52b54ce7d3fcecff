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
    expected = {name: float(r.get("flag_rate"))
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
