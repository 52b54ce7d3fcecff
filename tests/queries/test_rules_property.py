"""Property: random small event sets (many ties, bursts, few users) get the same flags from the
SQL of rules/default.toml with random --set overrides (the composed query and each v1
single-rule query) as from the reference (tests/reference_rules.reference_decisions)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudlake.contract import RULE_NAMES
from tests.queries._rules_sql import DEFAULT, T0, event, frame, run_sql
from tests.reference_rules import reference_decisions

PLACES = [(0.0, 0.0), (0.0, 0.9), (48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.006),
          (-33.8688, 151.2093), (35.6762, 139.6503), (0.5, 0.5)]
OFFSETS = [-720, -300, -210, 0, 60, 330, 345, 600, 840]
AMOUNTS = ["0.01", "12.34", "999.99", "1000.00", "1000.01", "2500.00", "2500.01", "99999.99"]


@st.composite
def event_sets(draw) -> list[dict]:
    n = draw(st.integers(1, 30))
    ids = draw(st.permutations(range(n)))
    events = []
    for i in range(n):
        seconds = draw(st.sampled_from([0, 0, 1, 5, 15, 30, 59, 60, 61, 90, 120, 600, 3600,
                                        7200, 18000, 86400]))
        micro = draw(st.sampled_from([0, 0, 0, 1, 999_999]))
        lat, lon = draw(st.sampled_from(PLACES))
        events.append(event(
            f"t{ids[i]:02d}", user=draw(st.integers(1, 3)),
            ts=T0 + timedelta(seconds=seconds, microseconds=micro),
            amount=draw(st.sampled_from(AMOUNTS)), lat=lat, lon=lon,
            offset=draw(st.sampled_from(OFFSETS))))
    return events


params_strategy = st.one_of(
    st.just(DEFAULT),
    st.builds(
        lambda *sets: DEFAULT.with_overrides(sets),
        st.sampled_from(["high_amount.threshold=1000.00", "high_amount.threshold=2500"]),
        st.sampled_from([0, 1, 30, 60, 120]).map("high_frequency.window_seconds={}".format),
        st.sampled_from([1, 2, 3, 5]).map("high_frequency.count={}".format),
        st.integers(0, 24).map("unusual_hour.start_hour={}".format),
        st.integers(0, 24).map("unusual_hour.end_hour={}".format),
        st.sampled_from([0.0, 50.0, 100.0, 1000.0]).map("geo_mismatch.distance_km={!r}".format),
        st.sampled_from([0.0, 900.0, 5000.0]).map("geo_mismatch.speed_kmh={!r}".format),
        st.sampled_from([1 / 60, 0.5]).map("geo_mismatch.min_hours={!r}".format),
    ),
)

COLUMNS = [*RULE_NAMES, "score", "flagged"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(), params=params_strategy)
def test_sql_matches_reference(events, params):
    rule_set = params
    expected = reference_decisions(events, rule_set).sort("transaction_id")
    combined = run_sql(frame(events), rule_set)
    assert combined.select("transaction_id", *COLUMNS).equals(expected.select(
        "transaction_id", *COLUMNS))
    for rule in RULE_NAMES:
        single = run_sql(events, rule_set, rule).select("transaction_id", rule)
        assert single.equals(expected.select("transaction_id", rule)), rule


def test_reference_accepts_a_frame_and_dicts_alike():
    events = [event("a", amount="1000.01"), event("b", seconds=1)]
    assert reference_decisions(events, DEFAULT).equals(
        reference_decisions(pl.DataFrame(frame(events)), DEFAULT))
