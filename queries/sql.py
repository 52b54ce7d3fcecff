"""Named queries: load ``queries/{rules,analytics}/*.sql``, bind parameters, render for Athena.

Every query reads the relation ``transactions`` (see ``queries.staging``). A query that reads
``flags`` gets ``rules/flags.sql`` composed in front of it as a CTE. Parameters are written
``$name`` in the files and always BOUND: rule parameters come from ``RuleParams.sql_params()``,
other ones (e.g. ``top_n``) from ``--param name=value`` or the file's ``-- param: name = default``
header line. For Athena/Trino the same text is transpiled with sqlglot and every ``$name``
becomes a positional ``?`` with the ordered list of names beside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from queries.params import DEFAULT_PARAMS, RuleParams

QUERIES_DIR = Path(__file__).resolve().parent
FOLDERS = ("rules", "analytics")
FLAGS_QUERY = "rules/flags"
DEFAULT_ATHENA_TABLE = "fraudlake.history"

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DEFAULT = re.compile(r"^--\s*param:\s*([A-Za-z_]\w*)\s*=\s*(\S+)\s*$", re.MULTILINE)
_READS_FLAGS = re.compile(r"\bfrom\s+flags\b", re.IGNORECASE)
_MARK = re.compile(r"__flparam_([A-Za-z0-9_]+)__")


class QueryError(ValueError):
    """Unknown query name or bad/missing query parameter; the message says which."""


def available() -> list[str]:
    """All query names, e.g. ``rules/flags``, ``analytics/daily_volume``."""
    return sorted(f"{d}/{p.stem}" for d in FOLDERS for p in (QUERIES_DIR / d).glob("*.sql"))


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


def load_sql(name: str) -> str:
    """The query text, with ``rules/flags.sql`` composed in when the query reads ``flags``."""
    qname = resolve_name(name)
    text = (QUERIES_DIR / f"{qname}.sql").read_text()
    if qname != FLAGS_QUERY and _READS_FLAGS.search(_strip_comments(text)):
        text = _with_flags(text)
    return text


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _with_flags(text: str) -> str:
    """Prefix ``flags as (<rules/flags.sql>)`` to the query's own WITH list."""
    head, body = _split_header(text)
    if not body.lower().startswith("with "):
        raise QueryError("a query reading `flags` must start with a WITH clause")
    flags_body = _split_header(load_sql(FLAGS_QUERY))[1]
    return f"{head}with flags as (\n{flags_body}\n),\n{body[len('with '):]}"


def _split_header(text: str) -> tuple[str, str]:
    """(leading comment lines, the rest)."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and (lines[i].strip().startswith("--") or not lines[i].strip()):
        i += 1
    return "".join(lines[:i]), "".join(lines[i:]).strip()


def param_names(sql: str) -> list[str]:
    """Parameter names a query uses, in first-use order."""
    return list(dict.fromkeys(_PARAM.findall(_strip_comments(sql))))


def declared_defaults(sql: str) -> dict[str, str]:
    """``-- param: name = value`` header lines."""
    return dict(_DEFAULT.findall(sql))


def bind(sql: str, params: RuleParams = DEFAULT_PARAMS,
         extra: Mapping[str, str] | None = None) -> dict[str, object]:
    """Values for exactly the parameters ``sql`` uses; QueryError names a missing/unknown one."""
    rule_values = params.sql_params()
    given = dict(extra or {})
    needed = param_names(sql)
    unknown = sorted(set(given) - set(needed))
    if unknown:
        raise QueryError(f"query has no parameter {unknown[0]!r}; it takes: "
                         f"{', '.join(n for n in needed if n not in rule_values) or 'none'}")
    defaults = declared_defaults(sql)
    out: dict[str, object] = {}
    for name in needed:
        if name in rule_values:
            out[name] = rule_values[name]
        elif name in given or name in defaults:
            out[name] = _parse_value(given.get(name, defaults.get(name, "")))
        else:
            raise QueryError(f"query needs --param {name}=VALUE")
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
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def execute(con: duckdb.DuckDBPyConnection, name: str, params: RuleParams = DEFAULT_PARAMS,
            extra: Mapping[str, str] | None = None) -> pa.Table:
    """Run a named query against the connection's ``transactions`` view; an Arrow table."""
    sql = load_sql(name)
    return con.sql(sql, params=bind(sql, params, extra)).to_arrow_table()


def render_athena(name: str, table: str = DEFAULT_ATHENA_TABLE,
                  dialect: str = "athena") -> tuple[str, list[str]]:
    """(Athena/Trino SQL with ``?`` placeholders over ``table``, ordered parameter names)."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", table):
        raise QueryError(f"bad table name {table!r}; expected db.table")
    tree = sqlglot.parse_one(load_sql(name), read="duckdb")
    target = exp.to_table(table)

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.this:
            return exp.var(f"__flparam_{node.this}__")
        if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
            # DuckDB's epoch microseconds; Trino has to_unixtime (seconds, double)
            seconds = exp.func("to_unixtime", *node.expressions)
            return exp.cast(exp.Mul(this=seconds, expression=exp.Literal.number(1_000_000)),
                            "BIGINT")
        if isinstance(node, exp.Table) and node.name == "transactions" and not node.db:
            return target.copy().as_(node.alias) if node.alias else target.copy()
        return node

    marked = tree.transform(swap).sql(dialect=dialect, pretty=True)
    order = _MARK.findall(marked)
    return _MARK.sub("?", marked), order
