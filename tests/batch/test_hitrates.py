"""Hit-rate arithmetic over hand-built flags frames."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from batch.hitrates import (
    CountsError,
    count_flags,
    counts_schema,
    format_table,
    hit_rates,
    hit_rates_by_year,
    normalize_counts,
)

RULES = ["high_amount", "high_frequency", "unusual_hour", "geo_mismatch"]


def flags_frame(rows: list[tuple]) -> pl.DataFrame:
    """rows: (year, is_fraud, scenario, high_amount, high_frequency) ; other rules False."""
    return pl.DataFrame(
        [{"transaction_id": f"t{i}", "ts": datetime(y, 6, 1, tzinfo=UTC), "is_fraud": f,
          "fraud_scenario": s, "high_amount": a, "high_frequency": h, "unusual_hour": False,
          "geo_mismatch": False, "flagged": a or h} for i, (y, f, s, a, h) in enumerate(rows)])


ROWS = [
    (2020, True, "card_testing", False, True),
    (2020, True, "card_testing", False, False),
    (2020, True, "big_ticket", True, False),
    (2020, True, None, True, True),
    (2020, False, None, True, False),
    (2021, False, None, False, True),
    (2021, False, None, False, False),
    (2021, False, None, False, False),
    (2021, False, None, False, False),
    (2021, False, None, False, False),
]


def test_counts_and_overall_rates():
    rates = hit_rates(count_flags(flags_frame(ROWS), RULES))
    assert rates.rows == 10 and rates.fraud_rows == 4
    ha = rates.rules["high_amount"]
    assert ha.flagged == 3 and ha.flag_rate == pytest.approx(0.3)
    assert ha.precision == pytest.approx(2 / 3) and ha.recall == pytest.approx(2 / 4)
    assert ha.recall_by_scenario == {"big_ticket": 1.0, "card_testing": 0.0}
    hf = rates.rules["high_frequency"]
    assert (hf.flagged, hf.precision, hf.recall) == (3, pytest.approx(2 / 3), 0.5)
    assert hf.recall_by_scenario == {"big_ticket": 0.0, "card_testing": 0.5}
    anyrule = rates.rules["flagged"]
    assert anyrule.flagged == 5 and anyrule.recall == pytest.approx(3 / 4)
    assert anyrule.precision == pytest.approx(3 / 5)
    ur = rates.rules["unusual_hour"]
    assert ur.flagged == 0 and ur.precision is None and ur.recall == 0.0
    assert list(rates.rules) == [*RULES, "flagged"]


def test_by_year_splits_rows():
    by_year = hit_rates_by_year(count_flags(flags_frame(ROWS), RULES))
    assert list(by_year) == [2020, 2021]
    assert by_year[2020].rows == 5 and by_year[2021].rows == 5
    assert by_year[2021].fraud_rows == 0 and by_year[2021].rules["flagged"].recall is None
    assert by_year[2021].rules["high_frequency"].precision == 0.0


def test_without_labels_precision_and_recall_are_none():
    frame = flags_frame(ROWS).drop("is_fraud", "fraud_scenario")
    rates = hit_rates(count_flags(frame, RULES))
    assert rates.fraud_rows is None
    assert all(h.precision is None and h.recall is None and h.recall_by_scenario == {}
               for h in rates.rules.values())
    assert rates.rules["flagged"].flagged == 5
    assert "n/a" in format_table(rates)


def test_chunk_counts_sum_like_one_frame():
    frame = flags_frame(ROWS)
    whole = count_flags(frame, RULES)
    parts = normalize_counts(pl.concat([count_flags(frame[:3], RULES),
                                        count_flags(frame[3:7], RULES),
                                        count_flags(frame[7:], RULES)]), RULES)
    assert parts.equals(whole)
    assert hit_rates(parts) == hit_rates(whole)


def test_empty_counts():
    rates = hit_rates(count_flags(flags_frame(ROWS).head(0), RULES))
    assert rates.rows == 0 and rates.rules["flagged"].flag_rate == 0.0


def test_counts_frame_follows_the_rule_ids_in_file_order():
    frame = flags_frame(ROWS).rename({"high_amount": "z_big", "high_frequency": "a_fast"})
    ids = ["z_big", "a_fast", "unusual_hour", "geo_mismatch"]
    counts = count_flags(frame, ids)
    assert counts.columns == ["year", "is_fraud", "fraud_scenario", "rows", *ids, "flagged"]
    assert list(hit_rates(counts).rules) == [*ids, "flagged"]
    assert normalize_counts(pl.DataFrame(), ids).columns == counts.columns


def test_rule_id_rows_is_refused():
    with pytest.raises(CountsError, match="'rows'"):
        counts_schema(["rows"])
