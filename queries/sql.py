"""Named queries: the flags of a rule set, ``queries/{rules,analytics}/*.sql``; bind, run, render.

Every query reads the relation ``transactions`` (see ``queries.staging``). ``rules/flags`` is
not a file: it is composed from the rule set (``queries.compose``), one CTE per rule. A query
that reads ``flags`` gets those flags, columns named by rule id: in DuckDB as a view built with
the relation API, in a rendering as a ``flags`` CTE in front of the query's own. Parameters are
written ``$name`` and always BOUND: the composed query's come with it (``$r3_threshold``), the
single-rule files take ``$<rule id>_<param>`` of the rule set (``$high_amount_threshold``), other
ones (e.g. ``top_n``) come from ``--param name=value`` or the file's ``-- param: name = default``
header line. For Athena/Trino the text is transpiled with sqlglot and every ``$name`` becomes a
positional ``?`` with the ordered list of names beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from queries.compose import bindable_params, compose_flags, flags_relation, output_columns
from rules.model import RuleSet, load_rule_set

QUERIES_DIR = Path(__file__).resolve().parent
FOLDERS = ("rules", "analytics")
FLAGS_QUERY = "rules/flags"
DEFAULT_ATHENA_TABLE = "fraudlake.history"

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DEFAULT = re.compile(r"^--\s*param:\s*([A-Za-z_]\w*)\s*=\s*(\S+)\s*$", re.MULTILINE)
_READS_FLAGS = re.compile(r"\bfrom\s+flags\b", re.IGNORECASE)


class QueryError(ValueError):
    """Unknown query name or bad/missing query parameter; the message says which."""


def default_rule_set() -> RuleSet:
    return load_rule_set(None)


def available() -> list[str]:
    """All query names, e.g. ``rules/flags``, ``analytics/daily_volume``."""
    files = {f"{d}/{p.stem}" for d in FOLDERS for p in (QUERIES_DIR / d).glob("*.sql")}
    return sorted(files | {FLAGS_QUERY})


def resolve_name(name: str) -> str:
    """``flags``, ``rules/flags`` or ``rules/flags.sql`` -> ``rules/flags``."""
    stem = name.strip().removesuffix(".sql")
    names = available()
    if stem in names:
        return stem
    matches = [n for n in names if n.split("/", 1)[1] == stem]
    if len(matches) == 1:
        return matches[0]
    raise QueryError(f"unknown query {name!r}; known: {', '.join(names)}")


def load_sql(name: str, rule_set: RuleSet | None = None) -> str:
    """The query text: the composed flags of ``rule_set`` (default set when None; positional
    rule columns r1 …), or the file's text (a query reading ``flags`` as written)."""
    qname = resolve_name(name)
    if qname == FLAGS_QUERY:
        return compose_flags(rule_set or default_rule_set()).sql
    return (QUERIES_DIR / f"{qname}.sql").read_text()


def uses_flags(name: str) -> bool:
    """True for ``rules/flags`` and every query that reads ``flags``."""
    qname = resolve_name(name)
    return qname == FLAGS_QUERY or reads_flags(load_sql(qname))


def reads_flags(text: str) -> bool:
    return bool(_READS_FLAGS.search(_strip_comments(text)))


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def param_names(sql: str) -> list[str]:
    """Parameter names a query uses, in first-use order."""
    return list(dict.fromkeys(_PARAM.findall(_strip_comments(sql))))


def declared_defaults(sql: str) -> dict[str, str]:
    """``-- param: name = value`` header lines."""
    return dict(_DEFAULT.findall(sql))


def rule_values(rule_set: RuleSet) -> dict[str, Any]:
    """``<rule id>_<param>`` -> value, for the single-rule files (``$high_amount_threshold``)."""
    return {f"{rule.id}_{name}": value for rule in rule_set.rules
            for name, value in bindable_params(rule).items()}


