"""The streaming rule engine against the naive reference of every kind (tests/reference_rules),
on rules/default.toml and a rich rule set, across random micro-batch splits and restarts."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rules.model import RuleSet, load_rule_set
from streaming.engine import DECISION_COLUMNS, EngineState, RuleEngine
from tests.reference_rules import reference_decisions
from tests.streaming._rich import rich_events, rich_rule_set
from tests.streaming._stream_events import START, random_batches, random_events

DEFAULT = load_rule_set()


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return rich_rule_set(tmp_path_factory.mktemp("rich"))


def _cols(rule_set: RuleSet) -> list[str]:
    return [*rule_set.rule_ids, "score", "flagged"]


def _run(engine: RuleEngine, batches: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([engine.process(b) for b in batches])


def _mismatches(out: pl.DataFrame, ref: pl.DataFrame, rule_set: RuleSet) -> dict[str, int]:
    cols = _cols(rule_set)
    j = out.select("transaction_id", *cols).join(ref, on="transaction_id", suffix="_ref")
    assert j.height == ref.height
    return {c: int((j[c] != j[f"{c}_ref"]).sum()) for c in cols}


def _assert_equal(out: pl.DataFrame, events: pl.DataFrame, rule_set: RuleSet) -> pl.DataFrame:
    ref = reference_decisions(events, rule_set)
    assert _mismatches(out, ref, rule_set) == dict.fromkeys(_cols(rule_set), 0)
    return ref


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_default_set_matches_reference_across_random_micro_batches(seed: int) -> None:
    df = random_events(2500, n_users=12, seed=seed)
    out = _run(RuleEngine(DEFAULT), random_batches(df, seed=seed, max_size=60))
    ref = _assert_equal(out, df, DEFAULT)
    assert ref["high_frequency"].sum() > 20 and ref["geo_mismatch"].sum() > 20


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rich_set_matches_reference_across_random_micro_batches(rich: RuleSet,
                                                                seed: int) -> None:
    df = rich_events(2500, n_users=12, seed=seed)
    out = _run(RuleEngine(rich), random_batches(df, seed=seed, max_size=60))
    ref = _assert_equal(out, df, rich)
    fired = ref.select(rich.rule_ids).sum().row(0, named=True)
    assert all(n > 0 for n in fired.values()), fired  # every rule is exercised
    assert 0 < ref["flagged"].sum() < ref.height


def test_one_shuffled_batch_equals_reference(rich: RuleSet) -> None:
    df = rich_events(1500, n_users=8, seed=5)
    _assert_equal(RuleEngine(rich).process(df.sample(fraction=1.0, shuffle=True, seed=1)), df,
                  rich)


@pytest.mark.parametrize("overrides", [
    ["unusual_hour.start_hour=22", "unusual_hour.end_hour=5"],
    ["high_frequency.window_seconds=0", "high_frequency.count=2"],
    ["high_frequency.count=1", "high_amount.threshold=2500", "alert_threshold=2"],
    ["high_frequency.window_seconds=600", "geo_mismatch.distance_km=10",
     "geo_mismatch.speed_kmh=50", "geo_mismatch.weight=0.5", "alert_threshold=1.5"],
])
def test_default_overrides_match_reference(overrides: list[str]) -> None:
    rule_set = DEFAULT.with_overrides(overrides)
    df = random_events(1200, n_users=6, seed=11)
    _assert_equal(_run(RuleEngine(rule_set), random_batches(df, seed=4, max_size=40)), df,
                  rule_set)


def _frame(rows: list[tuple[str, int, int, float, float]], **extra: list) -> pl.DataFrame:
    """(tid, user, seconds after START, lat, lon) → minimal contract frame."""
    return pl.DataFrame({
        "transaction_id": [r[0] for r in rows], "user_id": [r[1] for r in rows],
        "ts": [START + timedelta(seconds=r[2]) for r in rows],
        "amount": [Decimal("1.00")] * len(rows),
        "lat": [r[3] for r in rows], "lon": [r[4] for r in rows],
        "utc_offset_min": [0] * len(rows), **extra,
    }).with_columns(pl.col("ts").dt.cast_time_unit("us"),
                    pl.col("utc_offset_min").cast(pl.Int32),
                    pl.col("amount").cast(pl.Decimal(18, 2)))


def test_six_ties_flag_only_fifth_and_sixth_across_batches() -> None:
    rows = [(f"t{i}", 1, 100, 0.0, 0.0) for i in range(6)]
    engine = RuleEngine(DEFAULT)
    out = _run(engine, [_frame(rows[:2]), _frame(rows[2:4]), _frame(rows[4:])])
    assert out["high_frequency"].to_list() == [False] * 4 + [True, True]
    assert engine.metrics().late_events == 0


def test_output_columns_order_and_extra_columns(rich: RuleSet) -> None:
    df = rich_events(300, n_users=5, seed=2).with_columns(extra=pl.int_range(pl.len()))
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=9)
    out = RuleEngine(rich).process(shuffled)
    assert out.columns == [*shuffled.columns, *rich.rule_ids, *DECISION_COLUMNS]
    assert out["extra"].to_list() == shuffled["extra"].to_list()
    assert out.select(_cols(rich)).null_count().sum_horizontal().item() == 0
    assert out["rule_set_id"].unique().to_list() == [rich.id]
    fired = out.select(rules=pl.concat_list(
        [pl.when(pl.col(r)).then(pl.lit(r)) for r in rich.rule_ids]).list.drop_nulls())
    assert out["rules_fired"].to_list() == fired["rules"].to_list()
    assert out.filter(pl.col("evidence").is_null() == pl.col("flagged")).height == 0


@pytest.mark.parametrize("which", ["default", "rich"])
def test_state_is_bounded_by_retention_and_idle_users_keep_only_last_rows(
        rich: RuleSet, which: str) -> None:
    rule_set = DEFAULT if which == "default" else rich
    span = 12 * 3600 if which == "default" else 4 * 86400  # rich: a 1-day device lookback
    early = rich_events(60, n_users=3, seed=9, span_s=3600).with_columns(
        user_id=pl.col("user_id") + 1000, transaction_id="e" + pl.col("transaction_id"))
    df = pl.concat([early, rich_events(2000, n_users=40, seed=3, span_s=span).with_columns(
        ts=pl.col("ts") + pl.duration(seconds=span))]).sort("ts", "transaction_id")
    engine = RuleEngine(rule_set, idle_seconds=0)  # clamps to the horizon
    _assert_equal(_run(engine, random_batches(df, seed=1, max_size=80)), df, rule_set)
    state = engine.state_frame()
    last = state.group_by("user_id").agg(pl.col("ts_us").max().alias("last"),
                                         pl.col("ts_us").min().alias("first"), pl.len())
    # kept: the last last_k rows, rows within the velocity horizon of the user's last row and,
    # older than that, only the latest row of each device within the device lookback
    ranked = state.sort("user_id", "ts_us", "transaction_id").with_columns(
        last=pl.col("ts_us").max().over("user_id"),
        from_end=pl.int_range(pl.len()).reverse().over("user_id"))
    older = ranked.filter((pl.col("from_end") >= engine.last_k)
                          & (pl.col("ts_us") < pl.col("last") - engine.window_us))
    if which == "default":
        assert older.height == 0
    else:
        assert older.height > 0 and older["device_id"].null_count() == 0
        assert (older["last"] - older["ts_us"] <= engine.device_us).all()
        assert older.select("user_id", "device_id").is_duplicated().sum() == 0
    mark = engine.metrics().watermark
    idle = last.filter(pl.col("last") < mark - engine.idle_us)
    assert idle.height > 0 and idle["len"].max() <= engine.last_k
    assert state.height < df.height / 2


def test_eviction_never_changes_a_decision(rich: RuleSet) -> None:
    df = rich_events(2000, n_users=30, seed=8, span_s=36 * 3600)
    batches = random_batches(df, seed=3, max_size=30)
    tight = _run(RuleEngine(rich, idle_seconds=0), batches)
    loose = _run(RuleEngine(rich, idle_seconds=10**9), batches)
    cols = ["transaction_id", *_cols(rich)]
    assert tight.select(cols).equals(loose.select(cols))


def test_redelivered_batch_is_decided_the_same_and_not_double_counted(rich: RuleSet) -> None:
    df = rich_events(800, n_users=4, seed=6)
    batches = random_batches(df, seed=2, max_size=40)
    engine = RuleEngine(rich)
    first = [engine.process(b) for b in batches[:5]]
    held = engine.state_frame().select("transaction_id")
    again = engine.process(batches[4])  # at-least-once: the same records once more
    rest = [engine.process(b) for b in batches[5:]]
    m = engine.metrics()
    assert m.duplicate_events > 0 and m.duplicate_events + m.late_events == batches[4].height
    cols = ["transaction_id", *_cols(rich)]
    still_held = again.join(held, on="transaction_id")
    assert still_held.height > 0
    assert still_held.select(cols).sort("transaction_id").equals(
        first[4].join(still_held.select("transaction_id"), on="transaction_id")
        .select(cols).sort("transaction_id"))
    _assert_equal(pl.concat(first + rest), df, rich)


def test_late_events_are_counted() -> None:
    engine = RuleEngine(DEFAULT)
    engine.process(_frame([("b", 1, 100, 0.0, 0.0)]))
    engine.process(_frame([("a", 1, 50, 0.0, 0.0), ("c", 1, 200, 0.0, 0.0)]))
    assert engine.metrics().late_events == 1


@pytest.mark.parametrize("cut", [1, 700, 1999])
def test_snapshot_restore_and_warm_up_decide_like_an_uninterrupted_engine(
        rich: RuleSet, tmp_path: Path, cut: int) -> None:
    df = rich_events(2000, n_users=10, seed=4)
    head, tail = df.head(cut), df.slice(cut)
    whole = RuleEngine(rich)
    whole.process(head)
    expected = whole.process(tail)

    first = RuleEngine(rich)
    for b in random_batches(head, seed=cut, max_size=50):
        first.process(b)
    first.snapshot().write(tmp_path / "state.parquet")
    restored = RuleEngine(rich)
    restored.restore(EngineState.read(tmp_path / "state.parquet"))
    assert restored.process(tail).equals(expected)

    warmed = RuleEngine(rich)
    warmed.warm_up(head.sample(fraction=1.0, shuffle=True, seed=3)
                   .select(warmed.state_columns))
    assert warmed.process(tail).equals(expected)
    with pytest.raises(ValueError, match="rule set"):
        RuleEngine(DEFAULT).restore(EngineState.read(tmp_path / "state.parquet"))


def test_empty_batch_and_warm_up_of_lake_rows(rich: RuleSet) -> None:
    engine = RuleEngine(rich)
    empty = engine.process(rich_events(10, seed=1).head(0))
    assert empty.height == 0 and empty.columns[-len(DECISION_COLUMNS):] == list(
        DECISION_COLUMNS)
    lake_rows = RuleEngine(rich).process(rich_events(200, n_users=3, seed=1))
    engine.warm_up(lake_rows)
    assert engine.metrics().events == 200 and engine.metrics().users == 3


# --- evidence ---------------------------------------------------------------------------------

def _evidence(out: pl.DataFrame, tid: str) -> dict:
    return json.loads(out.filter(pl.col("transaction_id") == tid)["evidence"].item())


def test_travel_evidence_names_the_previous_city_from_an_earlier_batch() -> None:
    # Los Angeles → Moscow, 15.5 min apart, in two micro-batches (the city comes from state)
    engine = RuleEngine(DEFAULT)
    engine.process(_frame([("a", 1, 0, 34.0522, -118.2437)], city=["Los Angeles"]))
    out = engine.process(_frame([("b", 1, 930, 55.7558, 37.6173)], city=["Moscow"]))
    ev = _evidence(out, "b")["geo_mismatch"]
    assert ev["from_city"] == "Los Angeles" and ev["to_city"] == "Moscow"
    assert (ev["from_lat"], ev["from_lon"]) == (34.0522, -118.2437)
    assert 9_700 < ev["km"] < 9_800 and ev["minutes"] == 15.5
    assert ev["kmh"] == round(ev["km"] / (15.5 / 60), -0) or abs(
        ev["kmh"] - ev["km"] / (15.5 / 60)) < 1
    assert ev["text"].startswith("Los Angeles → Moscow: 9,7") and "15.5 min" in ev["text"]


def test_velocity_amount_history_device_list_and_hour_evidence(rich: RuleSet) -> None:
    rows = [("p1", 7, 0, 0.0, 0.0), ("p2", 7, 10, 0.0, 0.0), ("p3", 7, 20, 0.0, 0.0),
            ("p4", 7, 30, 0.0, 0.0), ("e", 7, 40, 0.0, 0.0)]
    frame = _frame(rows, channel=["online"] * 5, category=["electronics"] * 5,
                   device_id=["d1", None, "d2", "", "d9"], merchant_id=["m1"] * 4 + ["m7"],
                   country=["FR"] * 4 + ["RU"], city=["Paris"] * 5).with_columns(
        amount=pl.Series([Decimal("2.00"), Decimal("4.00"), Decimal("3.00"), Decimal("5.00"),
                          Decimal("2600.00")]).cast(pl.Decimal(18, 2)),
        ts=pl.col("ts") + pl.duration(hours=1))  # START is 22:00 UTC: 23:00 local
    engine = RuleEngine(rich)
    out = engine.process(frame.head(4))
    out = engine.process(frame.tail(1))
    ev = _evidence(out, "e")
    assert ev["big"] == {"amount": "2600.00", "threshold": "1000.00",
                         "text": "2600.00 > 1000.00"}
    assert ev["burst_1m"]["n"] == 5 and ev["burst_1m"]["window_seconds"] == 60
    assert ev["spend_10m"]["sum"] == "2614.00"
    assert ev["spike"]["median"] == "3.50" and ev["spike"]["ratio"] == "3"
    assert ev["spike"]["history"] == 4
    assert ev["fresh_device"]["device_id"] == "d9"
    assert sorted(ev["fresh_device"]["devices_seen"]) == ["d1", "d2"]
    assert ev["blocked"] == {"field": "merchant_id", "value": "m7",
                             "text": "merchant_id m7 is listed"}
    assert ev["odd_country"]["value"] == "RU"
    assert ev["night"]["local_time"] == "23:00"
    assert "card_testing" not in ev  # 2600.00 is above its max_amount
    assert set(ev) == set(out.filter(pl.col("transaction_id") == "e")["rules_fired"].item())


def test_state_columns_are_only_what_the_rule_set_reads(rich: RuleSet) -> None:
    default = RuleEngine(DEFAULT)
    assert set(default.value_columns) <= {"amount", "lat", "lon", "utc_offset_min", "city"}
    assert {"channel", "category", "device_id", "merchant_id", "country"} <= set(
        RuleEngine(rich).value_columns)
    assert np.all(np.array(default.units) == 1)


_LONG_LOOKBACK = """
version = "long-lookback-1"
[[rule]]
id = "burst"
kind = "velocity_count"
window_seconds = 600
count = 3
[[rule]]
id = "spend"
kind = "amount_vs_history"
ratio = "2"
history = 3
min_history = 2
[[rule]]
id = "fresh_device"
kind = "new_device"
lookback_days = 2
min_history = 5
"""


@pytest.mark.parametrize("seed", [4, 5])
def test_compact_state_of_a_long_device_lookback_decides_as_the_reference(
        tmp_path: Path, seed: int) -> None:
    """A device lookback far longer than the velocity window and min_history above the median
    history: the state keeps one row per device beyond the last rows, and still decides every
    kind exactly, across small batches, a snapshot/restore and eviction."""
    path = tmp_path / "long.toml"
    path.write_text(_LONG_LOOKBACK)
    rule_set = load_rule_set(path)
    df = rich_events(1500, n_users=6, seed=seed, span_s=5 * 86400)
    batches = random_batches(df, seed=seed, max_size=40)
    engine = RuleEngine(rule_set, idle_seconds=0)
    half = len(batches) // 2
    first = _run(engine, batches[:half])
    restored = RuleEngine(rule_set, idle_seconds=0)
    restored.restore(engine.snapshot())
    out = pl.concat([first, _run(restored, batches[half:])])
    ref = _assert_equal(out, df, rule_set)
    assert ref["fresh_device"].sum() > 5 and ref["spend"].sum() > 5
    assert engine.last_k == 5  # new_device's min_history, above the median's history
    assert restored.metrics().state_rows < df.height / 4
