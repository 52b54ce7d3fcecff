"""Boundary cases of every kind on rules.kernels (thresholds, window edges, equal medians, even
histories, lookback edges, NULL/empty devices, NULL scope, list values with quotes), and the
ulp-boundary haversine: decisions equal the libm reference even where NumPy's arcsin differs."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from rules.kernel_events import window_start
from rules.kernels import decide, haversine_km
from rules.model import RuleSet
from tests.reference_rules import haversine_km as reference_km
from tests.reference_rules import reference_decisions
from tests.rules._kernel_data import frame_of, sort_events

T0 = datetime(2024, 3, 10, 12, 0, 0, tzinfo=UTC)


def ev(tid: str, seconds: float = 0, amount: str = "10.00", user: int = 1, **extra) -> dict:
    base = {"transaction_id": tid, "user_id": user, "ts": T0 + timedelta(seconds=seconds),
            "amount": Decimal(amount), "lat": 0.0, "lon": 0.0, "utc_offset_min": 0,
            "channel": "online", "category": "grocery", "device_id": "d1", "merchant_id": None,
            "card_last4": None, "country": None, "city": None}
    return {**base, **extra}


def one_rule(kind: str, **params) -> RuleSet:
    return RuleSet.from_dict({"version": "b-1", "rules": [{"id": "r", "kind": kind, **params}]})


def fired(events: list[dict], rule_set: RuleSet) -> list[str]:
    """Ids the kernels fire on (and the same from the reference, asserted equal)."""
    frame = sort_events(frame_of(events))
    got = decide(frame, rule_set)
    ids = sorted(t for t, hit in zip(frame["transaction_id"], got.fired["r"], strict=True) if hit)
    ref = reference_decisions(events, rule_set)
    assert ids == sorted(ref.filter(ref["r"])["transaction_id"].to_list())
    return ids


def test_amount_over_is_strict_and_exact():
    rs = one_rule("amount_over", threshold="1000.00")
    assert fired([ev("a", amount="999.99"), ev("b", amount="1000.00"),
                  ev("c", amount="1000.01")], rs) == ["c"]
    tiny = one_rule("amount_over", threshold="0.29")
    assert fired([ev("x", amount="0.29"), ev("y", amount="0.30")], tiny) == ["y"]


def test_velocity_count_window_edge_ties_and_max_amount():
    rs = one_rule("velocity_count", window_seconds=60, count=5)
    on_edge = [ev(f"e{i}", 15 * i) for i in range(5)]
    assert fired(on_edge, rs) == ["e4"]
    assert fired(on_edge[:4] + [ev("e4", 60.000001)], rs) == []
    assert fired([ev(t) for t in ["t3", "t6", "t1", "t5", "t2", "t4"]], rs) == ["t5", "t6"]
    capped = one_rule("velocity_count", window_seconds=60, count=2, max_amount="2.00")
    events = [ev("a", 0, "2.00"), ev("b", 1, "2.01"), ev("c", 2, "1.00"), ev("d", 3, "5.00")]
    assert fired(events, capped) == ["c"]  # b and d exceed the cap: neither count nor fire


def test_velocity_amount_sum_must_exceed_total_inclusive_window():
    rs = one_rule("velocity_amount", window_seconds=60, total="30.00")
    assert fired([ev("a", 0), ev("b", 30), ev("c", 60)], rs) == []  # 30.00 is not > 30.00
    assert fired([ev("a", 0), ev("b", 30), ev("c", 60, "10.01")], rs) == ["c"]
    assert fired([ev("a", 0), ev("b", 30), ev("c", 60.000001, "10.01")], rs) == []


@pytest.mark.parametrize(("start", "end", "hits"), [(0, 5, ["c", "d"]), (23, 5, ["b", "c", "d"]),
                                                    (5, 5, []), (0, 24, list("abcde"))])
def test_local_hour_windows_and_offsets(start, end, hits):
    rs = one_rule("local_hour", start_hour=start, end_hour=end)
    day = datetime(2024, 3, 10, tzinfo=UTC)
    events = [ev("a", utc_offset_min=0) | {"ts": day.replace(hour=22, minute=59)},
              ev("b") | {"ts": day.replace(hour=3, minute=30), "utc_offset_min": -210},  # 00:00
              ev("c") | {"ts": day.replace(hour=8, minute=29), "utc_offset_min": -210},  # 04:59
              ev("d") | {"ts": day.replace(hour=23, minute=0), "utc_offset_min": 330},  # 04:30
              ev("e") | {"ts": day.replace(hour=23, minute=30), "utc_offset_min": 330}]  # 05:00
    events[1]["ts"] = day.replace(hour=2, minute=30)  # 23:00 local the day before (b: wraps)
    assert fired(events, rs) == hits


def test_impossible_travel_distance_inclusive_speed_strict():
    d = reference_km(0.0, 0.0, 0.0, 0.9, 6371.0)
    events = [ev("a"), ev("b", 60, lon=0.9)]
    base = {"speed_kmh": 900.0, "min_hours": 1 / 60}
    assert fired(events, one_rule("impossible_travel", distance_km=d, **base)) == ["b"]
    above = math.nextafter(d, math.inf)
    assert fired(events, one_rule("impossible_travel", distance_km=above, **base)) == []
    d1 = reference_km(0.0, 0.0, 0.0, 1.0, 6371.0)
    speed = d1 / (360 / 3600)
    slow = [ev("a"), ev("b", 360, lon=1.0)]
    kw = {"distance_km": 0.0, "min_hours": 1 / 60}
    assert fired(slow, one_rule("impossible_travel", speed_kmh=speed, **kw)) == []
    assert fired(slow, one_rule("impossible_travel", speed_kmh=math.nextafter(speed, 0), **kw)) \
        == ["b"]


def test_haversine_decisions_at_ulp_boundaries_for_random_pairs():
    """Thresholds set to the exact libm distance of random pairs: ``>=`` fires, the next float
    up does not, whatever NumPy's arcsin returns for the pair."""
    rng = random.Random(7)
    pairs = [(rng.uniform(-89, 89), rng.uniform(-180, 180), rng.uniform(-89, 89),
              rng.uniform(-180, 180)) for _ in range(400)]
    lat1, lon1, lat2, lon2 = map(np.array, zip(*pairs, strict=True))
    exact = np.array([reference_km(*p, 6371.0) for p in pairs])
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    plain = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    differs = int((plain != exact).sum())  # NumPy alone would decide these wrongly at the edge
    got = haversine_km(lat1, lon1, lat2, lon2, 6371.0, near=(exact,))
    assert (got >= exact).all()
    up = np.nextafter(exact, np.inf)
    assert not (haversine_km(lat1, lon1, lat2, lon2, 6371.0, near=(up,)) >= up).any()
    assert (haversine_km(lat1, lon1, lat2, lon2, 6371.0) == exact).all()  # near=None: libm
    print(f"{differs} of {len(pairs)} pairs differ in NumPy")  # informative (machine-dependent)


