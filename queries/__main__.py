"""Run a named query (``rules/*`` or ``analytics/*``) over a lake path, or render it for Athena.

    python -m queries flags --input storage/historical --format parquet --out flags.parquet
    python -m queries flags --rules rules/example.toml --set velocity_1m.count=4 --input …
    python -m queries flags --rules rules/example.toml --dialect athena
    python -m queries top_flagged_users --input storage/lake/transactions --param top_n=5
    python -m queries daily_volume --dialect athena --table fraudlake.live
    python -m queries flags --input storage/historical --backend trino   # same SQL on Trino
    python -m queries --list
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraudlake.atomic import replacing, write_text
from fraudlake.cli import ArgumentParser, UsageError, check_disjoint, check_output_file, run
from lake import trino
from lake.trino import TrinoTarget
from queries import sql
from queries.compose import RULE_SET_METADATA
from queries.staging import connect, open_source, resolve_input
from queries.trino_sql import check_table, to_trino
from rules.arguments import add_rule_arguments, rule_set_from_args
from rules.model import RuleSet

FORMATS = ("table", "csv", "parquet")


@dataclass(frozen=True)
class QueryRun:
    name: str
    input: str | None
    rule_set: RuleSet
    extra: dict[str, str]
    fmt: str = "table"
    out: Path | None = None
    dialect: str = "duckdb"
    table: str = sql.DEFAULT_ATHENA_TABLE
    trino: TrinoTarget | None = None  # set: run on Trino (--backend trino)


def run_query(q: QueryRun) -> pa.Table:
    """The query's result over ``q.input`` (DuckDB or Trino, parameters bound)."""
    table = run_on_trino(q, q.trino) if q.trino is not None else run_on_duckdb(q)
    if sql.uses_flags(q.name):  # Parquet key-value metadata names the rule set
        table = table.replace_schema_metadata({RULE_SET_METADATA: q.rule_set.id})
    return table


def run_on_duckdb(q: QueryRun) -> pa.Table:
    if not q.input:
        raise UsageError("--input is required (except with --dialect athena or --list)")
    con = connect()
    open_source(con, resolve_input(q.input))
    try:
        return sql.execute(con, q.name, q.rule_set, q.extra)
    except duckdb.Error as exc:
        raise UsageError(f"query {q.name} failed: {str(exc).splitlines()[0]}") from None


def run_on_trino(q: QueryRun, target: TrinoTarget) -> pa.Table:
    """The same query on Trino, over ``--input`` (made a table) or else over ``--table``."""
    tree = sql.render_tree(q.name, q.rule_set)
    bound = sql.render_values(q.name, q.rule_set, q.extra)
    if q.input:
        con, table = trino.open_input(target, q.input)
    else:
        con, table = target.connect(), q.table
    return trino.run_rendered(con, to_trino(tree, table), bound)


def render(q: QueryRun) -> str:
    """Athena/Trino SQL plus a trailing comment listing the ``?`` parameters in order."""
    text, order = sql.render_athena(q.name, q.table, dialect=q.dialect, rule_set=q.rule_set)
    values = sql.render_values(q.name, q.rule_set, q.extra)
    # values JSON-encoded: a list value with a newline cannot end the comment
    lines = [f"-- ?{i}: {name} = {_literal(values[name])}"
             for i, name in enumerate(order, start=1)]
    head = [f"-- rule set: {_literal(q.rule_set.id)}"] if sql.uses_flags(q.name) else []
    return text + ";\n" + "\n".join([*head, *(["-- execution parameters, in order:", *lines]
                                              if lines else [])]) + "\n"


def _literal(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=True)


def write_result(table: pa.Table, fmt: str, out: Path | None) -> str | None:
    """Write to ``out`` atomically, or return the text to print."""
    if fmt == "parquet" and out is None:
        raise UsageError("--format parquet needs --out")
    if out is None:
        return _as_text(table, fmt)
    with replacing(out) as tmp:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "csv":
            pacsv.write_csv(table, tmp)
        else:
            tmp.write_text(_as_text(table, fmt) + "\n")
    return None


def _as_text(table: pa.Table, fmt: str) -> str:
    if fmt == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink)
        return sink.getvalue().to_pybytes().decode().rstrip("\n")
    with pl.Config(tbl_rows=50, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
        return str(pl.from_arrow(table))


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m queries", description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help="query name, e.g. flags, rules/high_amount, "
                   "analytics/daily_volume (see --list)")
    p.add_argument("--list", action="store_true", help="list the query names and exit")
    p.add_argument("--input", help="Parquet file, folder (recursive, hive or not) or glob")
    add_rule_arguments(p)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a query parameter that is not a rule parameter, e.g. top_n=5")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (printed), csv, or parquet (needs --out); default table")
    p.add_argument("--out", help="write the result to this file instead of stdout")
    p.add_argument("--dialect", choices=("duckdb", "athena", "trino"), default="duckdb",
                   help="duckdb runs the query; athena/trino print it rendered for that engine "
                        "with ? placeholders and the ordered parameter list")
    p.add_argument("--table", default=sql.DEFAULT_ATHENA_TABLE,
                   help="Athena table the rendered SQL reads, and the Trino table read by "
                        "--backend trino without --input (default %(default)s)")
    trino.add_backend_args(p)
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(sql.available()))
        return 0
    if not args.name:
        raise UsageError("a query NAME is required (see --list)")
    if args.out:
        check_output_file(args.out, "--out")
        check_disjoint(args.out, [p for p in (args.input, args.rules) if p], "--out")
    rule_set = rule_set_from_args(args)
    try:
        q = QueryRun(name=sql.resolve_name(args.name), input=args.input,
                     rule_set=rule_set,
                     extra=sql.parse_assignments(args.param), fmt=args.format,
                     out=Path(args.out) if args.out else None, dialect=args.dialect,
                     table=args.table, trino=trino.target_from_args(args))
        if q.trino is not None and not q.input:
            check_table(q.table)  # the Trino table read without --input
        if q.dialect != "duckdb":
            text = render(q)
            if q.out:
                write_text(q.out, text)
            else:
                sys.stdout.write(text)
            return 0
        sql.check(q.name, q.rule_set, q.extra)  # parameter errors before any I/O
    except ValueError as exc:  # QueryError
        raise UsageError(str(exc)) from None
    result = write_result(run_query(q), q.fmt, q.out)
    if result is not None:
        try:
            print(result)
        except BrokenPipeError:  # e.g. piped into `head`
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
