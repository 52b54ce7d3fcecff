"""One description of the lake's tables, rendered as Athena DDL and as Trino DDL.

A ``TableSpec`` names a table, its contract columns, where its files are, whether they sit in
hive ``year=YYYY/month=MM`` folders and the years partition projection spans. From it:

- ``athena_ddl``: Athena's Hive DDL — ``CREATE EXTERNAL TABLE … PARTITIONED BY … STORED AS
  PARQUET LOCATION … TBLPROPERTIES ('projection.*', 'storage.location.template')``;
- ``trino_ddl``: what a Trino hive catalog accepts for the same table — ``CREATE TABLE … WITH
  (external_location, format='PARQUET', partitioned_by=ARRAY['year','month'],
  partition_projection_*)`` with the partition columns last and the projection as column
  properties. Trino stores these under Athena's own ``projection.*`` keys, so one table serves
  both engines' readers.

Partition folders are zero-padded (``month=03``), hence ``digits`` 4 and 2. With projection, new
partitions are visible at once (no ``MSCK REPAIR``/``sync_partition_metadata``) and a month
without a folder reads as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl
from polars.datatypes import DataTypeClass

from lake.layout import PARTITION_COLUMNS
from lake.sql_text import hive_ident, hive_string, trino_ident, trino_string
from queries.trino_sql import trino_type

DEFAULT_YEARS = (2000, 2100)
#: Projection of each partition column: (range given the years, digits).
_MONTHS = (1, 12)
_DIGITS = {"year": 4, "month": 2}


@dataclass(frozen=True)
class TableSpec:
    database: str  # Athena database = Trino schema
    name: str
    columns: Mapping[str, pl.DataType]
    location: str  # folder URI ending in "/": s3://…/ or (Trino) local:///…/
    years: tuple[int, int] = DEFAULT_YEARS
    partitioned: bool = True  # files in year=YYYY/month=MM folders

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"

    def projection(self) -> dict[str, tuple[int, int]]:
        """Integer range projected for each partition column."""
        return {"year": self.years, "month": _MONTHS}

    @property
    def location_template(self) -> str:
        return self.location + "/".join(f"{p}=${{{p}}}" for p in PARTITION_COLUMNS) + "/"


def athena_type(dtype: pl.DataType | DataTypeClass) -> str:
    """The Athena (Hive DDL) type of a contract column."""
    dt: pl.DataType = dtype() if isinstance(dtype, DataTypeClass) else dtype
    if isinstance(dt, pl.Decimal):
        return f"decimal({dt.precision},{dt.scale})"
    if isinstance(dt, pl.Datetime):
        return "timestamp"
    if isinstance(dt, pl.List):  # lake v2 rules_fired
        return f"array<{athena_type(dt.inner)}>"
    simple = {pl.String(): "string", pl.Int64(): "bigint", pl.Int32(): "int",
              pl.Int16(): "smallint", pl.Float64(): "double", pl.Float32(): "float",
              pl.Boolean(): "boolean", pl.Date(): "date"}
    if dt not in simple:
        raise ValueError(f"no Athena type for {dt}")
    return simple[dt]


def athena_properties(t: TableSpec) -> dict[str, str]:
    """TBLPROPERTIES of the Athena table: partition projection over the year/month folders."""
    if not t.partitioned:
        return {}
    props = {"projection.enabled": "true"}
    for col, (lo, hi) in t.projection().items():
        props |= {f"projection.{col}.type": "integer", f"projection.{col}.range": f"{lo},{hi}",
                  f"projection.{col}.digits": str(_DIGITS[col])}
    return props | {"storage.location.template": t.location_template}


def athena_ddl(t: TableSpec) -> str:
    """``CREATE EXTERNAL TABLE`` (Hive DDL) with year/month partition projection; every name
    and value quoted (``lake.sql_text``)."""
    q, lit = hive_ident, hive_string
    cols = ",\n".join(f"  {q(name)} {athena_type(dtype)}" for name, dtype in t.columns.items())
    text = f"CREATE EXTERNAL TABLE IF NOT EXISTS {q(t.database)}.{q(t.name)} (\n{cols}\n)\n"
    if t.partitioned:
        text += "PARTITIONED BY (" + ", ".join(f"{q(p)} int" for p in PARTITION_COLUMNS) + ")\n"
    text += f"STORED AS PARQUET\nLOCATION {lit(t.location)}\n"
    props = athena_properties(t)
    if props:
        text += "TBLPROPERTIES (\n" + ",\n".join(f"  {lit(k)}={lit(v)}" for k, v in props.items())
        text += "\n)"
    return text + ";\n"


def athena_database_ddl(database: str) -> str:
    return f"CREATE DATABASE IF NOT EXISTS {hive_ident(database)};\n"


def trino_name(*parts: str | None) -> str:
    """A qualified Trino name, each part quoted (``None`` parts left out)."""
    return ".".join(trino_ident(p) for p in parts if p)


def trino_ddl(t: TableSpec, catalog: str | None = None) -> str:
    """``CREATE TABLE`` for a Trino hive catalog (no trailing ``;``: Trino's client refuses it);
    every name and value quoted (``lake.sql_text``)."""
    lit = trino_string
    cols = [f"  {trino_ident(c)} {trino_type(dtype)}" for c, dtype in t.columns.items()]
    props = [f"external_location = {lit(t.location)}", "format = 'PARQUET'"]
    if t.partitioned:
        for col, (lo, hi) in t.projection().items():
            cols.append(f"  {trino_ident(col)} integer WITH (partition_projection_type = "
                        f"'integer', partition_projection_range = ARRAY[{lit(str(lo))}, "
                        f"{lit(str(hi))}], partition_projection_digits = {int(_DIGITS[col])})")
        parts = ", ".join(lit(p) for p in PARTITION_COLUMNS)
        props += [f"partitioned_by = ARRAY[{parts}]", "partition_projection_enabled = true",
                  f"partition_projection_location_template = {lit(t.location_template)}"]
    return (f"CREATE TABLE IF NOT EXISTS {trino_name(catalog, t.database, t.name)} (\n"
            + ",\n".join(cols) + "\n)\nWITH (\n  " + ",\n  ".join(props) + "\n)")


def trino_schema_ddl(database: str, catalog: str | None = None,
                     location: str | None = None) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {trino_name(catalog, database)}" + (
        f" WITH (location = {trino_string(location)})" if location else "")
