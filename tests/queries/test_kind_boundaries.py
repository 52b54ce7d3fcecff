"""Hand-built boundary cases of every rule kind (docs/design.md "Rule sets (v2)"), for the
composed SQL and the reference alike: at the threshold, at the window edge, equal and even-count
medians, the lookback edge, NULL and empty devices, quoted list values, scope with a NULL
channel."""

from __future__ import annotations

import polars as pl
import pytest

from tests.queries._ruleset_data import event, rule_set_of, run_rule_set
from tests.reference_rules import reference_decisions


def fired(events: list[dict], rule: dict, threshold: str = "1") -> list[str]:
    """Ids the rule fires on, by the SQL; asserts the reference agrees."""
    rule_set = rule_set_of([{"id": "r", **rule}], threshold)
    got = run_rule_set(events, rule_set)
    want = reference_decisions(events, rule_set).sort("transaction_id")
    assert got.equals(want), (got, want)
    return sorted(got.filter(pl.col("r"))["transaction_id"].to_list())


def test_amount_over_at_the_threshold():
    rule = {"kind": "amount_over", "threshold": "100.00"}
    events = [event("a", amount="99.99"), event("b", seconds=1, amount="100.00"),
              event("c", seconds=2, amount="100.01")]
    assert fired(events, rule) == ["c"]


def test_velocity_count_at_the_window_edge_and_ties():
    rule = {"kind": "velocity_count", "window_seconds": 60, "count": 3}
    edge = [event("a"), event("b", seconds=30), event("c", seconds=60),  # a at exactly ts - 60
            event("d", seconds=60.000001)]  # a is now 1 µs outside: b, c, d = 3
    assert fired(edge, rule) == ["c", "d"]
    ties = [event(t, seconds=5) for t in ("t1", "t2", "t3", "t4")]  # same ts: by id
    assert fired(ties, rule) == ["t3", "t4"]


def test_velocity_count_max_amount_and_scope_count_only_matching_events():
    rule = {"kind": "velocity_count", "window_seconds": 600, "count": 3, "max_amount": "5.00",
            "channels": ["online"]}
    events = [event("a", amount="1.00", channel="online"),
              event("b", seconds=1, amount="5.00", channel="online"),   # at max_amount: counts
              event("c", seconds=2, amount="5.01", channel="online"),   # over: neither counts
              event("d", seconds=3, amount="1.00", channel="pos"),      # out of scope
              event("e", seconds=4, amount="1.00", channel=None),       # NULL: out of scope
              event("f", seconds=5, amount="2.00", channel="online")]   # a, b, f = 3
    assert fired(events, rule) == ["f"]


def test_velocity_amount_strictly_over_the_total_in_the_window():
    rule = {"kind": "velocity_amount", "window_seconds": 60, "total": "100.00"}
    events = [event("a", amount="50.00"), event("b", seconds=60, amount="50.00"),  # 100: no
              event("c", seconds=60.5, amount="0.01"),  # a left the window: 50.01
              event("d", seconds=61, amount="50.00")]   # b, c, d = 100.01
    assert fired(events, rule) == ["d"]


def test_local_hour_wraps_past_midnight():
    rule = {"kind": "local_hour", "start_hour": 23, "end_hour": 2}
    base = 11 * 3600  # T0 is 12:00 UTC
    events = [event("a", seconds=base - 1, offset=0),  # 22:59:59
              event("b", seconds=base, offset=0),      # 23:00
              event("c", seconds=base, offset=120),    # 01:00 local
              event("d", seconds=base, offset=180)]    # 02:00 local
    assert fired(events, rule) == ["b", "c"]


def test_impossible_travel_needs_the_previous_event_of_any_scope():
    rule = {"kind": "impossible_travel", "distance_km": 100.0, "speed_kmh": 900.0,
            "min_hours": 1 / 60, "channels": ["online"]}
    events = [event("a", channel="pos", lat=48.8566, lon=2.3522),
              event("b", seconds=600, channel="online", lat=40.7128, lon=-74.006),
              event("c", seconds=1200, channel="pos", lat=48.8566, lon=2.3522)]  # out of scope
    assert fired(events, rule) == ["b"]


def test_amount_vs_history_equal_median_and_even_count():
    rule = {"kind": "amount_vs_history", "ratio": "2", "history": 4, "min_history": 3}
    odd = [event("a", amount="10.00"), event("b", seconds=1, amount="30.00"),
           event("c", seconds=2, amount="20.00"),
           event("d", seconds=3, amount="40.00"),   # median 20: 40 is not > 2 x 20
           event("e", seconds=4, amount="50.01")]   # last 4: 10 20 30 40 -> (20+30)/2 = 25
    assert fired(odd, rule) == ["e"]
    even = [event("a", amount="10.00"), event("b", seconds=1, amount="20.00"),
            event("c", seconds=2, amount="30.00"),
            event("d", seconds=3, amount="40.00"),  # median 20: 40 is not > 40
            event("e", seconds=4, amount="50.00")]  # 10 20 30 40 -> 25: 50 is not > 50
    assert fired(even, rule) == []
    few = [event("a", amount="1.00"), event("b", seconds=1, amount="1.00"),
           event("c", seconds=2, amount="999.00")]  # 2 < min_history 3
    assert fired(few, rule) == []


