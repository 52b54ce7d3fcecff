"""The project's SQL on a real Trino 476 (tests/conftest.py starts it): flags per rule and every
analytics query equal DuckDB's, under UTC and non-UTC session zones; partition projection
prunes and reads an absent partition as empty; the Athena DDL maps one-to-one onto the Trino
DDL that ran."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import polars as pl
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from fraudlake import services
from fraudlake.contract import EVENT_SCHEMA, RULE_NAMES
from lake import trino
from lake.catalog import TableSpec, athena_ddl, trino_ddl
from queries import sql
from rules.model import RuleSet
from tests.lake._trinodata import (
    DEFAULT_SET,
    PARAM_VARIANTS,
    canonical,
    duckdb_query,
    edge_cases,
    lake_folder,
    write_partitioned,
)

RULE_COLUMNS = [*RULE_NAMES, "flagged"]
ZONES = ["UTC", "America/New_York", "Asia/Kathmandu"]  # +05:45: no whole-hour shift hides
SCHEMA = f"pytest_{uuid.uuid4().hex[:10]}"  # this module's tables; dropped at its end


@pytest.fixture(scope="module")
def lake(trino_uri):
    """Edge cases and a generated history, as hive folders below the server's lake root."""
    yield from lake_folder(services.trino_root())
    trino.execute(target(trino_uri).connect(), f"DROP SCHEMA IF EXISTS hive.{SCHEMA} CASCADE")


@pytest.fixture(scope="module")
def edges(lake):
    return write_partitioned(edge_cases(), lake / "edges")


@pytest.fixture(scope="module")
def history(lake):
    out = lake / "history"
    subprocess.run([sys.executable, "-m", "batch.generate_history", "--rows", "20000",
                    "--users", "150", "--start-year", "2023", "--end-year", "2024",
                    "--out", str(out), "--quiet"], check=True, capture_output=True)
    return out


def target(uri: str, zone: str | None = None) -> trino.TrinoTarget:
    return trino.TrinoTarget(uri=uri, timezone=zone, schema=SCHEMA)


def on_trino(uri: str, folder, name: str, params: RuleSet = DEFAULT_SET,
             zone: str | None = None, extra: dict[str, str] | None = None) -> pl.DataFrame:
    con, table = trino.open_input(target(uri, zone), str(folder))
    tree = sql.render_tree(name, params)
    bound = sql.render_values(name, params, extra)
    return pl.from_arrow(trino.run_sql(target(uri, zone), tree, table, bound, con=con))


def fired_by_rule(df: pl.DataFrame, rules) -> dict[str, list[str]]:
    return {r: sorted(df.filter(pl.col(r))["transaction_id"].to_list())
            for r in rules if r in df.columns}


@pytest.mark.parametrize("variant", sorted(PARAM_VARIANTS))
def test_edge_case_flags_equal_duckdb_per_rule(trino_uri, edges, variant):
    params = PARAM_VARIANTS[variant]
    for name in ("rules/flags", *(f"rules/{r}" for r in RULE_NAMES)):
        want = duckdb_query(edges, name, params)
        got = on_trino(trino_uri, edges, name, params, zone="America/New_York")
        assert got.height == want.height == edge_cases().height, name
        rules = [c for c in RULE_COLUMNS if c in want.columns]
        assert rules, name
        assert fired_by_rule(got, rules) == fired_by_rule(want, rules), (variant, name)
        if name == "rules/flags":
            hits = fired_by_rule(want, RULE_COLUMNS)
    if variant == "default":  # the cases really exercise the rules
        assert {"amt2", "win4", "t5", "t6", "geo_b", "dist_b"} <= set(hits["flagged"])
        assert "late4" not in hits["high_frequency"] and "near_b" not in hits["geo_mismatch"]


@pytest.mark.parametrize("zone", ZONES)
def test_history_flags_equal_duckdb_per_rule(trino_uri, history, zone):
    want = duckdb_query(history, "rules/flags")
    got = on_trino(trino_uri, history, "rules/flags", zone=zone)
    assert got.height == want.height == 20_000
    for rule in RULE_COLUMNS:
        assert fired_by_rule(got, [rule]) == fired_by_rule(want, [rule]), rule
    assert want["flagged"].sum() > 0 and all(want[r].sum() > 0 for r in RULE_NAMES)
    keys = ["transaction_id", "user_id", "ts", "is_fraud", "fraud_scenario"]
    assert canonical(got.select(keys)).equals(canonical(want.select(keys)))


