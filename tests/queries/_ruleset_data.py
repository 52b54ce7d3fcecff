"""Random rule sets and dense event streams for the rule-set tests (hypothesis strategies), and
a runner of the composed SQL over a list of events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
from hypothesis import strategies as st

from fraudlake.contract import EVENT_SCHEMA
from queries.compose import flags_relation
from queries.staging import connect
from rules.model import CHANNELS, LIST_FIELDS, RuleSet
from tests.queries._rules_sql import open_frame

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)
PLACES = [(0.0, 0.0), (0.0, 0.9), (48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006),
          (-33.8688, 151.2093), (0.5, 0.5)]
OFFSETS = [-720, -300, -210, 0, 60, 330, 345, 600, 840]
AMOUNTS = ["0.01", "1.00", "12.34", "50.00", "100.00", "999.99", "1000.00", "1000.01",
           "2500.00"]
SECONDS = [0, 0, 0, 1, 30, 59, 60, 61, 120, 3600, 86399, 86400, 86401, 172800, 172801]
CATEGORIES = ["grocery", "electronics", "travel"]
# list values with quotes, semicolons, comment and LIKE characters, case variants
WORDS = ["m1", "M1", "m2", "o'brien", 'say "hi"', "a;b", "x'; drop table t; --", "%", "_",
         "0042", "Paris", "FR", "d1", "d2"]
DEVICES = [None, "", "d1", "d2", "d3"]


def event(tid: str, user: int = 1, seconds: float = 0.0, amount: str | None = "10.00",
          lat: float | None = 0.0, lon: float | None = 0.0, offset: int | None = 0,
          **extra) -> dict:
    """One contract event ``seconds`` after T0; extra columns by name (channel=…, device_id=…)."""
    return {"transaction_id": tid, "user_id": user, "ts": T0 + timedelta(seconds=seconds),
            "amount": None if amount is None else Decimal(amount), "lat": lat, "lon": lon,
            "utc_offset_min": offset, **extra}


def frame(events: list[dict]) -> pl.DataFrame:
    rows = [{name: e.get(name) for name in EVENT_SCHEMA} for e in events]
    return pl.DataFrame(rows, schema=EVENT_SCHEMA)


def run_rule_set(events: list[dict], rule_set: RuleSet) -> pl.DataFrame:
    """transaction_id, one bool per rule id, score, flagged from the composed SQL, by id."""
    con = connect()
    open_frame(con, frame(events))
    out = pl.from_arrow(flags_relation(con, rule_set).to_arrow_table())
    return out.select("transaction_id", *rule_set.rule_ids, "score", "flagged") \
        .sort("transaction_id")


def rule_set_of(rules: list[dict], alert_threshold: str = "1") -> RuleSet:
    return RuleSet.from_dict({"version": "test-1", "alert_threshold": alert_threshold,
                              "rules": rules}, "<test>")


@st.composite
def event_streams(draw, max_events: int = 40) -> list[dict]:
    """A dense stream: few users, many equal timestamps, repeated devices and merchants."""
    n = draw(st.integers(1, max_events))
    ids = draw(st.permutations(range(n)))
    events = []
    for i in range(n):
        lat, lon = draw(st.sampled_from(PLACES))
        null_core = draw(st.sampled_from([None] * 12 + ["amount", "lat", "utc_offset_min",
                                                        "user_id", "ts"]))
        e = event(f"t{ids[i]:02d}", user=draw(st.integers(1, 3)),
                  seconds=draw(st.sampled_from(SECONDS)) + draw(st.sampled_from([0, 0, 1e-6])),
                  amount=draw(st.sampled_from(AMOUNTS)), lat=lat, lon=lon,
                  offset=draw(st.sampled_from(OFFSETS)),
                  channel=draw(st.sampled_from([None, *CHANNELS])),
                  category=draw(st.sampled_from([None, *CATEGORIES])),
                  device_id=draw(st.sampled_from(DEVICES)),
                  merchant_id=draw(st.sampled_from([None, "m1", "M1", "a;b", "o'brien"])),
                  card_last4=draw(st.sampled_from(["0042", "1234", None])),
                  country=draw(st.sampled_from(["FR", "fr", "US"])),
                  city=draw(st.sampled_from(["Paris", 'say "hi"', "x'; drop table t; --"])))
        if null_core:
            e[null_core] = None
        events.append(e)
    return events


def _scope(draw) -> dict:
    out = {}
    if draw(st.booleans()):
        out["channels"] = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        out["categories"] = draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2))
    return out


KIND_PARAMS = {
    "amount_over": lambda d: {"threshold": d(st.sampled_from(AMOUNTS))},
    "velocity_count": lambda d: {
        "window_seconds": d(st.sampled_from([0, 1, 30, 60, 86400])),
        "count": d(st.sampled_from([1, 2, 3, 5])),
        **({"max_amount": d(st.sampled_from(AMOUNTS))} if d(st.booleans()) else {})},
    "velocity_amount": lambda d: {"window_seconds": d(st.sampled_from([0, 1, 60, 86400])),
                                  "total": d(st.sampled_from(AMOUNTS))},
    "local_hour": lambda d: {"start_hour": d(st.integers(0, 24)),
                             "end_hour": d(st.integers(0, 24))},
    "impossible_travel": lambda d: {"distance_km": d(st.sampled_from([0.0, 50.0, 100.0])),
                                    "speed_kmh": d(st.sampled_from([0.0, 900.0, 5000.0])),
                                    "min_hours": d(st.sampled_from([1 / 60, 0.5]))},
    "amount_vs_history": lambda d: (lambda h: {
        "ratio": d(st.sampled_from(["0.5", "1", "2", "2.5", "1.0001"])), "history": h,
        "min_history": d(st.integers(1, h))})(d(st.integers(1, 5))),
    "new_device": lambda d: {"lookback_days": d(st.sampled_from([0, 1, 2])),
                             "min_history": d(st.sampled_from([0, 1, 2, 3]))},
    "in_list": lambda d: {"field": d(st.sampled_from(LIST_FIELDS)),
                          "values": d(st.lists(st.sampled_from(WORDS), min_size=1,
                                               max_size=5))},
}


@st.composite
def rule_sets(draw, kinds: tuple[str, ...] = tuple(KIND_PARAMS)) -> RuleSet:
    """1-6 rules of random kinds, scopes and weights, and a random alert threshold."""
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=6))
    rules = [{"id": f"rule_{i}", "kind": kind, **KIND_PARAMS[kind](draw), **_scope(draw),
              "weight": draw(st.sampled_from(["1", "0.5", "0.1", "1.25", "2"]))}
             for i, kind in enumerate(chosen)]
    return rule_set_of(rules, draw(st.sampled_from(["0.1", "0.5", "1", "1.5", "2.25"])))
