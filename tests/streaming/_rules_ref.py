"""A naive, per-row pure-Python reference of every rule kind (DESIGN.md "Rule sets (v2)").

For the stream engine's tests: group by user, sort by (ts, transaction_id), loop; Decimal
compares; ``math`` haversine. Deliberately shares nothing with the engine or the kernels.
``decide_sorted`` decides rows already sorted per user (used by the tests' stand-in kernels).
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

import polars as pl

COLUMNS = ("transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min",
           "channel", "category", "merchant_id", "device_id", "card_last4", "country", "city")


def in_scope(rule, e: dict) -> bool:
    if rule.channels is not None and e.get("channel") not in rule.channels:
        return False
    return rule.categories is None or e.get("category") in rule.categories


def _ts_us(e: dict) -> int:
    ts = e["ts"]
    return ts if isinstance(ts, int) else int(ts.timestamp()) * 1_000_000 + ts.microsecond


def _hav(lat1, lon1, lat2, lon2, r):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def fires(rule, rows: list[dict], i: int) -> bool:
    """Does ``rule`` fire on ``rows[i]`` (rows: one user's events, sorted)?"""
    e = rows[i]
    if not in_scope(rule, e):
        return False
    p, kind, t = rule.params, rule.kind, _ts_us(e)
    if kind == "amount_over":
        return e["amount"] > p["threshold"]
    if kind in ("velocity_count", "velocity_amount"):
        lo = t - p["window_seconds"] * 1_000_000
        cap = p.get("max_amount")
        if cap is not None and e["amount"] > cap:
            return False
        win = [r for r in rows[:i + 1] if _ts_us(r) >= lo and in_scope(rule, r)
               and (cap is None or r["amount"] <= cap)]
        if kind == "velocity_count":
            return len(win) >= p["count"]
        return sum((r["amount"] for r in win), Decimal(0)) > p["total"]
    if kind == "local_hour":
        hour = ((t // 1_000_000 + e["utc_offset_min"] * 60) // 3600) % 24
        s, end = p["start_hour"], p["end_hour"]
        return s <= hour < end if s <= end else (hour >= s or hour < end)
    if kind == "impossible_travel":
        if i == 0:
            return False
        q = rows[i - 1]
        d = _hav(q["lat"], q["lon"], e["lat"], e["lon"], p["earth_radius_km"])
        hours = max((t - _ts_us(q)) / 1_000_000 / 3600, p["min_hours"])
        return d >= p["distance_km"] and d / hours > p["speed_kmh"]
    if kind == "amount_vs_history":
        prev = sorted(r["amount"] for r in rows[max(0, i - p["history"]):i])
        if len(prev) < p["min_history"]:
            return False
        n = len(prev)
        if n % 2:
            return e["amount"] > p["ratio"] * prev[n // 2]
        return 2 * e["amount"] > p["ratio"] * (prev[n // 2 - 1] + prev[n // 2])
    if kind == "new_device":
        dev = e.get("device_id") or None
        if dev is None:
            return False
        lo = t - p["lookback_days"] * 86_400_000_000
        prev = [r for r in rows[:i] if _ts_us(r) >= lo]
        return len(prev) >= p["min_history"] and all((r.get("device_id") or None) != dev
                                                      for r in prev)
    if kind == "in_list":
        value = e.get(p["field"])
        return value is not None and value in p["values"]
    raise ValueError(kind)


def decide_sorted(rows: list[dict], rule_set) -> list[dict[str, bool]]:
    """Fired rules of each row of one user's sorted rows."""
    return [{r.id: fires(r, rows, i) for r in rule_set.rules} for i in range(len(rows))]


def reference_decisions(events: pl.DataFrame, rule_set) -> pl.DataFrame:
    """transaction_id, one bool per rule id, score, flagged — in input order."""
    rows = events.select([c for c in COLUMNS if c in events.columns]).to_dicts()
    by_user: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_user[r["user_id"]].append(r)
    units, need, scale = rule_set.weight_units()
    out: dict[str, dict] = {}
    for user_rows in by_user.values():
        user_rows.sort(key=lambda r: (r["ts"], r["transaction_id"]))
        for r, fired in zip(user_rows, decide_sorted(user_rows, rule_set), strict=True):
            total = sum(u for u, rule in zip(units, rule_set.rules, strict=True) if fired[rule.id])
            out[r["transaction_id"]] = {**fired, "score": total / scale, "flagged": total >= need}
    schema = {"transaction_id": pl.String, **{i: pl.Boolean for i in rule_set.rule_ids},
              "score": pl.Float64, "flagged": pl.Boolean}
    return pl.DataFrame([{"transaction_id": r["transaction_id"], **out[r["transaction_id"]]}
                         for r in rows], schema=schema)
