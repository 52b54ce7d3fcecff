"""queries.trino_sql and lake.trino without a server: the DuckDB -> Trino rewrites, parameter
order, inputs Trino cannot read, and the CLI's one-line errors."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from lake import trino
from lake.catalog import TableSpec, athena_ddl, trino_ddl
from queries import sql
from queries.trino_sql import positional, staging_sql, to_trino
from rules.model import load_rule_set


def test_rewrites_nested_integer_division_microsecond_diff_and_epoch():
    r = to_trino("select (a // 60) // 24 as h, date_diff('microsecond', p, ts) as d, "
                 "epoch_us(ts) as e, avg(amount) as m from transactions", "s.t")
    text = r.sql.upper()
    assert "//" not in text and "TRUNCATE" not in text and "MICROSECOND" not in text
    assert text.count("TO_UNIXTIME") == 3 and "ROUND(" in text
    assert "CAST(SUM(AMOUNT) AS DOUBLE) / COUNT(AMOUNT)" in text
    assert "WITH_TIMEZONE(TS, 'UTC')" in text and "FROM S.T" in text
    sqlglot.parse_one(r.sql, read="trino")


def test_parameter_order_includes_the_staging_filter():
    text = "select * from transactions where amount > $high_amount_threshold limit $top_n"
    r = to_trino(text, "c.s.t", where="user_id % $n = $k")
    assert r.order == ("n", "k", "high_amount_threshold", "top_n")
    assert r.sql.count("?") == 4
    assert positional(r.order, {"n": 4, "k": 1, "high_amount_threshold": 1, "top_n": 2}) == [
        4, 1, 1, 2]


def test_every_project_query_renders_and_parses_as_trino():
    extra = {"top_n": "3"}
    for rules in (None, "rules/example.toml"):
        rule_set = load_rule_set(rules)
        # the single-rule files name the default set's rule ids
        names = [n for n in sql.available() if rules is None or not n.startswith("rules/")
                 or n == sql.FLAGS_QUERY]
        for name in names:
            r = to_trino(sql.render_tree(name, rule_set), "hive.fraudlake.history")
            tree = sqlglot.parse_one(r.sql, read="trino")
            assert len(list(tree.find_all(exp.Placeholder))) == len(r.order), name
            given = extra if name.endswith("top_flagged_users") else None
            assert set(r.order) == set(sql.render_values(name, rule_set, given)), name


def test_bad_table_names_are_refused():
    for bad in ("a;drop", "x.y.z.w", "1t"):
        try:
            staging_sql(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_unpartitioned_spec_has_no_projection():
    spec = TableSpec("db", "t", {"a": __import__("polars").Int64()}, "s3://b/p/",
                     partitioned=False)
    assert "PARTITIONED" not in athena_ddl(spec) and "TBLPROPERTIES" not in athena_ddl(spec)
    assert "partitioned_by" not in trino_ddl(spec) and "external_location = 's3://b/p/'" in \
        trino_ddl(spec)


def test_input_outside_the_lake_root_is_exit_2(tmp_path, capsys, monkeypatch):
    from batch.backtest import main

    monkeypatch.setenv("FRAUDLAKE_TRINO_ROOT", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    outside = tmp_path / "elsewhere"
    (outside / "year=2024" / "month=01").mkdir(parents=True)
    assert main(["--input", str(outside), "--backend", "trino", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not under the Trino server's lake root" in err[0]


def test_unreachable_trino_is_exit_1_and_names_no_password(tmp_path, capsys, monkeypatch):
    from queries.__main__ import main
    from tests.lake._trinodata import edge_cases, write_partitioned

    write_partitioned(edge_cases(), tmp_path)
    monkeypatch.setenv("FRAUDLAKE_TRINO_ROOT", str(tmp_path))
    monkeypatch.setenv("TRINO_URI", "https://someone@127.0.0.1:9")
    monkeypatch.setenv("TRINO_PASSWORD", "s3cret-value")
    assert main(["daily_volume", "--input", str(tmp_path), "--backend", "trino"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "unreachable" in err
    assert "s3cret-value" not in err
    assert "s3cret-value" not in repr(trino.TrinoTarget())


def test_a_parsed_tree_renders_like_its_text():
    text = sql.load_sql("rules/flags", load_rule_set("rules/example.toml"))
    tree = sqlglot.parse_one(text, read="duckdb")
    assert to_trino(tree, "s.t") == to_trino(text, "s.t")
    assert tree.sql(dialect="duckdb") == sqlglot.parse_one(text, read="duckdb").sql(
        dialect="duckdb")  # the caller's tree is not modified


@pytest.mark.parametrize("argv, problem", [
    (["--trino-schema", "x; drop schema y"], "Trino schema"),
    (["--trino-schema", 'a"b'], "Trino schema"),
    (["--trino-catalog", "Hive"], "Trino catalog"),
    (["--table", "a.b'; drop"], "bad table name"),
])
def test_names_written_into_trino_sql_are_checked(argv, problem, capsys):
    from queries.__main__ import main

    assert main(["daily_volume", "--backend", "trino", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0]


def test_what_if_options_refuse_the_trino_backend(capsys):
    from batch.backtest import main

    assert main(["--input", "storage", "--backend", "trino", "--value", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--backend trino" in err[0]
