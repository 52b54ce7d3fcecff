"""What-if aggregates against separate reference runs: one combined pass == N single ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from batch.whatif import NO_MONTH, combine, months_of, rows_from_frame
from batch.whatif_accumulate import WhatIf
from batch.whatif_speed import incidents_report
from batch.whatif_sweep import best_within_budget, frontier, parse_sweep, sweep_sets
from rules.model import RuleSetError, load_rule_set, parse_rule_set
from tests.reference_rules import reference_decisions

RICH = """
version = "rich-1"
alert_threshold = "1.5"
[[rule]]
id = "big"
kind = "amount_over"
threshold = "500.00"
[[rule]]
id = "burst"
kind = "velocity_count"
window_seconds = 120
count = 3
weight = "0.5"
[[rule]]
id = "spend"
kind = "velocity_amount"
window_seconds = 3600
total = "900.00"
channels = ["online"]
[[rule]]
id = "jump"
kind = "amount_vs_history"
ratio = "2.5"
history = 4
min_history = 2
"""


def _events(seed: int, n: int = 600) -> pl.DataFrame:
    rng = random.Random(seed)
    base = datetime(2023, 12, 30, tzinfo=UTC)
    rows = []
    for i in range(n):
        fraud = rng.random() < 0.2
        rows.append({
            "transaction_id": f"t{i:05d}", "user_id": rng.randint(1, 8),
            "ts": base + timedelta(seconds=rng.choice([0, 30, 60, 600, 3600, 86400 * 20])
                                   * rng.randint(0, 8)),
            "amount": Decimal(rng.choice(["5.00", "120.00", "480.00", "500.00", "500.01",
                                          "950.00", "2400.00"])),
            "lat": 40.0, "lon": -74.0, "utc_offset_min": -300,
            "channel": rng.choice(["pos", "online", None]),
            "is_fraud": fraud, "fraud_scenario": rng.choice(["ato", "testing"]) if fraud else None,
        })
    return pl.DataFrame(rows)


def _run(events: pl.DataFrame, sets: dict, pairs=(), chunks: int = 3, sample: int = 20,
         speed: bool = True) -> WhatIf:
    combined, variants = combine(sets)
    decided = reference_decisions(events, combined)
    frame = events.with_columns(
        ts_us=pl.col("ts").dt.epoch("us"),
        amount_cents=(pl.col("amount") * 100).cast(pl.Int64)).join(
        decided, on="transaction_id")
    w = WhatIf(variants, pairs, sample=sample, speed=speed)
    cuts = sorted(random.Random(1).sample(range(1, frame.height), chunks - 1))
    for lo, hi in zip([0, *cuts], [*cuts, frame.height], strict=True):
        part = frame.slice(lo, hi - lo)
        w.add(rows_from_frame(part), {c: part[c].to_numpy() for c in combined.rule_ids})
    return w


def test_diff_equals_two_separate_runs() -> None:
    events = _events(3)
    a = parse_rule_set(RICH, "a.toml")
    b = a.with_overrides(["big.threshold=900", "burst.count=2", "alert_threshold=1"])
    w = _run(events, {"a": a, "b": b}, pairs=[("a", "b")])
    ra, rb = reference_decisions(events, a), reference_decisions(events, b)
    flips = w.flips(("a", "b"))
    for rid in [*a.rule_ids, "flagged"]:
        gained = int((rb[rid] & ~ra[rid]).sum())
        lost = int((ra[rid] & ~rb[rid]).sum())
        assert flips[rid]["gained"] == gained and flips[rid]["lost"] == lost, rid
    assert flips["flagged"]["gained"] + flips["flagged"]["lost"] > 0
    for name, ref in (("a", ra), ("b", rb)):
        counts = w.counts(name)
        assert int(counts["flagged"].sum()) == int(ref["flagged"].sum())
        assert int(counts["rows"].sum()) == events.height
    sample = w.flip_sample(("a", "b"))
    assert sample and all(s["flip"] in ("gained", "lost") for s in sample)


def test_rule_only_in_one_set_never_fires_in_the_other() -> None:
    events = _events(5)
    a = load_rule_set()
    b = parse_rule_set(RICH, "b.toml")
    w = _run(events, {"a": a, "b": b}, pairs=[("a", "b")])
    rb = reference_decisions(events, b)
    flips = w.flips(("a", "b"))
    assert flips["burst"]["gained"] == int(rb["burst"].sum()) and flips["burst"]["lost"] == 0


def test_rule_value_and_overlap() -> None:
    events = _events(7)
    rs = parse_rule_set(RICH, "r.toml")
    w = _run(events, {"r": rs})
    value = w.rule_value("r")
    fraud = events["is_fraud"].to_numpy()
    for rid in rs.rule_ids:
        without = reference_decisions(events, rs.with_overrides([f"{rid}.weight=0.000001"]))
        # a weight of 1e-6 cannot reach the 1.5 threshold alone; it equals removing the rule
        # only when no other combination sits exactly at the threshold, which these weights
        # (1, 0.5, 1, 1) never do within 1e-6
        assert value["rules"][rid]["alerts_without"] == int(without["flagged"].sum())
        tp = int((without["flagged"].to_numpy() & fraud).sum())
        assert value["rules"][rid]["recall_without"] == pytest.approx(tp / fraud.sum())
    ref = reference_decisions(events, rs)
    both = int((ref["big"] & ref["spend"] & ref["flagged"]).sum())
    assert value["overlap"]["big"]["spend"] == both == value["overlap"]["spend"]["big"]


def test_sweep_points_equal_individual_runs() -> None:
    events = _events(11)
    base = parse_rule_set(RICH, "r.toml")
    sweep = parse_sweep("big.threshold=400:1000:100", base)
    assert sweep.values == ("400", "500", "600", "700", "800", "900", "1000")
    sets = sweep_sets(base, [sweep])
    w = _run(events, sets)
    for name, rs in sets.items():
        assert int(w.counts(name)["flagged"].sum()) == int(
            reference_decisions(events, rs)["flagged"].sum()), name


def test_sweep_validation() -> None:
    base = load_rule_set()
    for bad, msg in [("high_amount.threshold=1:0:1", "START <= STOP"),
                     ("nope.threshold=1:2:1", "unknown rule"),
                     ("high_amount.threshold=0:1e9:1", "at most"),
                     ("high_amount.threshold=a:b:c", "must be numbers"),
                     ("high_amount.threshold", "expected")]:
        with pytest.raises(RuleSetError, match=msg):
            parse_sweep(bad, base)
    with pytest.raises(RuleSetError, match="whole number"):
        sweep_sets(base, [parse_sweep("high_frequency.count=1:2:0.5", base)])


def test_budget_and_frontier() -> None:
    pts = [{"name": "a", "recall": 0.5, "precision": 0.1, "alerts_per_day": 10.0},
           {"name": "b", "recall": 0.4, "precision": 0.2, "alerts_per_day": 5.0},
           {"name": "c", "recall": 0.3, "precision": 0.3, "alerts_per_day": 6.0}]
    assert best_within_budget(pts, 7)["name"] == "b"
    assert best_within_budget(pts, 1) is None
    assert [p["name"] for p in frontier(pts)] == ["b", "a"]


def test_without_speed_no_fraud_rows_kept_and_the_rest_unchanged() -> None:
    events = _events(5)
    a = parse_rule_set(RICH, "a.toml")
    b = a.with_overrides(["big.threshold=900"])
    sets, pairs = {"a": a, "b": b}, [("a", "b")]
    with_speed, without = _run(events, sets, pairs), _run(events, sets, pairs, speed=False)
    assert with_speed._fraud and not without._fraud
    assert without.flips(("a", "b")) == with_speed.flips(("a", "b"))
    assert without.flip_sample(("a", "b")) == with_speed.flip_sample(("a", "b"))
    assert without.counts("b").equals(with_speed.counts("b"))
    with pytest.raises(ValueError, match="speed"):
        without.detection_speed("a")


def test_detection_speed() -> None:
    day = 86_400_000_000
    rows = pl.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2],
        "ts_us": [0, 10, 20, 40 * day, 0, 5],
        "transaction_id": ["a", "b", "c", "d", "e", "f"],
        "amount_cents": [100, 200, 300, 400, 50, 60],
        "fraud_scenario": ["ato"] * 4 + ["testing"] * 2,
        "flagged_x": [False, False, True, False, False, False],
    })
    out = incidents_report(rows, "flagged_x")
    assert out["ato"]["incidents"] == 2  # 40 days later: a new incident
    assert out["ato"]["never_alerted_share"] == 0.5
    assert out["ato"]["median_events_before_first_alert"] == 2
    assert out["ato"]["money_before_first_alert"] == "7.00"  # 1 + 2 before, 4 never alerted
    assert out["testing"]["never_alerted_share"] == 1.0


def test_alerts_per_day_counts_quiet_days() -> None:
    events = _events(13)
    rs = load_rule_set()
    w = _run(events, {"r": rs})
    apd = w.alerts_per_day("r")
    ref = reference_decisions(events, rs)
    assert apd["mean"] == pytest.approx(int(ref["flagged"].sum()) / apd["days"])
    assert apd["p95"] <= apd["max"] and np.isfinite(apd["p95"])


def test_months_of_equals_the_calendar() -> None:
    rng = np.random.default_rng(3)
    ts = rng.integers(-10**15, 2 * 10**15, 50_000)
    want = ts.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64) + 1970 * 12 + 1
    assert (months_of(ts) == want).all()
    timed = ts > 0
    assert (months_of(ts, timed)[~timed] == NO_MONTH).all()
