"""Athena DDL over the synced lake, plus the project's queries rendered for Athena.

    python -m lake.athena --location s3://bucket/prefix [--database fraudlake] [--out DIR]

Writes, below ``--out`` (default ``storage/athena``):

- ``ddl/00_database.sql``  ``CREATE DATABASE IF NOT EXISTS``
- ``ddl/10_history.sql``   ``<db>.history`` over ``<location>/historical/`` (event columns)
- ``ddl/20_live.sql``      ``<db>.live`` over ``<location>/lake/transactions/`` (+ rule columns)
- ``queries/<kind>/<name>.sql``  each rule/analytics query from ``queries/`` for Athena, with ``?``
  placeholders; its header lists the execution parameters in order (bind them, never format).

These are the key layouts ``python -m lake.sync`` produces. Tables are hive-partitioned by
``year``/``month`` with partition projection (``month`` folders are zero-padded, ``digits=2``),
so new partitions are visible at once: no ``MSCK REPAIR TABLE``, no Glue crawler.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fraudlake.atomic import write_text
from fraudlake.cli import ArgumentParser, UsageError, check_output_dir, run
from fraudlake.contract import EVENT_SCHEMA, LAKE_SCHEMA
from fraudlake.settings import S3_URI_ENV, Settings
from lake.layout import HISTORY_REMOTE, LIVE_REMOTE, PARTITION_COLUMNS
from lake.s3 import S3Location

log = logging.getLogger(__name__)

DEFAULT_YEARS = (2000, 2100)
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")


@dataclass(frozen=True)
class TableSpec:
    database: str
    name: str
    columns: Mapping[str, pl.DataType]
    location: str  # s3://…/ ending in "/"
    years: tuple[int, int] = DEFAULT_YEARS

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"


def athena_type(dtype: pl.DataType) -> str:
    """The Athena (Hive DDL) type of a contract column."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if isinstance(dtype, pl.List):  # lake v2 rules_fired
        return f"array<{athena_type(dtype.inner)}>"
    simple = {pl.String(): "string", pl.Int64(): "bigint", pl.Int32(): "int",
              pl.Int16(): "smallint", pl.Float64(): "double", pl.Float32(): "float",
              pl.Boolean(): "boolean", pl.Date(): "date"}
    if dtype not in simple:
        raise ValueError(f"no Athena type for {dtype}")
    return simple[dtype]


def create_table(t: TableSpec) -> str:
    """``CREATE EXTERNAL TABLE`` with year/month partition projection."""
    cols = ",\n".join(f"  `{name}` {athena_type(dtype)}" for name, dtype in t.columns.items())
    parts = ", ".join(f"`{p}` int" for p in PARTITION_COLUMNS)
    template = t.location + "/".join(f"{p}=${{{p}}}" for p in PARTITION_COLUMNS) + "/"
    props = {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": f"{t.years[0]},{t.years[1]}",
        "projection.year.digits": "4",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "storage.location.template": template,
    }
    tblprops = ",\n".join(f"  '{k}'='{v}'" for k, v in props.items())
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{t.database}`.`{t.name}` (\n{cols}\n)\n"
            f"PARTITIONED BY ({parts})\nSTORED AS PARQUET\nLOCATION '{t.location}'\n"
            f"TBLPROPERTIES (\n{tblprops}\n);\n")


def tables(location: S3Location, database: str,
           years: tuple[int, int] = DEFAULT_YEARS) -> tuple[TableSpec, TableSpec]:
    """The history and live tables at the keys lake.sync writes."""
    history = TableSpec(database, "history", EVENT_SCHEMA,
                        location.uri(*HISTORY_REMOTE) + "/", years)
    live = TableSpec(database, "live", LAKE_SCHEMA, location.uri(*LIVE_REMOTE) + "/", years)
    return history, live


def query_names() -> list[str]:
    """``kind/name`` of every query under queries/rules and queries/analytics."""
    from queries.sql import available

    return available()


def render_queries(table: str) -> dict[str, str]:
    """``queries/<kind>/<name>.sql`` → Athena SQL with a header naming its ordered parameters."""
    from queries.sql import render_athena

    out: dict[str, str] = {}
    for full in query_names():
        sql, params = render_athena(full, table=table)
        header = [f"-- {full}: rendered for Athena (Trino) from queries/{full}.sql",
                  f"-- reads {table}; bind these execution parameters in this order:"]
        header += [f"--   {i}. {p}" for i, p in enumerate(params, 1)] or ["--   (none)"]
        out[f"queries/{full}.sql"] = "\n".join(header) + "\n" + sql.strip().rstrip(";") + ";\n"
    return out


def render_all(location: S3Location, database: str, years: tuple[int, int] = DEFAULT_YEARS,
               with_queries: bool = True) -> dict[str, str]:
    """Every output file (relative path → text), rendered in memory before anything is written."""
    history, live = tables(location, database, years)
    files = {
        "ddl/00_database.sql": f"CREATE DATABASE IF NOT EXISTS `{database}`;\n",
        "ddl/10_history.sql": create_table(history),
        "ddl/20_live.sql": create_table(live),
    }
    if with_queries:
        files.update(render_queries(history.qualified))
    return files


def write_files(out: Path, files: Mapping[str, str]) -> list[Path]:
    """Write each file atomically (temp name + rename)."""
    written = []
    for rel, text in files.items():
        path = out / rel
        write_text(path, text)
        written.append(path)
    return written


def _years(text: str) -> tuple[int, int]:
    first, sep, last = text.partition(",")
    if not sep or not (first.strip().isdigit() and last.strip().isdigit()):
        raise UsageError(f"--years must look like 2000,2100: {text!r}")
    lo, hi = int(first), int(last)
    if not 1000 <= lo <= hi <= 9999:
        raise UsageError(f"--years must be two 4-digit years, first <= last: {text!r}")
    return lo, hi


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m lake.athena", description=__doc__.split("\n\n")[0])
    p.add_argument("--location", default=Settings.from_env().s3_uri, metavar="s3://BUCKET/PREFIX",
                   help=f"where lake.sync put the lake (env {S3_URI_ENV})")
    p.add_argument("--database", default="fraudlake",
                   help="Athena/Glue database (default fraudlake)")
    p.add_argument("--out", type=Path, default=Path("storage/athena"),
                   help="output folder (default storage/athena)")
    p.add_argument("--years", default=f"{DEFAULT_YEARS[0]},{DEFAULT_YEARS[1]}",
                   help="partition projection year range FIRST,LAST (default 2000,2100)")
    p.add_argument("--no-queries", action="store_true", help="write only the DDL")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.location:
        raise UsageError(f"no location: pass --location s3://bucket/prefix or set {S3_URI_ENV}")
    try:
        location = S3Location.parse(args.location)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not _IDENT.match(args.database):
        raise UsageError(f"bad database name {args.database!r} (lowercase letters, digits, _)")
    check_output_dir(args.out, "--out")
    files = render_all(location, args.database, _years(args.years), not args.no_queries)
    try:
        written = write_files(args.out, files)
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    log.info("athena: wrote %d file(s) under %s", len(written), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
