"""Input side of every query: resolve a lake path to Parquet files and stage them in DuckDB.

``resolve_input`` turns a file, a folder (searched recursively, hive folders or not) or a glob
into a sorted list of Parquet files. ``open_source`` registers them in a DuckDB connection as the
view ``transactions`` that every ``.sql`` file reads: the contract columns cast to their exact
types, with optional columns (labels, category, …) present as NULL when the files lack them.
Values such as the year are derived from ``ts``, not from the folder names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from fraudlake.contract import (
    EVENT_SCHEMA,
    REQUIRED_COLUMNS,
    ContractError,
    check_columns,
)
from fraudlake.errors import InputError
from lake.layout import month_of, resolve_files

#: DuckDB spelling of each contract column's type (the staging view casts to these).
DUCKDB_TYPES: dict[str, str] = {
    "transaction_id": "VARCHAR", "user_id": "BIGINT", "ts": "TIMESTAMPTZ",
    "amount": "DECIMAL(18, 2)", "lat": "DOUBLE", "lon": "DOUBLE", "utc_offset_min": "INTEGER",
    "is_fraud": "BOOLEAN", "fraud_scenario": "VARCHAR",
    **{name: "VARCHAR" for name in EVENT_SCHEMA if name not in (
        "transaction_id", "user_id", "ts", "amount", "lat", "lon", "utc_offset_min", "is_fraud",
        "fraud_scenario")},
}
STAGED_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA)


@dataclass(frozen=True)
class ParquetFile:
    path: str
    year: int | None  # from a `year=YYYY` folder, if any
    month: int | None  # from a `month=MM` folder, if any


def resolve_input(text: str) -> list[ParquetFile]:
    """Files behind a path, folder or glob (``lake.layout.resolve_files``); ``NoDataError``
    when there are none."""
    return [_describe(p) for p in resolve_files(text)]


def _describe(path: Path) -> ParquetFile:
    ym = month_of(path.parent)
    return ParquetFile(str(path), *(ym or (None, None)))


def connect(threads: int | None = None,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with UTC session time and optional resource limits."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{_checked_size(memory_limit)}'")
    return con


def _checked_size(text: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?i?B", text.strip(), re.IGNORECASE):
        raise InputError(f"bad memory limit {text!r} (e.g. 2GiB, 1500MB)")
    return text.strip()


def open_source(
    con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile], source: str = "source",
    view: str | None = "transactions",
) -> list[str]:
    """Register ``files`` as view ``source`` (raw) and ``view`` (staged); return raw columns.

    InputError when the files cannot be read or a core column is missing or mistyped.
    """
    try:
        rel = con.read_parquet([f.path for f in files], union_by_name=True)
        schema = rel.limit(0).pl().schema
    except (duckdb.Error, OSError) as exc:
        raise InputError(f"cannot read Parquet input: {_first_line(exc)}") from None
    check_schema(schema)
    rel.create_view(source, replace=True)
    if view:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {staging_sql(schema.names(), source)}")
    return list(schema.names())


def check_schema(schema: pl.Schema) -> None:
    try:
        check_columns(dict(schema), REQUIRED_COLUMNS)
    except ContractError as exc:
        raise InputError(str(exc)) from None


def staging_sql(present: Iterable[str], source: str = "source") -> str:
    """SELECT of the contract columns from ``source``: cast, or NULL when absent.

    Only fixed contract identifiers and types are spliced in, never user input.
    """
    have = set(present)
    exprs = [
        f"CAST({name} AS {DUCKDB_TYPES[name]}) AS {name}" if name in have
        else f"CAST(NULL AS {DUCKDB_TYPES[name]}) AS {name}"
        for name in STAGED_COLUMNS
    ]
    return "SELECT " + ", ".join(exprs) + f" FROM {source}"  # noqa: S608


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
