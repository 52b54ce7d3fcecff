"""Property: random rule sets x random dense event streams (many ties, NULL core columns, quoted
list values) get the same decisions, score and flagged from the composed SQL as from the naive
reference of every kind (tests/reference_rules.reference_decisions)."""

from __future__ import annotations

import pytest
from _ruleset_data import KIND_PARAMS, event_streams, rule_sets, run_rule_set
from hypothesis import HealthCheck, given, settings
from reference_rules import reference_decisions

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(events, rule_set):
    expected = reference_decisions(events, rule_set).sort("transaction_id")
    got = run_rule_set(events, rule_set)
    assert got.columns == expected.columns
    for col in expected.columns:
        assert got[col].to_list() == expected[col].to_list(), (col, rule_set.canonical_json())


@pytest.mark.parametrize("kind", list(KIND_PARAMS))
def test_each_kind_matches_the_reference(kind):
    @SETTINGS
    @given(events=event_streams(), rule_set=rule_sets((kind,)))
    def check(events, rule_set):
        assert_same(events, rule_set)

    check()


@SETTINGS
@given(events=event_streams(), rule_set=rule_sets())
def test_mixed_rule_sets_match_the_reference(events, rule_set):
    assert_same(events, rule_set)
