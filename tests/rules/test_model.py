"""The rule-set model: parsing, validation messages, canonical id, overrides, weight units."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rules.model import RuleSetError, load_rule_set, parse_rule_set
from tests.reference_rules import reference_decisions, reference_flags

HEAD = 'version = "t-1"\n'


def _one(rule: str, head: str = HEAD) -> str:
    return f"{head}[[rule]]\n{rule}\n"


def test_default_is_v1() -> None:
    rs = load_rule_set()
    assert rs.rule_ids == ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")
    assert rs.rule("geo_mismatch").params["min_hours"] == 1 / 60
    assert rs.rule("high_amount").params["threshold"] == Decimal("1000.00")
    assert rs.weight_units() == ((1, 1, 1, 1), 1, 1)
    assert rs.id.startswith("default-1@") and len(rs.id) == len("default-1@") + 12


def test_same_meaning_same_id(tmp_path: Path) -> None:
    a = parse_rule_set(_one('id = "a"\nkind = "amount_over"\nthreshold = "1000.00"'))
    b = parse_rule_set(_one('id = "a"\nkind = "amount_over"\nthreshold = 1000\nweight = "1.0"',
                            head='version = "t-1"\nalert_threshold = 1.00\n'))
    assert a.id == b.id
    c = parse_rule_set(_one('id = "a"\nkind = "amount_over"\nthreshold = "1000.01"'))
    assert c.id != a.id
    (tmp_path / "l.txt").write_text("# blocked\n b2 \n\nb1\nb2\n")
    f = parse_rule_set(_one('id = "l"\nkind = "in_list"\nfield = "merchant_id"\nfile = "l.txt"'),
                       base_dir=tmp_path)
    v = parse_rule_set(_one('id = "l"\nkind = "in_list"\nfield = "merchant_id"\n'
                            'values = ["b1", "b2"]'))
    assert f.id == v.id and f.rule("l").params["values"] == ("b1", "b2")


def test_version_is_a_label_only() -> None:
    a = parse_rule_set(_one('id = "a"\nkind = "amount_over"\nthreshold = "1"'))
    b = parse_rule_set(_one('id = "a"\nkind = "amount_over"\nthreshold = "1"',
                            head='version = "other"\n'))
    assert a.id.split("@")[1] == b.id.split("@")[1]


@pytest.mark.parametrize("rule, problem", [
    ('id = "a"\nkind = "nope"', "unknown kind"),
    ('id = "a"\nkind = "amount_over"', "missing parameter 'threshold'"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "1"\nspeed = 3', "unknown parameter 'speed'"),
    ('id = "A"\nkind = "amount_over"\nthreshold = "1"', "id must match"),
    ('id = "score"\nkind = "amount_over"\nthreshold = "1"', "reserved"),
    ('id = "shadow_x"\nkind = "amount_over"\nthreshold = "1"', "reserved"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "nan"', "finite"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "1.001"', "at most 2 decimal places"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "-1"', ">= 0"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "1"\nweight = 0', "> 0"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "1"\nchannels = []', "empty list"),
    ('id = "a"\nkind = "amount_over"\nthreshold = "1"\nchannels = ["web"]', "unknown channel"),
    ('id = "a"\nkind = "velocity_count"\nwindow_seconds = 1.5\ncount = 2', "whole number"),
    ('id = "a"\nkind = "velocity_count"\nwindow_seconds = true\ncount = 2', "number"),
    ('id = "a"\nkind = "amount_vs_history"\nratio = "3"\nhistory = 5\nmin_history = 6',
     "min_history (6) must be <= history (5)"),
    ('id = "a"\nkind = "impossible_travel"\ndistance_km = 1\nspeed_kmh = 1\nmin_hours = 0',
     "min_hours must be > 0"),
    ('id = "a"\nkind = "in_list"\nfield = "merchant_id"', "exactly one of values"),
    ('id = "a"\nkind = "in_list"\nfield = "user_id"\nvalues = ["1"]', "field must be one of"),
    ('id = "a"\nkind = "in_list"\nfield = "card_last4"\nvalues = [42]', "must hold strings"),
    ('id = "a"\nkind = "in_list"\nfield = "city"\nfile = "missing.txt"', "no such list file"),
])
def test_bad_rule_is_one_line_naming_file_rule_and_problem(rule: str, problem: str,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_one(rule))
    with pytest.raises(RuleSetError) as info:
        load_rule_set(path)
    message = str(info.value)
    assert "\n" not in message and problem in message and str(path) in message
    assert "rule " in message


@pytest.mark.parametrize("text, problem", [
    ("version = 'x'\n[[rule]]\nid = 'a'\nkind = 'amount_over'\nthreshold = '1'\n"
     "[[rule]]\nid = 'a'\nkind = 'amount_over'\nthreshold = '2'\n", "duplicate id"),
    ("version = 'x'\n", "at least one [[rule]]"),
    ("[[rule]]\nid = 'a'\nkind = 'amount_over'\nthreshold = '1'\n", "version must be"),
    ("version = 'x'\nalert_threshold = -1\n[[rule]]\nid = 'a'\nkind = 'amount_over'\n"
     "threshold = '1'\n", "alert_threshold must be > 0"),
    ("version = 'x'\nbogus = 1\n", "unknown key 'bogus'"),
    ("version = = 'x'\n", "not valid TOML"),
])
def test_bad_set(text: str, problem: str) -> None:
    with pytest.raises(RuleSetError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        parse_rule_set(text, "f.toml")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="no such rule set file"):
        load_rule_set(tmp_path / "none.toml")


def test_overrides() -> None:
    rs = load_rule_set(overrides=["high_amount.threshold=2500", "high_frequency.weight=0.5",
                                  "alert_threshold=1.5", "unusual_hour.channels=pos,atm"])
    assert rs.rule("high_amount").params["threshold"] == Decimal("2500")
    assert rs.weight_units() == ((10, 5, 10, 10), 15, 10)
    assert rs.rule("unusual_hour").channels == ("atm", "pos")
    assert rs.id != load_rule_set().id
    for bad, problem in [("nope.threshold=1", "unknown rule 'nope'"),
                         ("high_amount.speed=1", "unknown parameter 'speed'"),
                         ("high_amount.threshold=nan", "finite"),
                         ("high_amount.threshold=1e400", "at most 2 decimal places|<="),
                         ("geo_mismatch.min_hours=nan", "finite"),
                         ("geo_mismatch.distance_km=-1", ">= 0"),
                         ("high_frequency.count=0", ">= 1"),
                         ("high_amount", "expected RULE_ID.PARAM=VALUE")]:
        with pytest.raises(RuleSetError, match=problem):
            load_rule_set(overrides=[bad])


def test_round_trip_through_dict() -> None:
    rs = load_rule_set(overrides=["high_amount.weight=0.25"])
    again = type(rs).from_dict(rs.to_dict(), "x")
    assert again.id == rs.id and again.rules == rs.rules


def _random_events(rng: random.Random, n: int) -> list[dict]:
    base = datetime(2024, 3, 1, tzinfo=UTC)
    return [{"transaction_id": f"t{i:05d}", "user_id": rng.randint(1, 4),
             "ts": base + timedelta(seconds=rng.choice([0, 5, 30, 59, 60, 61, 3600, 7200])
                                    * rng.randint(0, 6)),
             "amount": Decimal(rng.choice(["1.00", "999.99", "1000.00", "1000.01", "50.00"])),
             "lat": rng.uniform(-60, 60), "lon": rng.uniform(-170, 170),
             "utc_offset_min": rng.choice([-300, 0, 60, 330])} for i in range(n)]


def test_reference_of_default_set_equals_v1_reference() -> None:
    rng = random.Random(7)
    events = _random_events(rng, 400)
    v2 = reference_decisions(events, load_rule_set())
    v1 = reference_flags(events)
    assert v2.drop("score").equals(v1)
    assert v2["flagged"].sum() > 0 and (v2["score"] >= 1).sum() == v2["flagged"].sum()
