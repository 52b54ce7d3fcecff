"""Hand-built boundary cases of docs/design.md's rule semantics, for the combined query, the
single-rule query and the pure-Python reference alike."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from tests.queries._rules_sql import DEFAULT, T0, event, fired, frame, run_sql
from tests.reference_rules import haversine_km, reference_decisions


def both(rule: str) -> list[str]:
    return ["flags", rule]


def reference_fired(events: list[dict], rule: str, params=DEFAULT):
    out = reference_decisions(events, params)
    return sorted(out.filter(out[rule])["transaction_id"].to_list())


# --- high_amount -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", both("high_amount"))
def test_high_amount_is_strictly_greater_than_the_threshold(name):
    events = [event("a", amount="999.99"), event("b", amount="1000.00"),
              event("c", amount="1000.01"), event("d", amount="1000000.00")]
    assert fired(events, "high_amount", name=name) == ["c", "d"]
    assert reference_fired(events, "high_amount") == ["c", "d"]


@pytest.mark.parametrize("name", both("high_amount"))
def test_high_amount_what_if_threshold_compares_decimals(name):
    params = DEFAULT.with_overrides(["high_amount.threshold=2500"])
    events = [event("a", amount="2500.00"), event("b", amount="2500.01"),
              event("c", amount="1000.01")]
    assert fired(events, "high_amount", params, name) == ["b"]
    # 0.1 + 0.2 style float noise cannot matter: 0.29 is not > 0.29
    tiny = DEFAULT.with_overrides(["high_amount.threshold=0.29"])
    assert fired([event("x", amount="0.29"), event("y", amount="0.30")], "high_amount",
                 tiny, name) == ["y"]


def test_threshold_is_quantized_to_cents_not_rounded_in_sql():
    # the SQL binds the threshold as DECIMAL(18,2): 999.995 never exists, params quantize first
    params = DEFAULT.with_overrides(["high_amount.threshold=999.99"])
    assert fired([event("a", amount="999.99"), event("b", amount="1000.00")], "high_amount",
                 params) == ["b"]
    out = run_sql([event("a", amount="1000.01")], name="high_amount")
    assert str(out["amount"][0]) == "1000.01"


def test_amount_column_is_decimal_in_sql():
    out = run_sql([event("a", amount="1234.56")], name="high_amount")
    assert out.schema["amount"].__class__.__name__ == "Decimal"


# --- high_frequency --------------------------------------------------------------------------

@pytest.mark.parametrize("name", both("high_frequency"))
def test_fifth_event_exactly_window_later_counts(name):
    events = [event(f"e{i}", seconds=15 * i) for i in range(5)]  # 0,15,30,45,60 s
    assert fired(events, "high_frequency", name=name) == ["e4"]
    late = events[:4] + [event("e4", seconds=60.000001)]
    assert fired(late, "high_frequency", name=name) == []
    assert reference_fired(events, "high_frequency") == ["e4"]
    assert reference_fired(late, "high_frequency") == []


@pytest.mark.parametrize("name", both("high_frequency"))
def test_six_ties_only_fifth_and_sixth_by_transaction_id(name):
    ids = ["t3", "t6", "t1", "t5", "t2", "t4"]  # input order is irrelevant
    events = [event(i) for i in ids]
    assert fired(events, "high_frequency", name=name) == ["t5", "t6"]
    assert reference_fired(events, "high_frequency") == ["t5", "t6"]


@pytest.mark.parametrize("name", both("high_frequency"))
def test_causal_a_later_event_never_counts_for_an_earlier_one(name):
    events = [event(f"e{i}", seconds=i) for i in range(4)] + [event("late", seconds=10)]
    assert fired(events, "high_frequency", name=name) == ["late"]


@pytest.mark.parametrize("name", both("high_frequency"))
def test_other_users_do_not_count_and_count_param_applies(name):
    events = [event(f"u{u}e{i}", user=u, seconds=i) for u in (1, 2) for i in range(4)]
    assert fired(events, "high_frequency", name=name) == []
    params = DEFAULT.with_overrides(["high_frequency.count=4",
                                            "high_frequency.window_seconds=2"])
    # window 2 s: e3 at 3 s sees e1..e3 only (3 events) -> nothing; count 3 would fire
    assert fired(events, "high_frequency", params, name) == []
    params3 = params.with_overrides(["high_frequency.count=3"])
    assert fired(events, "high_frequency", params3, name) == ["u1e2", "u1e3", "u2e2", "u2e3"]


# --- unusual_hour ----------------------------------------------------------------------------

def at(hh: int, mm: int, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hh, mm, tzinfo=UTC)


OFFSET_CASES = [
    # (utc time, offset minutes, local hour flagged?)
    (at(9, 59), -300, True),   # 04:59 local
    (at(10, 0), -300, False),  # 05:00 local
    (at(4, 30), -300, False),  # 23:30 local, previous day
    (at(5, 0), -300, True),    # 00:00 local
    (at(23, 0), 330, True),    # 04:30 local, next day
    (at(23, 30), 330, False),  # 05:00 local
    (at(18, 29), 330, False),  # 23:59 local
    (at(18, 30), 330, True),   # 00:00 local
    (at(3, 30), -210, True),   # 00:00 local
    (at(3, 29), -210, False),  # 23:59 local
    (at(8, 29), -210, True),   # 04:59 local
    (at(8, 30), -210, False),  # 05:00 local
]


@pytest.mark.parametrize("name", both("unusual_hour"))
def test_local_hour_with_negative_and_half_hour_offsets(name):
    events = [event(f"c{i:02d}", ts=ts, offset=off) for i, (ts, off, _) in enumerate(OFFSET_CASES)]
    expected = [f"c{i:02d}" for i, (_, _, hit) in enumerate(OFFSET_CASES) if hit]
    assert fired(events, "unusual_hour", name=name) == expected
    assert reference_fired(events, "unusual_hour") == expected


@pytest.mark.parametrize("name", both("unusual_hour"))
def test_wrapping_window_23_to_5(name):
    params = DEFAULT.with_overrides(["unusual_hour.start_hour=23",
                                            "unusual_hour.end_hour=5"])
    events = [event("a", ts=at(22, 59)), event("b", ts=at(23, 0)), event("c", ts=at(0, 0)),
              event("d", ts=at(4, 59)), event("e", ts=at(5, 0)), event("f", ts=at(12, 0)),
              event("g", ts=at(20, 0), offset=180)]  # 23:00 local
    assert fired(events, "unusual_hour", params, name) == ["b", "c", "d", "g"]
    assert reference_fired(events, "unusual_hour", params) == ["b", "c", "d", "g"]


def test_local_hour_column_values():
    out = run_sql([event("a", ts=at(23, 0), offset=330), event("b", ts=at(3, 30), offset=-210)],
                  name="unusual_hour")
    assert out["local_hour"].to_list() == [4, 0]


# --- geo_mismatch ----------------------------------------------------------------------------

ONE_DEGREE_KM = 6371.0 * math.pi / 180  # 111.19492664455873


def test_haversine_exact_numbers():
    out = run_sql([event("a", lat=0.0, lon=0.0), event("b", lat=0.0, lon=1.0, seconds=3600)],
                  name="geo_mismatch")
    assert out["distance_km"][0] is None
    assert out["distance_km"][1] == pytest.approx(ONE_DEGREE_KM, abs=1e-9)
    assert out["distance_km"][1] == haversine_km(0.0, 0.0, 0.0, 1.0, 6371.0)
    paris_london = run_sql([event("p", lat=48.8566, lon=2.3522),
                            event("q", lat=51.5074, lon=-0.1278, seconds=60)],
                           name="geo_mismatch")
    assert paris_london["distance_km"][1] == pytest.approx(343.5, abs=0.5)
    assert paris_london["distance_km"][1] == haversine_km(48.8566, 2.3522, 51.5074, -0.1278,
                                                          6371.0)


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_first_event_never_geo_and_speed_rule(name):
    events = [event("a", lat=0.0, lon=0.0),  # first: never
              event("b", lat=0.0, lon=1.0, seconds=60),  # 111 km in 1 min: flagged
              event("c", lat=0.0, lon=2.0, seconds=60 + 3600)]  # 111 km in 1 h: 111 km/h
    assert fired(events, "geo_mismatch", name=name) == ["b"]
    assert reference_fired(events, "geo_mismatch") == ["b"]


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_one_minute_floor_on_hours(name):
    # 111.19 km, 10 s apart: raw speed 40,030 km/h, floored hours give 6,671.7 km/h
    events = [event("a"), event("b", lon=1.0, seconds=10), event("c", lon=2.0, seconds=10)]
    fast = DEFAULT.with_overrides(["geo_mismatch.speed_kmh=7000"])
    assert fired(events, "geo_mismatch", fast, name) == []  # the floor decides
    slower = DEFAULT.with_overrides(["geo_mismatch.speed_kmh=6600"])
    assert fired(events, "geo_mismatch", slower, name) == ["b", "c"]  # c: same ts, by id
    assert reference_fired(events, "geo_mismatch", fast) == []


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_distance_boundary_is_inclusive(name):
    d = haversine_km(0.0, 0.0, 0.0, 0.9, 6371.0)  # 100.0754 km
    events = [event("a"), event("b", lon=0.9, seconds=60)]
    exact = DEFAULT.with_overrides([f"geo_mismatch.distance_km={d!r}"])
    above = DEFAULT.with_overrides(
        [f"geo_mismatch.distance_km={math.nextafter(d, math.inf)!r}"])
    assert fired(events, "geo_mismatch", exact, name) == ["b"]
    assert fired(events, "geo_mismatch", above, name) == []
    # default 100 km: 0.9 deg (100.08 km) flags, 0.899 deg (99.97 km) does not
    near = [event("a"), event("b", lon=0.899, seconds=60)]
    assert fired(events, "geo_mismatch", name=name) == ["b"]
    assert fired(near, "geo_mismatch", name=name) == []


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_speed_boundary_is_strict(name):
    d = haversine_km(0.0, 0.0, 0.0, 1.0, 6371.0)
    events = [event("a"), event("b", lon=1.0, seconds=360)]  # 0.1 h
    speed = d / (360 / 3600)
    assert fired(events, "geo_mismatch",
                 DEFAULT.with_overrides([f"geo_mismatch.speed_kmh={speed!r}"]), name) == []
    below = math.nextafter(speed, 0.0)
    assert fired(events, "geo_mismatch",
                 DEFAULT.with_overrides([f"geo_mismatch.speed_kmh={below!r}"]),
                 name) == ["b"]


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_geo_uses_the_immediately_preceding_event_in_ts_then_id_order(name):
    # same ts: "a" (Paris) precedes "b" (London) by id; "c" in Paris 30 s later
    events = [event("b", lat=51.5074, lon=-0.1278), event("a", lat=48.8566, lon=2.3522),
              event("c", lat=48.8566, lon=2.3522, seconds=30)]
    assert fired(events, "geo_mismatch", name=name) == ["b", "c"]
    assert reference_fired(events, "geo_mismatch") == ["b", "c"]


# --- combined --------------------------------------------------------------------------------

def test_flags_has_one_row_per_event_and_flagged_is_any_rule():
    events = [event("a", amount="5000.00"), event("b", ts=at(2, 0)), event("c", seconds=5)]
    out = run_sql(events)
    assert out.columns[:1] == ["transaction_id"]
    assert {"high_amount", "high_frequency", "unusual_hour", "geo_mismatch", "flagged",
            "is_fraud", "fraud_scenario"} <= set(out.columns)
    assert out["transaction_id"].to_list() == ["a", "b", "c"]
    assert out["flagged"].to_list() == [True, True, False]
    assert out.equals(run_sql(frame(events)))
    assert T0.tzinfo is UTC


@pytest.mark.parametrize("name", both("geo_mismatch"))
def test_first_event_never_geo_even_with_zero_thresholds(name):
    params = DEFAULT.with_overrides(["geo_mismatch.distance_km=0",
                                     "geo_mismatch.speed_kmh=0"])  # (negative is refused)
    events = [event("a"), event("b", seconds=5, lon=0.001), event("z", user=2)]
    assert fired(events, "geo_mismatch", params, name) == ["b"]
    assert reference_fired(events, "geo_mismatch", params) == ["b"]
