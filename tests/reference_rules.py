"""A straightforward pure-Python reference of docs/design.md's four rules (v1).

Shared by tests of the SQL rules, the backtest and the stream engine. Deliberately naive: group
by user, sort by (ts, transaction_id), loop; Decimal compare; ``math`` haversine. No windows,
no state, no tricks to share with the code under test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import polars as pl

from queries.params import DEFAULT_PARAMS, RuleParams

RULES = ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")
FLAGS_SCHEMA = {"transaction_id": pl.String, **{r: pl.Boolean for r in RULES},
                "flagged": pl.Boolean}
_CORE = ("transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min")


def reference_flags(events: list[dict] | pl.DataFrame,
                    params: RuleParams = DEFAULT_PARAMS) -> pl.DataFrame:
    """transaction_id + one bool per rule + flagged, one row per event, in input order.

    ``events``: dicts (or a frame) with at least transaction_id, user_id, ts (tz-aware
    datetime), amount (Decimal), lat, lon, utc_offset_min.
    """
    rows = events.select(_CORE).to_dicts() if isinstance(events, pl.DataFrame) else list(events)
    by_user: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_user[row["user_id"]].append(row)
    decided: dict[str, dict[str, bool]] = {}
    for user_rows in by_user.values():
        ordered = sorted(user_rows, key=lambda r: (r["ts"], r["transaction_id"]))
        for i, event in enumerate(ordered):
            decided[event["transaction_id"]] = _decide(ordered, i, params)
    out = [{"transaction_id": r["transaction_id"], **decided[r["transaction_id"]]} for r in rows]
    return pl.DataFrame(out, schema=FLAGS_SCHEMA) if out else pl.DataFrame(schema=FLAGS_SCHEMA)


def _decide(ordered: list[dict], i: int, params: RuleParams) -> dict[str, bool]:
    event = ordered[i]
    rules = {
        "high_amount": event["amount"] > params.high_amount_threshold,
        "high_frequency": _window_count(ordered, i, params) >= params.high_frequency_count,
        "unusual_hour": _unusual_hour(event, params),
        "geo_mismatch": i > 0 and _impossible_travel(ordered[i - 1], event, params),
    }
    return {**rules, "flagged": any(rules.values())}


def _window_count(ordered: list[dict], i: int, params: RuleParams) -> int:
    """Events e' <= e (this one included) with e'.ts >= e.ts - window."""
    start = ordered[i]["ts"] - timedelta(seconds=params.high_frequency_window_seconds)
    return sum(1 for earlier in ordered[: i + 1] if earlier["ts"] >= start)


def local_hour(event: dict) -> int:
    return (event["ts"] + timedelta(minutes=event["utc_offset_min"])).hour


def _unusual_hour(event: dict, params: RuleParams) -> bool:
    hour = local_hour(event)
    start, end = params.unusual_hour_start_hour, params.unusual_hour_end_hour
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float, radius: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * radius * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def _impossible_travel(prev: dict, event: dict, params: RuleParams) -> bool:
    d = haversine_km(prev["lat"], prev["lon"], event["lat"], event["lon"],
                     params.geo_mismatch_earth_radius_km)
    hours = max((event["ts"] - prev["ts"]).total_seconds() / 3600, params.geo_mismatch_min_hours)
    return d >= params.geo_mismatch_distance_km and d / hours > params.geo_mismatch_speed_kmh


# --- rule sets (v2): every kind, naively ------------------------------------------------------

_NEEDED = ("user_id", "ts", "amount", "lat", "lon", "utc_offset_min")
_OPTIONAL = ("channel", "category", "device_id", "merchant_id", "card_last4", "country", "city")


def reference_decisions(events: list[dict] | pl.DataFrame, rule_set) -> pl.DataFrame:
    """transaction_id, one bool per rule id (file order), score (double), flagged — one row per
    event in input order — for a ``rules.model.RuleSet``, by docs/design.md "Rule sets (v2)".

    A row with a NULL in user_id, ts, amount, lat, lon or utc_offset_min is decided false on
    every rule (score 0) and is invisible to every other row.
    """
    rows = events.to_dicts() if isinstance(events, pl.DataFrame) else [dict(r) for r in events]
    for row in rows:
        for col in _OPTIONAL:
            row.setdefault(col, None)
    by_user: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        if all(row.get(c) is not None for c in _NEEDED):
            by_user[row["user_id"]].append(row)
    fired: dict[str, dict[str, bool]] = {}
    for user_rows in by_user.values():
        ordered = sorted(user_rows, key=lambda r: (r["ts"], r["transaction_id"]))
        for i, event in enumerate(ordered):
            fired[event["transaction_id"]] = {
                rule.id: in_scope(rule, event) and _KINDS[rule.kind](ordered, i, rule)
                for rule in rule_set.rules}
    ids = rule_set.rule_ids
    schema = {"transaction_id": pl.String, **{r: pl.Boolean for r in ids},
              "score": pl.Float64, "flagged": pl.Boolean}
    out = []
    for row in rows:
        decided = fired.get(row["transaction_id"], dict.fromkeys(ids, False))
        score = sum((r.weight for r in rule_set.rules if decided[r.id]), Decimal(0))
        out.append({"transaction_id": row["transaction_id"], **decided, "score": float(score),
                    "flagged": score >= rule_set.alert_threshold})
    return pl.DataFrame(out, schema=schema) if out else pl.DataFrame(schema=schema)


def in_scope(rule, event: dict) -> bool:
    """Channel AND category in the rule's lists when given; NULL is out of scope."""
    return ((rule.channels is None or event.get("channel") in rule.channels)
            and (rule.categories is None or event.get("category") in rule.categories))


