"""Shared test data for the rule kernels and the fast engine: dense random event streams with
many ties, random rule sets of every kind, and a driver that decides a stream in parts with a
carry (``rules.kernels.retained``) the way the engines do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
from hypothesis import strategies as st

from fraudlake.contract import EVENT_SCHEMA
from rules.kernels import decide, retained, retention
from rules.model import LIST_FIELDS, RuleSet

T0 = datetime(2024, 3, 10, 22, 59, 0, tzinfo=UTC)
PLACES = [(0.0, 0.0), (0.0, 0.9), (48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006),
          (-33.8688, 151.2093), (0.5, 0.5), (89.9, 0.0), (-89.9, 180.0)]
SECONDS = [0, 0, 0, 1, 5, 30, 59, 60, 61, 120, 3600, 7200, 86399, 86400, 86401, 172800]
USERS = [1, 2, 3, -7, 2**62]
AMOUNTS = ["0.01", "3.33", "5.00", "10.00", "10.00", "10.01", "20.00", "999.99", "1000.00",
           "1000.01", "6.66"]
OPTIONAL = {
    "channel": ["pos", "online", "atm", None],
    "category": ["grocery", "electronics", None],
    "device_id": ["d1", "d2", "d3", None, ""],
    "merchant_id": ["m1", "m2", 'm"3;--', None],
    "card_last4": ["0042", "1234", None],
    "country": ["US", "FR", None],
    "city": ["Paris", "London", "O'Hare; DROP", None],
}
FRAME_SCHEMA = {name: EVENT_SCHEMA[name] for name in (
    "transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min", *OPTIONAL)}


@st.composite
def event_streams(draw, max_events: int = 50) -> list[dict]:
    n = draw(st.integers(1, max_events))
    ids = draw(st.permutations(range(n)))
    users = draw(st.lists(st.sampled_from(USERS), min_size=1, max_size=3, unique=True))
    out = []
    for i in range(n):
        place = draw(st.sampled_from(PLACES))
        out.append({
            "transaction_id": f"t{ids[i]:03d}", "user_id": draw(st.sampled_from(users)),
            "ts": T0 + timedelta(seconds=draw(st.sampled_from(SECONDS)),
                                 microseconds=draw(st.sampled_from([0, 0, 1, 999_999]))),
            "amount": Decimal(draw(st.sampled_from(AMOUNTS))), "lat": place[0], "lon": place[1],
            "utc_offset_min": draw(st.sampled_from([0, 0, -300, 330, 60])),
            **{name: draw(st.sampled_from(values)) for name, values in OPTIONAL.items()},
        })
    return out


def _params(draw, kind: str) -> dict:
    pick = lambda values: draw(st.sampled_from(values))  # noqa: E731
    if kind == "amount_over":
        return {"threshold": pick(["0", "5.00", "10.00", "999.99", "1000.00"])}
    if kind == "velocity_count":
        return {"window_seconds": pick([0, 1, 60, 3600]), "count": pick([1, 2, 3, 5]),
                **({"max_amount": pick(["5.00", "10.00", "20.00"])} if draw(st.booleans())
                   else {})}
    if kind == "velocity_amount":
        return {"window_seconds": pick([0, 1, 60, 86400]),
                "total": pick(["0", "10.00", "20.00", "1000.00"])}
    if kind == "local_hour":
        return {"start_hour": pick([0, 5, 22, 23, 24]), "end_hour": pick([0, 1, 5, 23, 24])}
    if kind == "impossible_travel":
        return {"distance_km": pick([0.0, 50.0, 100.0]), "speed_kmh": pick([0.0, 900.0, 5000.0]),
                "min_hours": pick([1 / 60, 0.5]), "earth_radius_km": 6371.0}
    if kind == "amount_vs_history":
        history = pick([1, 2, 3, 4, 5])
        return {"ratio": pick(["1", "0.5", "1.5", "2", "3.3333"]), "history": history,
                "min_history": draw(st.integers(1, history))}
    if kind == "new_device":
        return {"lookback_days": pick([0, 1, 2]), "min_history": pick([0, 1, 2, 3])}
    field = pick(list(LIST_FIELDS))
    values = [v for v in OPTIONAL[field] if v]
    return {"field": field, "values": draw(st.lists(st.sampled_from(values), min_size=1,
                                                     max_size=len(values)))}


@st.composite
def rule_sets(draw, kinds: tuple[str, ...] | None = None) -> RuleSet:
    from rules.model import KINDS

    chosen = draw(st.lists(st.sampled_from(kinds or KINDS), min_size=1, max_size=5))
    rules = []
    for i, kind in enumerate(chosen):
        scope = {}
        if draw(st.integers(0, 3)) == 0:
            scope["channels"] = draw(st.lists(st.sampled_from(["pos", "online", "atm"]),
                                              min_size=1, max_size=2))
        if draw(st.integers(0, 3)) == 0:
            scope["categories"] = draw(st.lists(st.sampled_from(["grocery", "electronics"]),
                                                min_size=1, max_size=2))
        rules.append({"id": f"r{i}_{kind}", "kind": kind,
                      "weight": draw(st.sampled_from(["1", "0.5", "1.25", "2", "0.000001"])),
                      **scope, **_params(draw, kind)})
    threshold = draw(st.sampled_from(["1", "0.5", "2", "2.5"]))
    return RuleSet.from_dict({"version": "t-1", "alert_threshold": threshold, "rules": rules})


def frame_of(events: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(events, schema=FRAME_SCHEMA) if events else pl.DataFrame(
        schema=FRAME_SCHEMA)


def sort_events(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("user_id", "ts", "transaction_id")


def decide_in_parts(events: list[dict], rule_set: RuleSet, cuts: list[int]) -> pl.DataFrame:
    """Decide the stream (in (ts, transaction_id) order) part by part, each part together with
    the carry the earlier parts retained; one row per event like ``reference_decisions``."""
    ordered = sorted(events, key=lambda e: (e["ts"], e["transaction_id"]))
    bounds = [0, *sorted(set(cuts)), len(ordered)]
    keep = retention(rule_set)
    carry = frame_of([]).with_columns(_context=pl.lit(True))
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        both = sort_events(pl.concat([carry, frame_of(ordered[lo:hi]).with_columns(
            _context=pl.lit(False))]))
        context = both["_context"].to_numpy()
        decided = decide(both.drop("_context"), rule_set, context)
        parts.append(decisions_frame(both, decided, rule_set).filter(~pl.Series(context)))
        mask = retained(both["user_id"].to_numpy(), both["ts"].dt.epoch("us").to_numpy(), keep)
        carry = both.filter(pl.Series(mask)).with_columns(_context=pl.lit(True))
    return pl.concat(parts)


def decisions_frame(frame: pl.DataFrame, decided, rule_set: RuleSet) -> pl.DataFrame:
    return pl.DataFrame({"transaction_id": frame["transaction_id"],
                         **{r: decided.fired[r] for r in rule_set.rule_ids},
                         "score": decided.score, "flagged": decided.flagged})


def as_rows(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["transaction_id"]: row for row in frame.to_dicts()}
