"""queries.sql (loading, binding, Athena rendering) and the `python -m queries` CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import sqlglot

from queries import sql
from tests.queries._rules_sql import DEFAULT, event, frame, run_sql
from tests.reference_rules import reference_decisions

ROOT = Path(__file__).resolve().parents[2]


def reference_flags(events):
    return reference_decisions(events, DEFAULT)


def test_every_query_has_a_header_and_select_from_final():
    names = sql.available()
    assert {"rules/flags", "rules/high_amount", "rules/high_frequency", "rules/unusual_hour",
            "rules/geo_mismatch", "analytics/daily_volume", "analytics/fraud_rate_by_category",
            "analytics/fraud_rate_by_local_hour", "analytics/top_flagged_users",
            "analytics/scenario_mix_by_year"} <= set(names)
    for name in names:
        text = sql.load_sql(name)
        assert text.startswith("-- One row per"), name
        assert "select * from final" in text, name


@pytest.mark.parametrize("name", sql.available())
@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_athena_rendering_parses_with_positional_parameters(name, dialect):
    text, order = sql.render_athena(name, "fraudlake.live", dialect=dialect)
    tree = sqlglot.parse_one(text, read=dialect)
    placeholders = list(tree.find_all(sqlglot.exp.Placeholder))
    assert len(placeholders) == len(order) == text.count("?")
    assert "epoch_us" not in text.lower()
    assert "$" not in re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    tables = {t.sql(dialect=dialect) for t in tree.find_all(sqlglot.exp.Table)}
    assert "fraudlake.live" in tables and "transactions" not in tables
    values = sql.render_values(name)
    assert set(order) == set(values)
    own = set(sql.param_names(sql.load_sql(name)))
    assert own <= set(order)


def test_athena_parameter_order_follows_the_text():
    text, order = sql.render_athena("high_amount")
    assert order == ["high_amount_threshold"]
    text, order = sql.render_athena("top_flagged_users")
    assert order[-1] == "top_n" and text.rstrip().endswith("final")
    assert sql.render_athena("flags")[0].count("?") == len(sql.render_athena("flags")[1])


def test_bind_only_what_the_query_uses():
    text = sql.load_sql("high_amount")
    assert sql.bind(text) == {"high_amount_threshold": "1000.00"}
    with pytest.raises(sql.QueryError, match="no parameter 'top_n'"):
        sql.bind(text, extra={"top_n": "3"})
    top = sql.load_sql("top_flagged_users")
    assert sql.bind(top)["top_n"] == 20 and sql.bind(top, extra={"top_n": "3"})["top_n"] == 3
    with pytest.raises(sql.QueryError, match="unknown query"):
        sql.resolve_name("nope")
    assert sql.resolve_name("flags.sql") == sql.resolve_name("rules/flags") == "rules/flags"


def events_sample() -> list[dict]:
    return [event("a", user=1, amount="5000.00", is_fraud=True, fraud_scenario="big_ticket"),
            event("b", user=1, lon=5.0, seconds=30, is_fraud=True,
                  fraud_scenario="account_takeover"),
            event("c", user=2, seconds=86400, is_fraud=False),
            event("d", user=3, seconds=3 * 3600 - 43200, is_fraud=False)]  # 03:00 UTC


def test_analytics_over_a_small_frame():
    events = events_sample()
    daily = run_sql(events, name="daily_volume")
    assert daily["transactions"].to_list() == [3, 1]
    assert daily["fraud_transactions"].to_list() == [2, 0]
    assert str(daily["amount_total"][0]) == "5020.00"
    hours = run_sql(events, name="fraud_rate_by_local_hour")
    assert dict(zip(hours["local_hour"], hours["transactions"], strict=True)) == {3: 1, 12: 3}
    mix = run_sql(events, name="scenario_mix_by_year")
    assert mix["share_of_year_fraud"].sum() == pytest.approx(1.0)
    top = run_sql(events, name="top_flagged_users", extra={"top_n": "1"})
    ref = reference_flags(events)
    assert top["user_id"].to_list() == [1] and top["flagged_transactions"][0] == 2
    assert top["geo_mismatch"][0] == ref.filter(pl.col("transaction_id") == "b")[
        "geo_mismatch"].sum()
    no_labels = run_sql(frame(events).drop("is_fraud", "fraud_scenario"), name="daily_volume")
    assert no_labels["fraud_transactions"].null_count() == 2


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queries", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_and_writes(tmp_path):
    events = events_sample()
    src = tmp_path / "small.parquet"  # a plain file, no partition folders
    frame(events).write_parquet(src)
    out = tmp_path / "o" / "flags.parquet"
    res = cli("flags", "--input", str(src), "--format", "parquet", "--out", str(out))
    assert res.returncode == 0, res.stderr
    got = pl.read_parquet(out).sort("transaction_id")
    assert got["flagged"].to_list() == reference_flags(events).sort("transaction_id")[
        "flagged"].to_list()
    res = cli("high_amount", "--input", str(src), "--format", "csv",
              "--set", "high_amount.threshold=10000")
    assert res.returncode == 0 and res.stdout.splitlines()[0].startswith('"transaction_id"')
    assert "true" not in res.stdout.lower().split("high_amount", 1)[1]
    res = cli("top_flagged_users", "--input", str(src), "--param", "top_n=1")
    assert res.returncode == 0 and "flagged_transactions" in res.stdout
    res = cli("daily_volume", "--dialect", "athena", "--table", "fraudlake.live")
    assert res.returncode == 0 and "fraudlake.live" in res.stdout
    assert cli("--list").stdout.split() == sql.available()


@pytest.mark.parametrize("args, needle", [
    (["nope", "--input", "x"], "unknown query"),
    (["flags"], "--input is required"),
    (["flags", "--input", "/nonexistent"], "not found"),
    (["flags", "--input", "{src}", "--set", "x.y=1"], "unknown rule 'x'"),
    (["flags", "--input", "{src}", "--set", "high_amount.y=1"], "unknown parameter 'y'"),
    (["flags", "--input", "{src}", "--set", "high_amount.threshold=1.001"], "high_amount"),
    (["flags", "--input", "{src}", "--rules", "/nonexistent.toml"], "no such rule set file"),
    (["flags", "--input", "{src}", "--param", "top_n=1"], "no parameter"),
    (["flags", "--input", "{src}", "--param", "oops"], "bad --param"),
    (["flags", "--input", "{src}", "--format", "parquet"], "needs --out"),
    (["flags", "--dialect", "athena", "--table", "bad table;"], "bad table"),
    (["flags", "--format", "xml"], "invalid choice"),
])
def test_cli_bad_input(tmp_path, args, needle):
    src = tmp_path / "small.parquet"
    frame(events_sample()).write_parquet(src)
    res = cli(*[str(src) if a == "{src}" else a for a in args])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], res.stderr


# --- rule sets (v2) ---------------------------------------------------------------------------

EXAMPLE = ROOT / "rules" / "example.toml"


def test_example_rule_set_is_packaged_and_uses_every_kind():
    from importlib import resources

    from rules.model import KINDS, load_rule_set

    packaged = resources.files("rules")
    assert packaged.joinpath("example.toml").is_file()
    assert packaged.joinpath("lists", "blocked_merchants.txt").is_file()
    example = load_rule_set(EXAMPLE)
    kinds = [r.kind for r in example.rules]
    assert len(example.rules) >= 10 and set(kinds) == set(KINDS)
    assert kinds.count("velocity_count") >= 2 and example.alert_threshold > 1
    assert any(r.kind == "velocity_count" and r.params["max_amount"] for r in example.rules)
    assert any(r.scoped for r in example.rules)
    assert len({r.weight for r in example.rules}) > 1
    assert all(resources.files("queries").joinpath("kinds", f"{k}.sql").is_file() for k in KINDS)


def test_cli_flags_with_a_rule_set(tmp_path):
    import pyarrow.parquet as pq

    from rules.model import load_rule_set
    from tests.queries._ruleset_data import event as rich_event
    from tests.queries._ruleset_data import frame as rich_frame

    events = [rich_event("a", amount="3000.00", channel="online", merchant_id="M0000042"),
              rich_event("b", seconds=1, amount="1.00", country="KP"),
              rich_event("c", seconds=2, amount="2.00", channel="online", device_id="d1")]
    src = tmp_path / "rich.parquet"
    rich_frame(events).write_parquet(src)
    out = tmp_path / "flags.parquet"
    res = cli("flags", "--rules", str(EXAMPLE), "--set", "alert_threshold=1", "--input", str(src),
              "--format", "parquet", "--out", str(out))
    assert res.returncode == 0, res.stderr
    rule_set = load_rule_set(EXAMPLE, ["alert_threshold=1"])
    got = pl.read_parquet(out).select("transaction_id", *rule_set.rule_ids, "score", "flagged")
    got = got.sort("transaction_id")
    assert got.equals(reference_decisions(events, rule_set).sort("transaction_id"))
    assert got["flagged"].to_list()[:2] == [True, True]  # big amount + blocked, sanctioned
    assert pq.read_schema(out).metadata[b"fraudlake.rule_set_id"] == rule_set.id.encode()


@pytest.mark.parametrize("dialect", ["athena", "trino"])
def test_athena_rendering_of_a_rule_set_binds_everything(tmp_path, dialect):
    rules = tmp_path / "r.toml"
    rules.write_text('version = "t-1"\n[[rule]]\nid = "odd"\nkind = "in_list"\n'
                     'field = "city"\nvalues = ["a\\nDROP TABLE x; --", "b*/c", "what?", '
                     '"it\'s"]\n[[rule]]\nid = "fast"\nkind = "velocity_count"\n'
                     'window_seconds = 60\ncount = 3\nchannels = ["online"]\n')
    res = cli("flags", "--rules", str(rules), "--dialect", dialect)
    assert res.returncode == 0, res.stderr
    text, _, trailer = res.stdout.partition(";\n")
    tree = sqlglot.parse_one(text, read=dialect)
    assert len(list(tree.find_all(sqlglot.exp.Placeholder))) == text.count("?")
    for value in ("DROP", "b*/c", "what", "it's", "60"):
        assert value not in text
    assert [c.alias_or_name for c in tree.selects][-4:] == ["odd", "fast", "score", "flagged"]
    assert all(line.startswith("-- ") for line in trailer.splitlines())
    assert "DROP TABLE x" in trailer and "t-1@" in trailer


def test_bad_rule_file_is_one_line_naming_file_rule_and_problem(tmp_path):
    rules = tmp_path / "bad.toml"
    rules.write_text('version = "b-1"\n[[rule]]\nid = "big"\nkind = "amount_over"\n'
                     'threshold = "100"\nspeed = 3\n')
    res = cli("flags", "--rules", str(rules), "--dialect", "athena")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert str(rules) in lines[0] and "'big'" in lines[0] and "'speed'" in lines[0]
