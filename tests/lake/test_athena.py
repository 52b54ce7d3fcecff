"""lake.athena: the DDL and rendered queries parse as Athena SQL and match the synced layout."""

from __future__ import annotations

from pathlib import PurePosixPath

import polars as pl
import pytest
import sqlglot
from sqlglot import exp

from fraudlake.cli import run
from fraudlake.contract import EVENT_SCHEMA, LAKE_SCHEMA
from lake.athena import athena_type, main, query_names, render_all
from lake.layout import partition_dir
from lake.s3 import S3Location
from lake.sync import scan_source

LOCATION = S3Location("my-bucket", "fraud/lake")


def _parse(sql: str) -> exp.Expression:
    statements = [s for s in sqlglot.parse(sql, read="athena") if s is not None]
    assert len(statements) == 1
    return statements[0]


def _table(sql: str) -> dict:
    """Name, columns, partitions, location and TBLPROPERTIES of a parsed CREATE TABLE."""
    create = _parse(sql)
    assert isinstance(create, exp.Create) and create.args["kind"] == "TABLE"
    props = create.args["properties"].expressions
    assert any(isinstance(p, exp.ExternalProperty) for p in props)
    fmt = next(p for p in props if isinstance(p, exp.FileFormatProperty))
    part = next(p for p in props if isinstance(p, exp.PartitionedByProperty))
    return {
        "name": f"{create.this.this.args['db'].name}.{create.this.this.name}",
        "columns": {c.name: c.args["kind"].sql("hive").lower() for c in create.this.expressions},
        "partitions": {c.name: c.args["kind"].sql("hive").lower()
                       for c in part.this.expressions},
        "format": fmt.this.name.upper(),
        "location": next(p for p in props if isinstance(p, exp.LocationProperty)).this.name,
        "tblproperties": {p.this.name: p.args["value"].name for p in props
                          if type(p) is exp.Property},
    }


@pytest.fixture(scope="module")
def ddl() -> dict[str, str]:
    return render_all(LOCATION, "fraudlake", with_queries=False)


def test_database_and_two_external_tables(ddl):
    assert sorted(ddl) == ["ddl/00_database.sql", "ddl/10_history.sql", "ddl/20_live.sql",
                           "trino/00_schema.sql", "trino/10_history.sql", "trino/20_live.sql"]
    db = _parse(ddl["ddl/00_database.sql"])
    assert isinstance(db, exp.Create) and db.args["kind"] == "DATABASE" and db.this.name == \
        "fraudlake"
    history, live = _table(ddl["ddl/10_history.sql"]), _table(ddl["ddl/20_live.sql"])
    assert history["name"] == "fraudlake.history" and live["name"] == "fraudlake.live"
    assert history["location"] == "s3://my-bucket/fraud/lake/historical/"
    assert live["location"] == "s3://my-bucket/fraud/lake/lake/transactions/"
    for t in (history, live):
        assert t["format"] == "PARQUET"
        assert t["partitions"] == {"year": "int", "month": "int"}


def test_columns_come_from_the_contract(ddl):
    history, live = _table(ddl["ddl/10_history.sql"]), _table(ddl["ddl/20_live.sql"])
    assert list(history["columns"]) == list(EVENT_SCHEMA)
    assert list(live["columns"]) == list(LAKE_SCHEMA)
    assert history["columns"]["amount"] == "decimal(18, 2)"
    assert history["columns"]["ts"] == "timestamp"
    assert history["columns"]["user_id"] == "bigint"
    assert history["columns"]["utc_offset_min"] == "int"
    assert live["columns"]["flagged"] == "boolean" and live["columns"]["score"] == "double"
    assert live["columns"]["rules_fired"] == "array<string>"  # lake v2
    assert athena_type(pl.Decimal(18, 2)) == "decimal(18,2)"
    with pytest.raises(ValueError, match="no Athena type"):
        athena_type(pl.List(pl.Object()))


def test_partition_projection_matches_the_synced_keys(ddl, tmp_path):
    props = _table(ddl["ddl/10_history.sql"])["tblproperties"]
    assert props["projection.enabled"] == "true"
    assert props["projection.year.type"] == "integer" and props["projection.year.range"] == \
        "2000,2100"
    assert props["projection.month.type"] == "integer"
    assert props["projection.month.range"] == "1,12" and props["projection.month.digits"] == "2"
    template = props["storage.location.template"]
    # The key lake.sync gives a local history file must be exactly where the template points.
    part = tmp_path / "historical" / partition_dir(2024, 3) / "part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x")
    (synced,) = scan_source(tmp_path / "historical", LOCATION, now=1e12, settle_seconds=0).ready
    folder = template.replace("${year}", "2024").replace("${month}", "03")
    assert f"s3://{synced.remote}" == folder + "part-0.parquet"
    assert str(PurePosixPath(folder)).endswith(partition_dir(2024, 3))


def test_cli_writes_ddl_with_configurable_years_and_database(tmp_path):
    out = tmp_path / "athena"
    assert main(["--location", "s3://b-1/p/", "--database", "fraud_test", "--out", str(out),
                 "--years", "2010,2030", "--no-queries"]) == 0
    live = _table((out / "ddl/20_live.sql").read_text())
    assert live["name"] == "fraud_test.live" and live["location"] == "s3://b-1/p/lake/transactions/"
    assert live["tblproperties"]["projection.year.range"] == "2010,2030"
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("argv, message", [
    (["--location", "b/p"], "not an s3:// URI"),
    (["--location", "s3://b-1/p", "--database", "Bad-Name"], "bad database name"),
    (["--location", "s3://b-1/p", "--years", "2100,2000"], "--years"),
    (["--location", "s3://b-1/p", "--years", "soon"], "--years"),
    ([], "no location"),
])
def test_cli_bad_input_one_line_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FRAUDLAKE_S3_URI", raising=False)
    out = tmp_path / "never"
    assert run(main, [*argv, "--out", str(out), "--no-queries"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_every_query_renders_as_athena_sql_with_ordered_parameters(tmp_path):
    names = query_names()
    assert any(n.startswith("rules/") for n in names), "no rule queries found"
    files = render_all(LOCATION, "fraudlake")
    rendered = {k: v for k, v in files.items() if k.startswith("queries/")}
    assert sorted(rendered) == sorted(f"queries/{n}.sql" for n in names)
    for path, sql in rendered.items():
        tree = _parse(sql)
        assert isinstance(tree, exp.Query | exp.Select | exp.Union), path
        header = [ln for ln in sql.splitlines() if ln.startswith("--   ")]
        placeholders = list(tree.find_all(exp.Placeholder))
        if header != ["--   (none)"]:
            assert len(header) == len(placeholders), path
        else:
            assert placeholders == [], path
        tables = {f"{t.db}.{t.name}" for t in tree.find_all(exp.Table) if t.db}
        assert tables <= {"fraudlake.history", "fraudlake.live"}, (path, tables)
        code = tree.sql("athena", comments=False).lower()
        assert "read_parquet" not in code and "$" not in code, path  # no DuckDB-isms left
    assert main(["--location", LOCATION.uri(), "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "queries").rglob("*.sql"))) == len(names)