def bind(sql: str, rule_set: RuleSet | None = None,
         extra: Mapping[str, str] | None = None) -> dict[str, object]:
    """Values for exactly the parameters ``sql`` uses; QueryError names a missing/unknown one.

    ``sql`` is a file's text or the composed flags text of ``rule_set``."""
    if hasattr(rule_set, "sql_params"):  # TRANSITIONAL: v1 RuleParams of the v1 fast engine
        values = rule_set.sql_params()  # type: ignore[union-attr]
    else:
        rs = rule_set or default_rule_set()
        composed = compose_flags(rs)
        values = composed.params if sql == composed.sql else rule_values(rs)
    given = dict(extra or {})
    needed = param_names(sql)
    unknown = sorted(set(given) - set(needed))
    if unknown:
        raise QueryError(f"query has no parameter {unknown[0]!r}; it takes: "
                         f"{', '.join(n for n in needed if n not in values) or 'none'}")
    defaults = declared_defaults(sql)
    out: dict[str, object] = {}
    for name in needed:
        if name in values:
            out[name] = values[name]
        elif name in given or name in defaults:
            out[name] = _parse_value(given.get(name, defaults.get(name, "")))
        else:
            raise QueryError(f"query needs --param {name}=VALUE (or a rule set with that "
                             "<rule id>_<parameter>)")
    return out


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["top_n=5"]`` -> ``{"top_n": "5"}``; QueryError on a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key.strip()):
            raise QueryError(f"bad --param {item!r}; expected name=value")
        out[key.strip()] = value.strip()
    return out


def _parse_value(raw: str) -> object:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def check(name: str, rule_set: RuleSet | None = None,
          extra: Mapping[str, str] | None = None) -> None:
    """QueryError for a bad name or parameter, before any I/O."""
    qname = resolve_name(name)
    text = load_sql(qname, rule_set)
    bind(text, rule_set, extra)


def execute(con: duckdb.DuckDBPyConnection, name: str, rule_set: RuleSet | None = None,
            extra: Mapping[str, str] | None = None) -> pa.Table:
    """Run a named query against the connection's ``transactions`` view; an Arrow table."""
    rs = rule_set or default_rule_set()
    qname = resolve_name(name)
    text = load_sql(qname, rs)
    params = bind(text, rs, extra)
    if qname == FLAGS_QUERY:
        return flags_relation(con, rs).to_arrow_table()
    flags = None
    if reads_flags(text):
        flags = flags_relation(con, rs)
        flags.create_view("flags", replace=True)
    try:
        return con.sql(text, params=params).to_arrow_table()
    finally:
        if flags is not None:
            con.execute("DROP VIEW IF EXISTS flags")


# --- rendering for Athena / Trino -------------------------------------------------------------

def named_flags_tree(rule_set: RuleSet) -> exp.Expr:
    """The composed flags query as a sqlglot tree whose output columns carry the rule ids (as
    quoted identifiers built by sqlglot, never spliced into text)."""
    query = compose_flags(rule_set)
    tree = sqlglot.parse_one(query.sql, read="duckdb")
    names = query.names
    tree.set("expressions", [
        exp.alias_(exp.column(c), exp.to_identifier(names[c], quoted=True)) if c in names
        else exp.column(c) for c in output_columns(query)])
    return tree


def render_tree(name: str, rule_set: RuleSet | None = None) -> exp.Expr:
    """The query as a DuckDB-dialect tree (flags composed in where read)."""
    rs = rule_set or default_rule_set()
    qname = resolve_name(name)
    if qname == FLAGS_QUERY:
        return named_flags_tree(rs)
    text = load_sql(qname)
    tree = sqlglot.parse_one(text, read="duckdb")
    if reads_flags(text):
        with_ = tree.args.get("with_")
        if with_ is None:
            raise QueryError("a query reading `flags` must start with a WITH clause")
        flags = exp.CTE(this=named_flags_tree(rs),
                        alias=exp.TableAlias(this=exp.to_identifier("flags")))
        with_.set("expressions", [flags, *with_.expressions])
    return tree


def render_athena(name: str, table: str = DEFAULT_ATHENA_TABLE, dialect: str = "athena",
                  rule_set: RuleSet | None = None) -> tuple[str, list[str]]:
    """(Athena/Trino SQL with ``?`` placeholders over ``table``, ordered parameter names);
    see ``queries.trino_sql`` for what changes between the dialects."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*){1,2}", table):
        raise QueryError(f"bad table name {table!r}; expected [catalog.]db.table")
    from queries.trino_sql import to_trino

    rendered = to_trino(render_tree(name, rule_set), table, dialect=dialect)
    return rendered.sql, list(rendered.order)


def render_values(name: str, rule_set: RuleSet | None = None,
                  extra: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every parameter a rendering of ``name`` binds, by name (flags' and the query's own)."""
    rs = rule_set or default_rule_set()
    qname = resolve_name(name)
    text = load_sql(qname, rs)
    values = bind(text, rs, extra)
    if qname != FLAGS_QUERY and reads_flags(text):
        values = {**compose_flags(rs).params, **values}
    return values