def test_amount_vs_history_equal_median_and_even_counts():
    rs = one_rule("amount_vs_history", ratio="2", history=3, min_history=1)
    odd = [ev("a", 0, "10.00"), ev("b", 1, "30.00"), ev("c", 2, "20.00")]
    assert fired(odd + [ev("d", 3, "40.00")], rs) == ["b"]  # d: 40 = 2 * median 20
    assert fired(odd + [ev("d", 3, "40.01")], rs) == ["b", "d"]
    even = one_rule("amount_vs_history", ratio="1.5", history=2, min_history=2)
    pair = [ev("a", 0, "10.00"), ev("b", 1, "20.00")]
    assert fired(pair + [ev("c", 2, "22.50")], even) == []  # 2 * 22.50 = 1.5 * (10 + 20)
    assert fired(pair + [ev("c", 2, "22.51")], even) == ["c"]
    least = one_rule("amount_vs_history", ratio="1", history=5, min_history=3)
    assert fired([ev("a", 0, "1.00"), ev("b", 1, "9.00"), ev("c", 2, "9.00")], least) == []


def test_new_device_lookback_edge_null_and_empty_devices():
    rs = one_rule("new_device", lookback_days=1, min_history=1)
    day = 86400
    assert fired([ev("a", 0, device_id="d1"), ev("b", day, device_id="d1")], rs) == []  # edge
    assert fired([ev("a", 0, device_id="d1"), ev("b", day + 0.000001, device_id="d1")], rs) == []
    assert fired([ev("a", 0, device_id="d1"), ev("z", 10, device_id="d2"),
                  ev("b", day + 0.000001, device_id="d1")], rs) == ["b", "z"]
    assert fired([ev("a", 0, device_id=None), ev("b", 5, device_id=""),
                  ev("c", 9, device_id="d2")], rs) == ["c"]
    other_user = [ev("a", 0, device_id="d1", user=2), ev("b", 5, device_id="d1")]
    assert fired(other_user, one_rule("new_device", lookback_days=1, min_history=0)) == ["a", "b"]


def test_in_list_quotes_semicolons_case_and_null_scope():
    rs = RuleSet.from_dict({"version": "b-1", "rules": [
        {"id": "r", "kind": "in_list", "field": "merchant_id", "values": ['m"3;--', "M1"],
         "channels": ["online"]}]})
    events = [ev("a", merchant_id='m"3;--'), ev("b", merchant_id="m1"),
              ev("c", merchant_id=None), ev("d", merchant_id='m"3;--', channel=None),
              ev("e", merchant_id="M1", channel="pos")]
    assert fired(events, rs) == ["a"]


def test_window_start_with_keys_too_wide_for_one_int64():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(1, 50))
        user = np.sort(rng.integers(0, 4, n))
        ts = np.concatenate([np.sort(rng.integers(-2**60, 2**60, int((user == u).sum())))
                             for u in np.unique(user)])
        w = int(rng.choice([0, 1, 2**40, 2**59]))
        want = [min(j for j in range(i + 1) if user[j] == user[i] and ts[j] >= ts[i] - w)
                for i in range(n)]
        assert window_start(user, ts, w).tolist() == want
