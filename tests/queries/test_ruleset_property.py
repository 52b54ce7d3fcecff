"""Property: random rule sets x random dense event streams (many ties, NULL core columns, quoted
list values) get the same decisions, score and flagged from the composed SQL as from the naive
reference of every kind (tests/reference_rules.reference_decisions)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from queries.compose import compose_flags
from tests.queries._ruleset_data import KIND_PARAMS, WORDS, event_streams, rule_sets, run_rule_set
from tests.reference_rules import reference_decisions

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


@SETTINGS
@given(rule_set=rule_sets())
def test_nothing_from_the_rule_file_is_in_the_sql_text(rule_set):
    query = compose_flags(rule_set)
    assert "rule_" not in query.sql  # the ids (rule_0 ...) only name output columns
    quoted = [w for w in WORDS if any(c in w for c in "'\";")]
    assert len(quoted) == 4 and not any(w in query.sql for w in quoted)
    assert all(f"${name}" in query.sql for name in query.params)
