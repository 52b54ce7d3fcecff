"""DuckDB SQL → Trino (and Athena engine v3, which is Trino) SQL, with parameters kept bound.

Every query of the project is written once, in DuckDB SQL, over the relation ``transactions``
with ``$name`` parameters. ``to_trino`` renders any such text — a file under ``queries/`` or a
query string composed elsewhere (e.g. from rule-set templates) — for Trino:

- ``transactions`` becomes a staging subquery over a hive table with the contract columns cast
  to their exact types and ``ts`` read as ``WITH_TIMEZONE(ts, 'UTC')``. Parquet
  ``timestamp(us, UTC)`` reads as a zone-less timestamp in the hive connector; converting it with
  ``AT_TIMEZONE``/``TO_UNIXTIME`` would shift with the client's session zone, ``WITH_TIMEZONE``
  does not (results are the same under any session zone).
- ``epoch_us(x)`` (a DuckDB function) becomes ``CAST(ROUND(TO_UNIXTIME(x) * 1e6) AS BIGINT)``:
  TO_UNIXTIME is a double, but for |x| < 2^32 s (years 1834–2106) its error is below 0.25 µs and
  the product's rounding below 0.25 µs, so the rounded value is the exact microsecond count.
- ``date_diff('microsecond', a, b)`` (Trino has no microsecond unit) becomes
  ``epoch_us(b) - epoch_us(a)``.
- ``a // b`` (DuckDB integer division, truncating) becomes Trino's ``a / b``, which truncates
  for integers; ``//`` is only used on integers.
- ``avg(x)`` becomes ``CAST(SUM(x) AS DOUBLE) / COUNT(x)``: DuckDB averages a DECIMAL to a
  DOUBLE, Trino to a DECIMAL rounded to its scale.
- every ``$name`` becomes a positional ``?``; the ordered names come back beside the SQL, and
  ``positional`` lines the bound values up with them.

Everything else sqlglot transpiles as is: windows (``RANGE`` frames over integer
microseconds, ``LAG(x, n) IGNORE NULLS``), ``count_if``, ``greatest``/``least``, decimal casts,
and the list functions of the rule-set kinds (``queries/kinds``): ``list_contains`` →
``CONTAINS``, ``cast(x as varchar[])`` → ``CAST(x AS ARRAY(VARCHAR))``, ``unnest``,
``array_length`` → ``CARDINALITY``. Trino has no exact median; ``amount_vs_history`` builds it
from a sorted window array, as its DuckDB template does: ``list_sort(list(amount) OVER (… ROWS
BETWEEN history PRECEDING AND 1 PRECEDING))`` → ``ARRAY_SORT(ARRAY_AGG(amount) OVER (…))``, the
middle element(s) read by 1-based subscripts that never exceed the array's length, and the
comparison ``2·amount > ratio·(m1 + m2)`` stays in DECIMAL arithmetic (exact).

Known difference: the JVM's ``asin``/``sin`` may differ from glibc's in the
last bit, so an impossible-travel decision constructed to sit exactly on the ulp of the speed
limit may differ; random data never lands there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl
import sqlglot
from polars.datatypes import DataTypeClass
from sqlglot import exp

from fraudlake.contract import EVENT_SCHEMA

_MARK = re.compile(r"__flparam_([A-Za-z0-9_]+)__")
_QUALIFIED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*){0,2}$")


@dataclass(frozen=True)
class Rendered:
    """Trino SQL with ``?`` placeholders and the parameter name behind each, in order."""

    sql: str
    order: tuple[str, ...]

    def values(self, bound: Mapping[str, object]) -> list[object]:
        return positional(self.order, bound)


def trino_type(dtype: pl.DataType | DataTypeClass) -> str:
    """The Trino type a contract column is read as (timestamps: zone-less micros)."""
    dt: pl.DataType = dtype() if isinstance(dtype, DataTypeClass) else dtype
    if isinstance(dt, pl.Decimal):
        return f"decimal({dt.precision}, {dt.scale})"
    if isinstance(dt, pl.Datetime):
        return "timestamp(6)"
    if isinstance(dt, pl.List):  # lake v2 rules_fired
        return f"array({trino_type(dt.inner)})"
    simple = {pl.String(): "varchar", pl.Int64(): "bigint", pl.Int32(): "integer",
              pl.Int16(): "smallint", pl.Float64(): "double", pl.Float32(): "real",
              pl.Boolean(): "boolean", pl.Date(): "date"}
    if dt not in simple:
        raise ValueError(f"no Trino type for {dt}")
    return simple[dt]


def check_table(table: str) -> str:
    """``table`` if it is a plain ``[catalog.][schema.]table`` name, else ValueError."""
    if not _QUALIFIED.match(table):
        raise ValueError(f"bad table name {table!r}; expected [catalog.]schema.table")
    return table


def staging_sql(table: str, where: str | None = None) -> str:
    """The ``transactions`` relation over ``table`` (DuckDB-parsable text, Trino functions):
    every contract column cast to its type, ``ts`` as a UTC ``timestamp with time zone``.
    ``where`` is an optional filter in the same dialect (``$name`` parameters allowed)."""
    check_table(table)
    cols = []
    for name, dtype in EVENT_SCHEMA.items():
        if isinstance(dtype, pl.Datetime):
            cols.append(f"with_timezone({name}, 'UTC') as {name}")
        else:
            cols.append(f"cast({name} as {trino_type(dtype)}) as {name}")
    text = "select " + ", ".join(cols) + f" from {table}"  # noqa: S608 - fixed identifiers
    return text + (f" where {where}" if where else "")


def _epoch_us(value: exp.Expression) -> exp.Expression:
    seconds = exp.func("to_unixtime", value)
    micros = exp.Mul(this=seconds, expression=exp.Literal.number(1_000_000))
    return exp.cast(exp.func("round", micros), "BIGINT")


def to_trino(sql_text: str | exp.Expr, table: str, where: str | None = None,
             dialect: str = "trino") -> Rendered:
    """``sql_text`` (DuckDB SQL over ``transactions``, ``$name`` parameters; text or an already
    parsed DuckDB-dialect tree, e.g. a composed rule-set query) rendered for Trino (or
    ``dialect="athena"``) over ``table``; ``where`` filters the staged rows."""
    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.this:
            return exp.var(f"__flparam_{node.this}__")
        if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
            return _epoch_us(node.expressions[0])
        if isinstance(node, exp.DateDiff) and node.unit and node.unit.name.upper() in (
                "MICROSECOND", "MICROSECONDS", "US"):
            return exp.paren(exp.Sub(this=_epoch_us(node.this),
                                     expression=_epoch_us(node.expression)))
        if isinstance(node, exp.Avg) and not isinstance(node.parent, exp.Window):
            # DuckDB's avg of a DECIMAL is a DOUBLE; Trino's is a DECIMAL rounded to the scale
            arg = node.this
            return exp.Div(this=exp.cast(exp.func("sum", arg.copy()), "DOUBLE"),
                           expression=exp.func("count", arg.copy()), typed=True)
        if isinstance(node, exp.IntDiv):
            return exp.Div(this=node.this, expression=node.expression, typed=True)
        return node

    def stage(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.name == "transactions" and not node.db:
            alias = exp.TableAlias(this=exp.to_identifier(node.alias or "transactions"))
            return exp.Subquery(this=staged.copy(), alias=alias)
        return node

    staged = _rewrite(sqlglot.parse_one(staging_sql(table, where), read="duckdb"), swap)
    parsed = (sql_text.copy() if isinstance(sql_text, exp.Expr)
              else sqlglot.parse_one(sql_text, read="duckdb"))
    tree = _rewrite(parsed, swap).transform(stage)
    marked = tree.sql(dialect=dialect, pretty=True)
    order = tuple(_MARK.findall(marked))
    return Rendered(_MARK.sub("?", marked).strip().rstrip(";"), order)


def _rewrite(tree: exp.Expr, fn) -> exp.Expr:
    """Apply ``fn`` to every node, children first (sqlglot's transform does not revisit the
    children of a node it replaced, e.g. the inner ``//`` of ``(a // b) // c``)."""
    for node in list(tree.walk(bfs=False))[::-1]:  # reversed pre-order: children first
        new = fn(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                node.replace(new)
    return tree


def positional(order: Sequence[str], bound: Mapping[str, object]) -> list[object]:
    """The values for ``?`` placeholders named ``order`` (a name may repeat)."""
    missing = sorted(set(order) - set(bound))
    if missing:
        raise KeyError(f"no value bound for parameter(s): {', '.join(missing)}")
    return [bound[name] for name in order]