def test_amount_vs_history_half_cent_median_is_exact():
    rule = {"kind": "amount_vs_history", "ratio": "1", "history": 2, "min_history": 2}
    events = [event("a", amount="0.01"), event("b", seconds=1, amount="0.02"),
              event("c", seconds=2, amount="0.02")]  # median 0.015: 0.02 > 0.015
    assert fired(events, rule) == ["c"]


def test_new_device_lookback_edge_null_and_empty_devices():
    rule = {"kind": "new_device", "lookback_days": 1, "min_history": 1}
    day = 86400
    edge = [event("a", device_id="d1"),
            event("b", seconds=day, device_id="d1"),  # a exactly at the edge: seen
            event("c", seconds=day + 1, device_id="d2"),  # history b (a is outside): new
            event("d", seconds=2 * day + 0.000001, device_id="d1"),  # b 1 µs outside: new
            event("e", seconds=2 * day + 1, device_id="d2")]  # c exactly at the edge: seen
    assert fired(edge, rule) == ["c", "d"]
    nulls = [event("a", device_id=None), event("b", seconds=1, device_id=""),
             event("c", seconds=2, device_id="d1"),  # a, b in the history, not matching: new
             event("d", seconds=3, device_id=None), event("e", seconds=4, device_id="")]
    assert fired(nulls, rule) == ["c"]
    first = [event("a", device_id="d1")]  # no history: min_history 1 not met
    assert fired(first, rule) == []


def test_in_list_values_with_quotes_and_semicolons_match_exactly():
    values = ["o'brien", 'say "hi"', "a;b", "x'); drop table transactions; --", "%", "M1"]
    rule = {"kind": "in_list", "field": "merchant_id", "values": values}
    events = [event(f"t{i}", seconds=i, merchant_id=m) for i, m in enumerate(
        [*values, "m1", "a", "O'BRIEN", "", None, "anything"])]
    assert fired(events, rule) == [f"t{i}" for i in range(len(values))]


def test_scope_with_null_channel_or_category_is_out_of_scope():
    rule = {"kind": "amount_over", "threshold": "1.00", "channels": ["online", "pos"],
            "categories": ["electronics"]}
    events = [event("a", amount="5.00", channel="online", category="electronics"),
              event("b", amount="5.00", channel=None, category="electronics"),
              event("c", amount="5.00", channel="online", category=None),
              event("d", amount="5.00", channel="atm", category="electronics"),
              event("e", amount="5.00", channel="pos", category="grocery")]
    assert fired(events, rule) == ["a"]


@pytest.mark.parametrize("threshold, flagged", [("1.5", ["a"]), ("1.25", ["a", "b"])])
def test_score_is_the_exact_sum_of_weights(threshold, flagged):
    rules = [{"id": "big", "kind": "amount_over", "threshold": "100.00", "weight": "0.75"},
             {"id": "huge", "kind": "amount_over", "threshold": "1000.00", "weight": "0.75"},
             {"id": "night", "kind": "local_hour", "start_hour": 0, "end_hour": 24,
              "weight": "0.5"}]
    rule_set = rule_set_of(rules, threshold)
    events = [event("a", amount="5000.00"), event("b", amount="500.00"),
              event("c", amount="5.00")]
    got = run_rule_set(events, rule_set)
    assert got["score"].to_list() == [2.0, 1.25, 0.5]
    assert sorted(got.filter("flagged")["transaction_id"].to_list()) == flagged
    assert got.equals(reference_decisions(events, rule_set).sort("transaction_id"))


def test_null_core_rows_are_false_and_not_seen_by_others():
    rule_set = rule_set_of([
        {"id": "burst", "kind": "velocity_count", "window_seconds": 60, "count": 2},
        {"id": "travel", "kind": "impossible_travel", "distance_km": 100.0,
         "speed_kmh": 900.0, "min_hours": 1 / 60}])
    events = [event("a"), event("b", seconds=1, lat=None, lon=None, amount="99999.00"),
              event("c", seconds=2, lat=40.0, lon=40.0)]
    got = run_rule_set(events, rule_set)
    assert got.filter(pl.col("transaction_id") == "b").row(0)[1:] == (False, False, 0.0, False)
    assert got.filter(pl.col("transaction_id") == "c")["burst"].to_list() == [True]  # a, c
    assert got.equals(reference_decisions(events, rule_set).sort("transaction_id"))