@pytest.mark.parametrize("name", [n for n in sql.available() if n != "rules/flags"])
def test_every_query_equals_duckdb(trino_uri, history, name):
    want = canonical(duckdb_query(history, name, extra={"top_n": "7"}
                                  if name.endswith("top_flagged_users") else None))
    got = canonical(on_trino(trino_uri, history, name, zone="Asia/Kathmandu",
                             extra={"top_n": "7"} if name.endswith("top_flagged_users")
                             else None))
    assert got.columns == want.columns
    assert got.height == want.height > 0
    for col in want.columns:
        w, g = want[col], got[col]
        if w.dtype.is_float():
            assert (g - w).abs().max() <= 1e-9 * max(1.0, w.abs().max()), col
        else:
            assert g.cast(w.dtype).to_list() == w.to_list(), col


def test_partition_projection_prunes_and_absent_partition_is_empty(trino_uri, lake, edges):
    con, table = trino.open_input(target(trino_uri), str(edges))
    # a broken file in another month: only a pruned scan can succeed
    broken = lake / "edges_broken"
    write_partitioned(edge_cases(), broken)
    (broken / "year=2024" / "month=04" / "zz-broken.parquet").write_bytes(b"not parquet")
    con_b, table_b = trino.open_input(target(trino_uri), str(broken))
    march = trino.execute(con_b, f"SELECT count(*) AS n FROM {table_b} "  # noqa: S608
                                 "WHERE year = 2024 AND month = 3")
    assert march["n"][0].as_py() == edge_cases().filter(pl.col("ts").dt.month() == 3).height
    with pytest.raises(trino.TrinoError):
        trino.execute(con_b, f"SELECT count(*) FROM {table_b} WHERE month = 4")  # noqa: S608
    plan = trino.execute(con, f"EXPLAIN SELECT count(*) FROM {table} "  # noqa: S608
                              "WHERE year = 2024 AND month = 3").column(0)[0].as_py()
    assert "year:int:PARTITION_KEY" in plan and ":: [[2024]]" in plan and ":: [[3]]" in plan
    # a month inside the projected range without a folder: empty, as on Athena
    spec = TableSpec(SCHEMA, f"absent_{lake.name[-10:]}", EVENT_SCHEMA,
                     trino.input_location(str(edges)), (2000, 2100))
    qualified = trino.ensure_table(con, spec, "hive")
    for where in ("year = 2099 AND month = 1", "year = 2024 AND month = 3"):
        n = trino.execute(con, f"SELECT count(*) AS n FROM {qualified} "  # noqa: S608
                               f"WHERE {where}")["n"][0].as_py()
        assert n == (0 if "2099" in where else march["n"][0].as_py())


def _athena_table(ddl: str) -> dict:
    create = sqlglot.parse_one(ddl, read="hive")
    assert isinstance(create, exp.Create) and create.args["kind"] == "TABLE"
    props = create.args["properties"].expressions
    assert any(isinstance(p, exp.ExternalProperty) for p in props)
    part = next(p for p in props if isinstance(p, exp.PartitionedByProperty))
    return {
        "columns": [(c.name, c.args["kind"].sql("hive").lower().replace(" ", ""))
                    for c in create.this.expressions],
        "partitions": [(c.name, c.args["kind"].sql("hive").lower())
                       for c in part.this.expressions],
        "format": next(p for p in props if isinstance(p, exp.FileFormatProperty)).this.name,
        "location": next(p for p in props if isinstance(p, exp.LocationProperty)).this.name,
        "tblproperties": {p.this.name: p.args["value"].name for p in props
                          if type(p) is exp.Property},
    }


#: Athena (Hive DDL) type -> the Trino type the same column has in the table Trino created.
HIVE_TO_TRINO = {"string": "varchar", "bigint": "bigint", "int": "integer", "double": "double",
                 "boolean": "boolean", "timestamp": "timestamp(6)",
                 "decimal(18,2)": "decimal(18,2)"}


