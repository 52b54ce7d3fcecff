"""rules.kernels decide exactly like the naive reference (tests/reference_rules.py): random rule
sets of every kind over dense random streams with many ties, in one pass and split into parts
with a carry at random points."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.kernels import decide
from rules.model import KINDS
from tests.reference_rules import reference_decisions
from tests.rules._kernel_data import (
    as_rows,
    decide_in_parts,
    decisions_frame,
    event_streams,
    frame_of,
    rule_sets,
    sort_events,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(events, rule_set, got: pl.DataFrame) -> None:
    want = as_rows(reference_decisions(events, rule_set))
    got_rows = as_rows(got)
    assert set(got_rows) == set(want)
    for tid, row in want.items():
        assert got_rows[tid] == row, (tid, rule_set.canonical_json())


@SETTINGS
@given(events=event_streams(), rule_set=rule_sets())
def test_one_pass_equals_reference(events, rule_set):
    frame = sort_events(frame_of(events))
    _check(events, rule_set, decisions_frame(frame, decide(frame, rule_set), rule_set))


@SETTINGS
@given(events=event_streams(), rule_set=rule_sets(),
       cuts=st.lists(st.integers(0, 50), max_size=4))
def test_parts_with_carry_equal_reference(events, rule_set, cuts):
    _check(events, rule_set, decide_in_parts(events, rule_set, [c for c in cuts
                                                                if c <= len(events)]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_kind_alone(data):
    for kind in KINDS:
        events = data.draw(event_streams(max_events=30))
        rule_set = data.draw(rule_sets(kinds=(kind,)))
        frame = sort_events(frame_of(events))
        _check(events, rule_set, decisions_frame(frame, decide(frame, rule_set), rule_set))