def _amount_over(ordered: list[dict], i: int, rule) -> bool:
    return ordered[i]["amount"] > rule.params["threshold"]


def _velocity_events(ordered: list[dict], i: int, rule) -> list[dict]:
    """The user's in-scope events e' <= e with e'.ts >= e.ts - window."""
    start = ordered[i]["ts"] - timedelta(seconds=rule.params["window_seconds"])
    return [e for e in ordered[: i + 1] if e["ts"] >= start and in_scope(rule, e)]


def _velocity_count(ordered: list[dict], i: int, rule) -> bool:
    cap = rule.params["max_amount"]
    if cap is not None and ordered[i]["amount"] > cap:
        return False
    n = sum(1 for e in _velocity_events(ordered, i, rule) if cap is None or e["amount"] <= cap)
    return n >= rule.params["count"]


def _velocity_amount(ordered: list[dict], i: int, rule) -> bool:
    total = sum((e["amount"] for e in _velocity_events(ordered, i, rule)), Decimal(0))
    return total > rule.params["total"]


def _local_hour(ordered: list[dict], i: int, rule) -> bool:
    hour = local_hour(ordered[i])
    start, end = rule.params["start_hour"], rule.params["end_hour"]
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def _impossible_travel_v2(ordered: list[dict], i: int, rule) -> bool:
    if i == 0:
        return False
    prev, event, p = ordered[i - 1], ordered[i], rule.params
    d = haversine_km(prev["lat"], prev["lon"], event["lat"], event["lon"], p["earth_radius_km"])
    hours = max((event["ts"] - prev["ts"]).total_seconds() / 3600, p["min_hours"])
    return d >= p["distance_km"] and d / hours > p["speed_kmh"]


def _amount_vs_history(ordered: list[dict], i: int, rule) -> bool:
    p = rule.params
    history = sorted(e["amount"] for e in ordered[max(0, i - p["history"]): i])
    if len(history) < p["min_history"]:
        return False
    amount, n = ordered[i]["amount"], len(history)
    if n % 2:
        return amount > p["ratio"] * history[n // 2]
    return 2 * amount > p["ratio"] * (history[n // 2 - 1] + history[n // 2])


def _new_device(ordered: list[dict], i: int, rule) -> bool:
    device = ordered[i].get("device_id")
    if not device:  # NULL or empty: never fires
        return False
    start = ordered[i]["ts"] - timedelta(days=rule.params["lookback_days"])
    earlier = [e for e in ordered[:i] if e["ts"] >= start]
    return (len(earlier) >= rule.params["min_history"]
            and all(e.get("device_id") != device for e in earlier))


def _in_list(ordered: list[dict], i: int, rule) -> bool:
    value = ordered[i].get(rule.params["field"])
    return value is not None and value in rule.params["values"]


_KINDS = {
    "amount_over": _amount_over, "velocity_count": _velocity_count,
    "velocity_amount": _velocity_amount, "local_hour": _local_hour,
    "impossible_travel": _impossible_travel_v2, "amount_vs_history": _amount_vs_history,
    "new_device": _new_device, "in_list": _in_list,
}
