"""Athena DDL over the synced lake, plus the project's queries rendered for Athena.

    python -m lake.athena --location s3://bucket/prefix [--database fraudlake] [--out DIR]

Writes, below ``--out`` (default ``storage/athena``):

- ``ddl/00_database.sql``  ``CREATE DATABASE IF NOT EXISTS``
- ``ddl/10_history.sql``   ``<db>.history`` over ``<location>/historical/`` (event columns)
- ``ddl/20_live.sql``      ``<db>.live`` over ``<location>/lake/transactions/`` (+ rule columns)
- ``trino/*.sql``           the same schema and tables as Trino DDL (``CREATE TABLE … WITH
  (external_location, partitioned_by, partition_projection_*)``), from the same description
  (``lake.catalog``), for a Trino/Starburst hive catalog
- ``queries/<kind>/<name>.sql``  each rule/analytics query from ``queries/`` for Athena, with ``?``
  placeholders; its header lists the execution parameters in order with their values (bind
  them, never format) and the rule set (``--rules``/``--set``) of the flags it reads.

These are the key layouts ``python -m lake.sync`` produces. Tables are hive-partitioned by
``year``/``month`` with partition projection (``month`` folders are zero-padded, ``digits=2``),
so new partitions are visible at once: no ``MSCK REPAIR TABLE``, no Glue crawler.

DDL cannot bind values, so ``--location`` (bucket naming rules, prefix characters) and
``--database`` are validated and every name and value in the DDL is quoted (``lake.sql_text``);
a bad one is one line and exit 2. The output folder is replaced as a whole (temp folder +
rename, ``lake.folder_write``): on a full disk the previous output stays and nothing is left.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fraudlake.cli import ArgumentParser, UsageError, check_output_dir, run
from fraudlake.contract import EVENT_SCHEMA, LAKE_SCHEMA
from fraudlake.settings import S3_URI_ENV, Settings
from lake.catalog import (
    DEFAULT_YEARS,
    TableSpec,
    athena_database_ddl,
    athena_ddl,
    athena_type,
    trino_ddl,
    trino_schema_ddl,
)
from lake.folder_write import check_replaceable, write_folder
from lake.layout import HISTORY_REMOTE, LIVE_REMOTE
from lake.s3 import S3Location
from lake.sql_text import check_identifier, check_location
from rules.arguments import add_rule_arguments, rule_set_from_args
from rules.model import RuleSet, load_rule_set

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_YEARS", "TableSpec", "athena_type", "create_table", "render_all", "tables"]


#: Kept for callers of the Athena module; the table description lives in ``lake.catalog``.
create_table = athena_ddl


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


def render_queries(table: str, rule_set: RuleSet | None = None) -> dict[str, str]:
    """``queries/<kind>/<name>.sql`` → Athena SQL with a header naming its ordered parameters
    (and the rule set of the flags it reads). The single-rule files (``rules/high_amount`` …)
    are written only for a rule set that has their rule ids (the default set's)."""
    from queries import sql as queries_sql

    rs = rule_set or load_rule_set(None)
    out: dict[str, str] = {}
    for full in query_names():
        try:
            values = queries_sql.render_values(full, rs)
        except queries_sql.QueryError:  # a single-rule file of another rule set's ids
            continue
        text, params = queries_sql.render_athena(full, table=table, rule_set=rs)
        header = [f"-- {full}: rendered for Athena (Trino) from queries/{full}.sql",
                  f"-- reads {table}; bind these execution parameters in this order:"]
        if queries_sql.uses_flags(full):
            header.insert(1, f"-- rule set {rs.id} ({rs.source})")
        header += [f"--   {i}. {p} = {_literal(values[p])}" for i, p in enumerate(params, 1)] \
            or ["--   (none)"]
        out[f"queries/{full}.sql"] = "\n".join(header) + "\n" + text.strip().rstrip(";") + ";\n"
    return out


def _literal(value: object) -> str:
    """A bound value shown in a comment: JSON, ASCII only (no newline can end the comment)."""
    return json.dumps(value, default=str, ensure_ascii=True)


def render_all(location: S3Location, database: str, years: tuple[int, int] = DEFAULT_YEARS,
               with_queries: bool = True, rule_set: RuleSet | None = None) -> dict[str, str]:
    """Every output file (relative path → text), rendered in memory before anything is written."""
    history, live = tables(location, database, years)
    files = {
        "ddl/00_database.sql": athena_database_ddl(database),
        "ddl/10_history.sql": athena_ddl(history),
        "ddl/20_live.sql": athena_ddl(live),
        # the same tables for a Trino/Starburst hive catalog (run with that catalog selected)
        "trino/00_schema.sql": trino_schema_ddl(database) + ";\n",
        "trino/10_history.sql": trino_ddl(history) + ";\n",
        "trino/20_live.sql": trino_ddl(live) + ";\n",
    }
    if with_queries:
        files.update(render_queries(history.qualified, rule_set))
    return files


#: The top-level entries of the output folder (what an earlier run may have left there).
OWNED = ("ddl", "trino", "queries")


def write_files(out: Path, files: Mapping[str, str]) -> list[Path]:
    """Replace the folder ``out`` with ``files`` at once (temp folder + rename): a failure
    leaves the previous output as it was and nothing half-written."""
    return write_folder(out, files, OWNED)


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
    add_rule_arguments(p)  # the rule set of the rendered flags queries
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.location:
        raise UsageError(f"no location: pass --location s3://bucket/prefix or set {S3_URI_ENV}")
    try:
        location = check_location(args.location)
        database = check_identifier(args.database, "database name (--database)")
        check_output_dir(args.out, "--out")
        check_replaceable(args.out, OWNED)
    except ValueError as exc:  # SqlTextError, FolderInUse
        raise UsageError(f"{exc}") from None
    rule_set = rule_set_from_args(args)
    files = render_all(location, database, _years(args.years), not args.no_queries, rule_set)
    written = write_files(args.out, files)  # OSError (disk full, read-only): exit 1, one line
    log.info("athena: wrote %d file(s) under %s", len(written), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
