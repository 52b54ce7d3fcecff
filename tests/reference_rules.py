"""A straightforward pure-Python reference of docs/design.md's four rules (v1).

Shared by tests of the SQL rules, the backtest and the stream engine. Deliberately naive: group
by user, sort by (ts, transaction_id), loop; Decimal compare; ``math`` haversine. No windows,
no state, no tricks to share with the code under test.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

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
