"""The streaming rule engine against a naive reference of docs/design.md's rules."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest

from fraudlake.contract import FLAGGED, RULE_NAMES
from queries.params import DEFAULT_PARAMS
from streaming.engine import EngineState, RuleEngine, window_counts
from tests.reference_rules import reference_flags
from tests.streaming._stream_events import START, random_batches, random_events

RULES = [*RULE_NAMES, FLAGGED]


def _run(engine: RuleEngine, batches: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([engine.process(b) for b in batches])


def _mismatches(out: pl.DataFrame, ref: pl.DataFrame) -> dict[str, int]:
    j = out.select("transaction_id", *RULES).join(ref, on="transaction_id", suffix="_ref")
    assert j.height == ref.height
    return {c: int((j[c] != j[f"{c}_ref"]).sum()) for c in RULES}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_reference_across_random_micro_batches(seed: int) -> None:
    df = random_events(2500, n_users=12, seed=seed)
    ref = reference_flags(df)
    assert ref["high_frequency"].sum() > 20 and ref["geo_mismatch"].sum() > 20
    out = _run(RuleEngine(), random_batches(df, seed=seed, max_size=60))
    assert _mismatches(out, ref) == dict.fromkeys(RULES, 0)


def test_one_shuffled_batch_equals_reference() -> None:
    df = random_events(1500, n_users=8, seed=5)
    out = RuleEngine().process(df.sample(fraction=1.0, shuffle=True, seed=1))
    assert _mismatches(out, reference_flags(df)) == dict.fromkeys(RULES, 0)


@pytest.mark.parametrize("overrides", [
    ["unusual_hour.start_hour=22", "unusual_hour.end_hour=5"],
    ["high_frequency.window_seconds=0", "high_frequency.count=2"],
    ["high_frequency.count=1", "high_amount.threshold=2500"],
    ["high_frequency.window_seconds=600", "geo_mismatch.distance_km=10",
     "geo_mismatch.speed_kmh=50"],
])
def test_parameter_overrides_match_reference(overrides: list[str]) -> None:
    params = DEFAULT_PARAMS.with_overrides(overrides)
    df = random_events(1200, n_users=6, seed=11)
    out = _run(RuleEngine(params), random_batches(df, seed=4, max_size=40))
    assert _mismatches(out, reference_flags(df, params)) == dict.fromkeys(RULES, 0)


def _frame(rows: list[tuple[str, int, int, float, float]]) -> pl.DataFrame:
    """(tid, user, seconds after START, lat, lon) → minimal contract frame."""
    return pl.DataFrame({
        "transaction_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
        "ts": [START + timedelta(seconds=r[2]) for r in rows],
        "amount": [Decimal("1.00")] * len(rows),
        "lat": [r[3] for r in rows], "lon": [r[4] for r in rows],
        "utc_offset_min": [0] * len(rows),
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"),
                    pl.col("utc_offset_min").cast(pl.Int32),
                    pl.col("amount").cast(pl.Decimal(18, 2)))


def test_six_ties_flag_only_fifth_and_sixth_across_batches() -> None:
    rows = [(f"t{i}", 1, 100, 0.0, 0.0) for i in range(6)]
    engine2 = RuleEngine()
    out = _run(engine2, [_frame(rows[:2]), _frame(rows[2:4]), _frame(rows[4:])])
    assert out["high_frequency"].to_list() == [False] * 4 + [True, True]
    assert engine2.metrics().late_events == 0


def test_window_is_inclusive_and_counts_only_earlier_events() -> None:
    user = np.zeros(6, dtype=np.int64)
    ts = np.array([0, 10, 20, 30, 60, 61]) * 1_000_000
    assert window_counts(user, ts, 60_000_000).tolist() == [1, 2, 3, 4, 5, 5]
    two_users = np.array([1, 1, 2, 2])
    same = np.array([5, 5, 5, 5]) * 1_000_000
    assert window_counts(two_users, same, 0).tolist() == [1, 2, 1, 2]


def test_geo_first_event_never_flagged_and_one_minute_floor() -> None:
    # Paris → New York (≈5837 km) 30 s later: hours floored to 1/60 → 350k km/h → flagged
    out = RuleEngine().process(_frame([("a", 1, 0, 48.85, 2.35), ("b", 1, 30, 40.71, -74.0),
                                       ("c", 2, 0, 40.71, -74.0)]))
    assert out["geo_mismatch"].to_list() == [False, True, False]
    # 7 hours later: 834 km/h → not flagged
    out = RuleEngine().process(_frame([("a", 1, 0, 48.85, 2.35),
                                       ("b", 1, 7 * 3600, 40.71, -74.0)]))
    assert out["geo_mismatch"].to_list() == [False, False]


def test_keeps_rows_order_and_extra_columns() -> None:
    df = random_events(300, n_users=5, seed=2).with_columns(extra=pl.int_range(pl.len()))
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=9)
    out = RuleEngine().process(shuffled)
    assert out.columns == [*shuffled.columns, *RULES]
    assert out["extra"].to_list() == shuffled["extra"].to_list()
    assert out.select(RULES).null_count().sum_horizontal().item() == 0


def test_state_is_bounded_and_idle_users_keep_only_their_last_event() -> None:
    df = random_events(3000, n_users=40, seed=3)
    engine = RuleEngine(idle_seconds=60)
    out = _run(engine, random_batches(df, seed=1, max_size=80))
    assert _mismatches(out, reference_flags(df)) == dict.fromkeys(RULES, 0)
    state = engine.state_frame()
    per_user = state.group_by("user_id").len()["len"]
    assert per_user.max() <= engine.keep_per_user
    mark = engine.metrics().watermark
    last = state.group_by("user_id").agg(pl.col("_ts").max(), pl.len())
    idle = last.filter(pl.col("_ts") < mark - 60_000_000)
    assert idle.height > 0 and idle["len"].max() == 1


def test_eviction_never_changes_a_decision() -> None:
    df = random_events(2000, n_users=30, seed=8, span_s=6 * 3600)
    batches = random_batches(df, seed=3, max_size=30)
    tight = _run(RuleEngine(idle_seconds=0), batches)  # clamps to the window
    loose = _run(RuleEngine(idle_seconds=10**9), batches)
    assert tight.select("transaction_id", *RULES).equals(loose.select("transaction_id", *RULES))


def test_redelivered_batch_is_decided_the_same_and_not_double_counted() -> None:
    df = random_events(800, n_users=4, seed=6)
    batches = random_batches(df, seed=2, max_size=40)
    engine = RuleEngine()
    first = [engine.process(b) for b in batches[:5]]
    held = engine.state_frame().select("transaction_id")
    again = engine.process(batches[4])  # at-least-once: the same records once more
    rest = [engine.process(b) for b in batches[5:]]
    m = engine.metrics()
    # rows still in the state get their stored decisions; older ones are decided as late events
    assert m.duplicate_events > 0 and m.duplicate_events + m.late_events == batches[4].height
    assert again.select(RULES).equals(first[4].select(RULES)) or m.late_events > 0
    last_of_user = again.join(held, on="transaction_id")
    assert last_of_user.height > 0
    assert last_of_user.select("transaction_id", *RULES).sort("transaction_id").equals(
        first[4].join(last_of_user.select("transaction_id"), on="transaction_id")
        .select("transaction_id", *RULES).sort("transaction_id"))
    assert _mismatches(pl.concat(first + rest), reference_flags(df)) == dict.fromkeys(RULES, 0)


def test_late_events_are_counted() -> None:
    engine = RuleEngine()
    engine.process(_frame([("b", 1, 100, 0.0, 0.0)]))
    engine.process(_frame([("a", 1, 50, 0.0, 0.0), ("c", 1, 200, 0.0, 0.0)]))
    assert engine.metrics().late_events == 1


def test_snapshot_restore_and_warm_up_decide_like_an_uninterrupted_engine(tmp_path) -> None:
    df = random_events(2000, n_users=10, seed=4)
    head, tail = df.head(1200), df.slice(1200)
    whole = RuleEngine()
    whole.process(head)
    expected = whole.process(tail)

    first = RuleEngine()
    first.process(head)
    first.snapshot().write(tmp_path / "state.parquet")
    restored = RuleEngine()
    restored.restore(EngineState.read(tmp_path / "state.parquet"))
    assert restored.process(tail).equals(expected)

    warmed = RuleEngine()
    warmed.warm_up(head.sample(fraction=1.0, shuffle=True, seed=3))
    assert warmed.process(tail).equals(expected)


def test_window_counts_fast_path_equals_lexsort_path() -> None:
    rng = np.random.default_rng(0)
    user = np.sort(rng.integers(0, 50, 5000))
    ts = np.concatenate([np.sort(rng.integers(0, 10**9, (user == u).sum())) for u in range(50)
                         if (user == u).any()])
    fast = window_counts(user, ts, 60_000_000)
    # one extra user spanning 2**61 µs forces the overflow-safe path
    slow = window_counts(np.r_[user, 99, 99], np.r_[ts, 0, 2**61], 60_000_000)
    assert (fast == slow[:-2]).all() and fast.max() > 2 and slow[-2:].tolist() == [1, 1]


def test_empty_batch_and_warm_up_of_lake_rows() -> None:
    engine = RuleEngine()
    empty = engine.process(random_events(10, seed=1).head(0))
    assert empty.height == 0 and empty.columns[-5:] == RULES
    lake_rows = RuleEngine().process(random_events(200, n_users=3, seed=1))  # has rule columns
    engine.warm_up(lake_rows)
    assert engine.metrics().events == 200 and engine.metrics().users == 3
