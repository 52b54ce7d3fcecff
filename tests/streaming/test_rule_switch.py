"""PartitionRules without a broker: offsets decided by the set the switch log names, state carried
over each change (equal to one engine per set over the whole stream), shadow columns, and the
switch written before the first offset the new set decides."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fraudlake.contract import SHADOW_SCHEMA
from rules.model import load_rule_set
from streaming.engine import RuleEngine
from streaming.rule_switch import PartitionRules, RuleSwitchError
from streaming.rules_control import ControlState, Pointer, Switch
from tests.streaming._kafka_data import make_events

A = load_rule_set()
# a longer window than A's and a lower amount: its state needs more than A's engine would keep
B = A.with_overrides(["high_amount.threshold=300", "high_frequency.window_seconds=3600",
                      "high_frequency.count=40"])


def _events(n: int = 3000) -> pl.DataFrame:
    return make_events(n, users=25, seed=5).with_columns(
        _offset=pl.int_range(n, dtype=pl.Int64), _partition=pl.lit(0, pl.Int32))


def _expected(events: pl.DataFrame, rule_set) -> pl.DataFrame:
    return RuleEngine(rule_set).process(events).select(
        "_offset", "rule_set_id", "score", "flagged", "rules_fired")


def _drive(rules: PartitionRules, events: pl.DataFrame, batch: int) -> pl.DataFrame:
    out = []
    for lo in range(0, events.height, batch):
        out.append(rules.decide(events.slice(lo, batch), lo))
    return pl.concat(out, how="diagonal_relaxed")


def _history(events: pl.DataFrame):
    def history(below: int, columns) -> pl.DataFrame | None:
        part = events.filter(pl.col("_offset") < below)
        return part.select(list(columns)) if part.height else None
    return history


def test_recorded_switches_decide_each_offset_with_state_carried_over() -> None:
    events = _events()
    state = ControlState(sets={A.id: A, B.id: B})
    for s in [Switch("t", 0, "active", 0, A.id, ""), Switch("t", 0, "active", 1250, B.id, ""),
              Switch("t", 0, "active", 2100, A.id, "", "2"),
              Switch("t", 0, "shadow", 700, B.id, ""), Switch("t", 0, "shadow", 2500, None, "")]:
        state.add_switch(s)
    calls: list[int] = []
    lake = _history(events)

    def history(below: int, columns):
        calls.append(below)
        return lake(below, columns)

    rules = PartitionRules("t", 0, lambda: state, history, A)
    got = _drive(rules, events, 250)  # switches on and inside batch boundaries
    exp_a, exp_b = _expected(events, A), _expected(events, B)
    off = np.arange(events.height)
    use_b = (off >= 1250) & (off < 2100)
    want = pl.concat([exp_a.filter(pl.Series(~use_b)), exp_b.filter(pl.Series(use_b))]) \
        .sort("_offset")
    assert got.select(want.columns).equals(want)
    assert got["rule_set_id"].value_counts().height == 2
    # the shadow columns: B from 700 to 2499, null elsewhere
    in_shadow = (off >= 700) & (off < 2500)
    shadow = got.filter(pl.Series(in_shadow))
    ref = exp_b.filter(pl.Series(in_shadow))
    assert shadow["shadow_rule_set_id"].unique().to_list() == [B.id]
    assert shadow["shadow_flagged"].equals(ref["flagged"].alias("shadow_flagged"))
    assert shadow["shadow_rules_fired"].equals(ref["rules_fired"].alias("shadow_rules_fired"))
    assert got.filter(pl.Series(~in_shadow))["shadow_rule_set_id"].null_count() == \
        int((~in_shadow).sum())
    assert set(SHADOW_SCHEMA) <= set(got.columns)
    # the sets really differ on this data, so the test can fail
    assert not exp_a.filter(pl.Series(use_b))["flagged"].equals(
        exp_b.filter(pl.Series(use_b))["flagged"])
    # A → B (a longer window) reads the history; B → A starts from B's state (no read)
    # (calls: the first offset of the batch: A at 0, shadow B in 500.., B at 1250)
    assert calls == [0, 500, 1250]


def test_a_published_pointer_is_recorded_before_the_batch_is_decided() -> None:
    events = _events(1200)
    state = ControlState(sets={A.id: A, B.id: B},
                         pointers={"active": Pointer("active", A.id, "p1")})
    written: list[Switch] = []

    def record(s: Switch) -> None:
        assert all(s.offset > o for o in decided)  # written BEFORE its offset is decided
        written.append(s)

    decided: list[int] = []
    rules = PartitionRules("t", 0, lambda: state, _history(events), A, record)
    for lo in range(0, events.height, 100):
        if lo == 600:
            state.pointers["active"] = Pointer("active", B.id, "p2")
            state.pointers["shadow"] = Pointer("shadow", A.id, "p2")
        out = rules.decide(events.slice(lo, 100), lo)
        decided.extend(out["_offset"].to_list())
        assert out["rule_set_id"].unique().to_list() == [B.id if lo >= 600 else A.id]
    assert [(s.role, s.offset, s.id) for s in written] == [
        ("active", 0, A.id), ("active", 600, B.id), ("shadow", 600, A.id)]
    # a second writer for the same publication loses: the first record stays the truth
    assert not state.add_switch(Switch("t", 0, "active", 700, B.id, "x", "p2"))
    assert state.set_at("t", 0, "active", 650) == B.id


def test_a_pointer_to_an_unknown_set_is_an_error() -> None:
    events = _events(50)
    state = ControlState(sets={A.id: A}, pointers={"active": Pointer("active", "nope@1", "p")})
    rules = PartitionRules("t", 0, lambda: state, _history(events), A, lambda s: None)
    with pytest.raises(RuleSwitchError, match="nope@1"):
        rules.decide(events, 0)