def test_athena_ddl_maps_one_to_one_onto_the_trino_ddl_that_ran(trino_uri, edges, lake):
    spec = TableSpec(SCHEMA, f"ddl_{lake.name[-10:]}", EVENT_SCHEMA,
                     trino.input_location(str(edges)), (2020, 2030))
    con = target(trino_uri).connect()
    trino.ensure_table(con, spec, "hive")
    athena = _athena_table(athena_ddl(spec))
    cols = trino.execute(con, "SELECT column_name, data_type FROM hive.information_schema.columns"
                              " WHERE table_schema = ? AND table_name = ?"
                              " ORDER BY ordinal_position", [SCHEMA, spec.name]).to_pylist()
    ran = [(c["column_name"], c["data_type"]) for c in cols]
    assert ran == [(n, HIVE_TO_TRINO[t]) for n, t in athena["columns"] + athena["partitions"]]
    assert athena["format"].upper() == "PARQUET" and athena["location"] == spec.location
    stored = trino.execute(con, f'SELECT * FROM hive.{SCHEMA}."{spec.name}$properties"'
                           ).to_pylist()[0]
    projection = {k: v for k, v in stored.items() if k.startswith(("projection.", "storage."))}
    assert projection == athena["tblproperties"]
    assert "partition_projection_enabled = true" in trino_ddl(spec)


@pytest.mark.parametrize("rules", ["rules/default.toml", "rules/example.toml"])
def test_backtest_backend_trino_same_report_and_flags(trino_uri, history, tmp_path, rules):
    from batch.backtest import main

    outs = {}
    for backend in ("duckdb", "trino"):
        report, flags = tmp_path / f"{backend}.json", tmp_path / f"{backend}.parquet"
        argv = ["--input", str(history), "--rules", rules, "--quiet", "--by-year",
                "--report", str(report), "--flags-out", str(flags), "--backend", backend,
                "--chunk-rows", "6000", "--trino-schema", SCHEMA]
        assert main(argv) == 0
        outs[backend] = (json.loads(report.read_text()), pq.read_table(flags))
    (duck, duck_flags), (tri, tri_flags) = outs["duckdb"], outs["trino"]
    same = ("rules", "by_year", "rows", "fraud_rows", "rule_set_id", "rule_set", "input")
    assert {k: tri[k] for k in same} == {k: duck[k] for k in same}
    assert tri["rows"] == 20_000
    for key, value in duck["density"].items():  # the same figures, summed in another order
        assert tri["density"][key] == pytest.approx(value, rel=1e-12), key
    fired = [r for r, v in duck["rules"].items() if v["flagged"] > 0]
    assert len(fired) >= len(duck["rules"]) - 2, duck["rules"]  # the history exercises them
    assert tri_flags.schema.metadata == duck_flags.schema.metadata  # fraudlake.rule_set_id
    assert tri_flags.sort_by("transaction_id").equals(duck_flags.sort_by("transaction_id"))


def test_backtest_backend_trino_counts_without_flags_out(trino_uri, history, capsys):
    from batch.backtest import BacktestConfig, run_backtest

    cfg = BacktestConfig(input=str(history), progress=False, chunk_rows=7000)
    duck = run_backtest(cfg)
    tri = run_backtest(BacktestConfig(input=str(history), progress=False, chunk_rows=7000,
                                      backend="trino", trino=target(trino_uri)))
    assert tri.engine == "trino" and tri.chunks == 3
    assert tri.overall == duck.overall


def test_queries_cli_backend_trino_same_csv(trino_uri, history, tmp_path, capsys):
    from queries.__main__ import main

    for name in ("scenario_mix_by_year", "top_flagged_users"):
        texts = []
        for backend in ("duckdb", "trino"):
            out = tmp_path / f"{name}-{backend}.csv"
            assert main([name, "--input", str(history), "--format", "csv", "--out", str(out),
                         "--param", "top_n=3", "--backend", backend, "--trino-schema", SCHEMA]
                        if name == "top_flagged_users" else
                        [name, "--input", str(history), "--format", "csv", "--out", str(out),
                         "--backend", backend, "--trino-schema", SCHEMA]) == 0
            texts.append(pl.read_csv(out))
        assert texts[0].equals(texts[1]), name
    # without --input: the table named by --table (here the one the last run created)
    _, table = trino.open_input(target(trino_uri), str(history))
    out = tmp_path / "by-table.csv"
    assert main(["daily_volume", "--backend", "trino", "--table", table, "--format", "csv",
                 "--out", str(out)]) == 0
    assert pl.read_csv(out)["transactions"].sum() == 20_000


def test_input_folder_with_quotes_in_its_name_is_read_not_executed(trino_uri, lake, edges):
    """A local --input's location goes into Trino DDL text: quoted, it stays one literal."""
    odd = lake / "it's \"odd\"; DROP SCHEMA x --"
    write_partitioned(edge_cases(), odd)
    got = on_trino(trino_uri, odd, "analytics/daily_volume")
    want = duckdb_query(edges, "analytics/daily_volume")
    assert canonical(got).drop("amount_mean").equals(canonical(want).drop("amount_mean"))
