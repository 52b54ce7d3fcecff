"""The lake after ``lake.sync`` to S3 (moto), read by Trino through the Trino DDL rendered from
the same table description as the Athena DDL: flags and analytics equal DuckDB's over the local
files, for the history and the live lake, and ``--input s3://…`` works end to end."""

from __future__ import annotations

import uuid

import polars as pl
import pytest

from fraudlake import services
from fraudlake.contract import LAKE_SCHEMA, RULE_NAMES
from fraudlake.server_builds import s3_catalog_properties
from lake import trino
from lake.athena import render_all, tables
from lake.catalog import trino_ddl
from lake.s3 import S3Location
from lake.sync import sync
from queries import sql
from tests.lake._trinodata import canonical, duckdb_query, edge_cases, write_partitioned

RULE_COLUMNS = [*RULE_NAMES, "flagged"]


@pytest.fixture(scope="module")
def s3_catalog(trino_uri, s3_endpoint):
    """A hive catalog over the moto server, created on the running Trino (dynamic catalogs)."""
    name = f"s3_{uuid.uuid4().hex[:8]}"
    props = s3_catalog_properties(s3_endpoint, "us-east-1", "testing", "testing",
                                  services.trino_root())
    with_ = ", ".join(f'"{k}" = \'{v}\'' for k, v in props.items() if k != "connector.name")
    con = trino.TrinoTarget(uri=trino_uri).connect()
    trino.execute(con, f"CREATE CATALOG {name} USING hive WITH ({with_})")
    yield name
    shown = trino.execute(con, f"SHOW SCHEMAS FROM {name}").to_pylist()
    for schema in (r["Schema"] for r in shown if r["Schema"] != "information_schema"):
        trino.execute(con, f'DROP SCHEMA IF EXISTS {name}."{schema}" CASCADE')  # data stays
    trino.execute(con, f"DROP CATALOG IF EXISTS {name}")


@pytest.fixture
def synced(tmp_path, s3, s3_bucket):
    """historical/ (edge cases) and lake/transactions/ (the same events + rule columns),
    synced by lake.sync to s3://<bucket>/fraud/."""
    events = edge_cases()
    history = write_partitioned(events, tmp_path / "historical")
    flags = duckdb_query(history, "rules/flags").select("transaction_id", *RULE_COLUMNS)
    live = events.join(flags, on="transaction_id")
    live = live.select([c for c in LAKE_SCHEMA if c in live.columns])  # extras absent: NULL
    write_partitioned(live, tmp_path / "lake" / "transactions")
    location = S3Location(s3_bucket, "fraud")
    report = sync([tmp_path / "historical", tmp_path / "lake"], location, s3, settle_seconds=0,
                  progress=False)
    assert report.uploaded > 0 and not report.failed
    return tmp_path, location


def test_synced_lake_through_the_trino_ddl_equals_duckdb(trino_uri, s3_catalog, synced):
    local, location = synced
    schema = f"s3test_{uuid.uuid4().hex[:8]}"
    con = trino.TrinoTarget(uri=trino_uri, catalog=s3_catalog, timezone="Europe/Berlin"
                            ).connect()
    history_spec, live_spec = tables(location, schema, (2020, 2030))
    files = render_all(location, schema, (2020, 2030), with_queries=False)
    for name in ("trino/00_schema.sql", "trino/10_history.sql", "trino/20_live.sql"):
        trino.execute(con, files[name].strip().rstrip(";"))  # what lake.athena writes
    for spec in (history_spec, live_spec):
        assert spec.location.startswith(f"s3://{location.bucket}/")
        trino.execute(con, trino_ddl(spec, s3_catalog))  # IF NOT EXISTS: the same table
    for spec, folder in ((history_spec, local / "historical"),
                         (live_spec, local / "lake" / "transactions")):
        table = f"{s3_catalog}.{spec.qualified}"
        tree = sql.render_tree("rules/flags")
        got = pl.from_arrow(trino.run_sql(trino.TrinoTarget(uri=trino_uri), tree, table,
                                          sql.render_values("rules/flags"), con=con))
        want = duckdb_query(folder, "rules/flags")
        keys = ["transaction_id", *RULE_COLUMNS]
        assert canonical(got.select(keys)).equals(canonical(want.select(keys))), spec.name
        text = sql.load_sql("analytics/daily_volume")
        daily = pl.from_arrow(trino.run_sql(trino.TrinoTarget(uri=trino_uri), text, table, {},
                                            con=con))
        assert canonical(daily).drop("amount_mean").equals(
            canonical(duckdb_query(folder, "analytics/daily_volume")).drop("amount_mean"))
    # the live table's stored rule columns are what the rules decide
    stored = pl.from_arrow(trino.execute(
        con, f"SELECT transaction_id, flagged FROM {s3_catalog}.{live_spec.qualified}"))
    assert stored.sort("transaction_id")["flagged"].to_list() == (
        duckdb_query(local / "historical", "rules/flags").sort("transaction_id")["flagged"]
        .to_list())


def test_s3_input_becomes_a_table_in_the_s3_catalog(trino_uri, s3_catalog, synced,
                                                    s3_endpoint, monkeypatch):
    local, location = synced
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = location.uri("historical")
    target = trino.TrinoTarget(uri=trino_uri, catalog=s3_catalog,
                               schema=f"s3input_{uuid.uuid4().hex[:8]}")
    con, table = trino.open_input(target, uri)
    assert table.startswith(f"{s3_catalog}.{target.schema}.input_")
    n = trino.execute(con, f"SELECT count(*) AS n FROM {table}")["n"][0].as_py()  # noqa: S608
    assert n == edge_cases().height
