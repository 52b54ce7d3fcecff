"""batch.fast_flags over a rule set: the fast engine decides a lake split into time chunks (with
the carry between them) exactly like the reference, for the default set and random rich sets."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.chunked_flags import plan_chunks
from batch.fast_flags import flag_counts, flags_schema
from queries.staging import connect, resolve_input
from rules.model import RuleSet, load_rule_set
from tests.reference_rules import reference_decisions
from tests.rules._kernel_data import T0, event_streams, frame_of, rule_sets

GROUPS = ["year", "is_fraud", "fraud_scenario"]


def write_lake(root, events: list[dict], cuts: list[int]) -> None:
    """Events in ts order, split into files with disjoint ts ranges at the cut points."""
    ordered = sorted(events, key=lambda e: e["ts"])
    bounds = [0] + sorted({c for c in cuts if 0 < c < len(ordered)
                           and ordered[c]["ts"] > ordered[c - 1]["ts"]}) + [len(ordered)]
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        part = frame_of(ordered[lo:hi]).with_columns(
            is_fraud=pl.col("amount") > 999, fraud_scenario=pl.when(pl.col("amount") > 999)
            .then(pl.lit("big_ticket")).when(pl.col("channel") == "atm").then(pl.lit("atm")))
        folder = root / f"year={part['ts'][0].year}"
        folder.mkdir(parents=True, exist_ok=True)
        part.write_parquet(folder / f"part-{i:03d}.parquet")


def run_fast(root, rule_set, chunk_rows: int = 1):
    con = connect()
    chunks = plan_chunks(con, resolve_input(str(root)), chunk_rows)
    batches: list[pa.RecordBatch] = []
    counts = flag_counts(con, chunks, rule_set, batches.append)
    flags = pl.from_arrow(pa.Table.from_batches(batches, flags_schema(rule_set)))
    return flags, counts, len(chunks)


def expected_counts(events, reference: pl.DataFrame, rule_set) -> pl.DataFrame:
    labels = frame_of(events).select(
        "transaction_id", year=pl.col("ts").dt.year().cast(pl.Int32),
        is_fraud=pl.col("amount") > 999, fraud_scenario=pl.when(pl.col("amount") > 999)
        .then(pl.lit("big_ticket")).when(pl.col("channel") == "atm").then(pl.lit("atm")))
    cols = [*rule_set.rule_ids, "flagged"]
    return summed(labels.join(reference, on="transaction_id").group_by(GROUPS).agg(
        pl.len().cast(pl.Int64).alias("rows"), *[pl.col(c).sum().cast(pl.Int64) for c in cols]),
        cols)


def summed(counts: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return counts.group_by(GROUPS).agg(pl.col("rows", *cols).sum()).sort(GROUPS, nulls_last=True)


def check(tmp_path, events, rule_set, cuts) -> int:
    write_lake(tmp_path, events, cuts)
    flags, counts, n_chunks = run_fast(tmp_path, rule_set)
    reference = reference_decisions(events, rule_set)
    assert flags.sort("transaction_id").equals(reference.sort("transaction_id"))
    cols = [*rule_set.rule_ids, "flagged"]
    assert summed(counts, cols).equals(expected_counts(events, reference, rule_set))
    return n_chunks


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=event_streams(max_events=60), rule_set=rule_sets(),
       cuts=st.lists(st.integers(1, 59), max_size=4), nulls=st.sets(st.integers(0, 59),
                                                                   max_size=3))
def test_fast_engine_in_chunks_equals_reference(tmp_path_factory, events, rule_set, cuts, nulls):
    for i in nulls:  # a NULL core column: decided false, invisible to the other rows
        if i < len(events):
            events[i] = {**events[i], ("lat", "amount", "user_id", "utc_offset_min")[i % 4]: None}
    check(tmp_path_factory.mktemp("lake"), events, rule_set, cuts)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=event_streams(max_events=60), cuts=st.lists(st.integers(1, 59), max_size=4))
def test_default_rule_set_in_chunks_equals_reference(tmp_path_factory, events, cuts):
    check(tmp_path_factory.mktemp("lake"), events, load_rule_set(), cuts)


def test_bursts_across_chunk_boundaries(tmp_path):
    """Several chunks for sure: bursts, ties and device changes right at the boundaries."""
    events = []
    for day in range(4):
        for k in range(8):
            events.append({"transaction_id": f"d{day}k{k}", "user_id": k % 2,
                           "ts": T0 + timedelta(days=day, seconds=k % 3),
                           "amount": [5, 10, 30, 5, 1200, 10, 10, 7][k], "lat": 0.0,
                           "lon": float(k % 3), "utc_offset_min": 0, "channel": "online",
                           "category": "grocery", "device_id": f"dev{(day + k) % 3}",
                           "merchant_id": "m1", "card_last4": "0042", "country": "FR",
                           "city": "Paris"})
    for e in events:
        e["amount"] = Decimal(e["amount"])
    rule_set = RuleSet.from_dict({"version": "b-1", "alert_threshold": "2", "rules": [
        {"id": "burst", "kind": "velocity_count", "window_seconds": 90000, "count": 3},
        {"id": "spend", "kind": "velocity_amount", "window_seconds": 90000, "total": "40"},
        {"id": "median", "kind": "amount_vs_history", "ratio": "2", "history": 6,
         "min_history": 2},
        {"id": "device", "kind": "new_device", "lookback_days": 1, "min_history": 2},
        {"id": "travel", "kind": "impossible_travel", "distance_km": 50.0, "speed_kmh": 900.0,
         "min_hours": 1 / 60}]})
    cuts = [8 * d for d in range(1, 4)]
    assert check(tmp_path, events, rule_set, cuts) == 4


@pytest.mark.parametrize("rule_set", [load_rule_set()])
def test_empty_input(tmp_path, rule_set):
    frame_of([]).write_parquet(tmp_path / "empty.parquet")
    flags, counts, _ = run_fast(tmp_path, rule_set)
    assert flags.height == 0 and counts.height == 0
    assert flags.columns == ["transaction_id", *rule_set.rule_ids, "score", "flagged"]


def test_observe_sees_each_chunk_scan_with_its_decisions(tmp_path):
    events = [{"transaction_id": f"t{i}", "user_id": i % 3, "ts": T0 + timedelta(days=i),
               "amount": Decimal("1500.00" if i % 4 == 0 else "5.00"), "lat": 0.0, "lon": 0.0,
               "utc_offset_min": 0} for i in range(12)]
    write_lake(tmp_path, events, [4, 8])
    rule_set = load_rule_set()
    con = connect()
    seen: list[tuple[pl.DataFrame, dict]] = []
    flag_counts(con, plan_chunks(con, resolve_input(str(tmp_path)), 1), rule_set,
                observe=lambda table, fired: seen.append((pl.from_arrow(table), dict(fired))))
    assert len(seen) == 3
    for frame, fired in seen:
        assert {"transaction_id", "user_id", "ts_us", "amount_cents", "code",
                "fraud_scenario"} <= set(frame.columns)
        assert set(fired) == set(rule_set.rule_ids)
        big = (frame["amount_cents"] > 100_000).to_list()
        assert fired["high_amount"].tolist() == big
