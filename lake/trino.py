"""Run the project's SQL on Trino (a cluster, Starburst, or the single node of
``python -m fraudlake.services up trino``): connection, input tables, query execution.

Where Trino is: env ``TRINO_URI`` (``http[s]://[user@]host:port``; default the local server on
``FRAUDLAKE_TRINO_PORT``, 8080), user ``TRINO_USER`` (default ``fraudlake``), password
``TRINO_PASSWORD`` (HTTP basic auth, https only; never logged or printed). The catalog and
schema come from flags (env ``TRINO_CATALOG``/``TRINO_SCHEMA``).

An ``--input`` becomes an external hive table over its folder: a local folder must lie under
the server's lake root (``FRAUDLAKE_TRINO_ROOT``, default ``storage/``) and is read as
``local:///…``; an ``s3://`` folder through the S3 catalog. Files in ``year=/month=`` folders
make a partitioned table with partition projection over the years present; other folders an
unpartitioned one. The table's name is derived from its DDL, so a rerun reuses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pyarrow as pa
from sqlglot import exp

from fraudlake import errors
from fraudlake.cli import EnvironmentFailure
from fraudlake.contract import EVENT_SCHEMA
from fraudlake.settings import (
    TRINO_CATALOG_ENV,
    TRINO_PASSWORD_ENV,
    TRINO_SCHEMA_ENV,
    TRINO_URI_ENV,
    TRINO_USER_ENV,
    TrinoSettings,
)
from lake.catalog import TableSpec, trino_ddl, trino_schema_ddl
from lake.sql_text import SqlTextError, check_identifier
from queries.trino_sql import Rendered, to_trino

URI_ENV, USER_ENV, PASSWORD_ENV = TRINO_URI_ENV, TRINO_USER_ENV, TRINO_PASSWORD_ENV
CATALOG_ENV, SCHEMA_ENV = TRINO_CATALOG_ENV, TRINO_SCHEMA_ENV
LOCAL_CATALOG, S3_CATALOG, DEFAULT_SCHEMA = "hive", "s3", "fraudlake"
BACKENDS = ("duckdb", "trino")


class TrinoError(EnvironmentFailure):
    """Trino could not be reached or failed a statement (an environment failure: exit 1)."""


class InputError(errors.InputError):
    """An input Trino cannot read as a table (bad argument: exit 2); the message says why."""


def default_uri() -> str:
    return TrinoSettings.from_env().uri


def lake_root() -> Path:
    """The folder the local server's ``hive`` catalog serves as ``local:///``."""
    from fraudlake.services import trino_root

    return trino_root()


@dataclass(frozen=True)
class TrinoTarget:
    """Where to run: server URI, catalog and schema (``None`` catalog: by input kind)."""

    uri: str = field(default_factory=default_uri)
    catalog: str | None = None
    schema: str = DEFAULT_SCHEMA
    user: str = field(default_factory=lambda: TrinoSettings.from_env().user)
    timezone: str | None = None  # the session time zone (None: the server's)
    password: str | None = field(default_factory=lambda: TrinoSettings.from_env().password,
                                 repr=False)

    def catalog_for(self, location: str) -> str:
        if self.catalog:
            return self.catalog
        return S3_CATALOG if location.startswith("s3://") else LOCAL_CATALOG

    def connect(self, catalog: str | None = None):
        """A ``trino.dbapi`` connection (lazy: nothing is sent before the first query)."""
        import trino

        parts = urlsplit(self.uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{URI_ENV} must look like http://host:8080, got {self.uri!r}")
        auth = None
        if self.password:
            if parts.scheme != "https":
                raise InputError(f"{PASSWORD_ENV} is only sent over https ({URI_ENV})")
            auth = trino.auth.BasicAuthentication(parts.username or self.user, self.password)
        return trino.dbapi.connect(
            host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 80),
            http_scheme=parts.scheme, user=parts.username or self.user, auth=auth,
            catalog=catalog or self.catalog or LOCAL_CATALOG, schema=self.schema,
            timezone=self.timezone, request_timeout=120.0)


# --- results ---------------------------------------------------------------------------------

def _arrow_type(trino_type: str) -> pa.DataType:
    t = trino_type.lower()
    if t.startswith("decimal"):
        p, s = t[t.index("(") + 1:t.index(")")].split(",")
        return pa.decimal128(int(p), int(s))
    if t.startswith("timestamp"):
        return pa.timestamp("us", "UTC" if "with time zone" in t else None)
    return {"boolean": pa.bool_(), "bigint": pa.int64(), "integer": pa.int32(),
            "smallint": pa.int16(), "tinyint": pa.int8(), "double": pa.float64(),
            "real": pa.float32(), "date": pa.date32()}.get(t, pa.string())


def execute(con, sql: str, params: Sequence[object] | None = None) -> pa.Table:
    """Run one statement; its rows as an Arrow table typed from Trino's column types."""
    import trino

    cur = con.cursor()
    try:
        cur.execute(sql, list(params) if params else None)
        rows = cur.fetchall()
    except trino.exceptions.TrinoUserError as exc:
        raise TrinoError(f"Trino refused the query: {exc.message}") from None
    except trino.exceptions.TrinoConnectionError:
        raise TrinoError(f"Trino at {con.host}:{con.port} is unreachable "
                         f"(start it: python -m fraudlake.services up trino; or set {URI_ENV})"
                         ) from None
    except (trino.exceptions.Error, OSError) as exc:  # the message names no credentials
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrinoError(f"Trino at {con.host}:{con.port} failed: {first[:300]}") from None
    desc = cur.description or []
    columns = {}
    for i, col in enumerate(desc):
        kind = _arrow_type(col[1])
        values = [r[i] for r in rows]
        if pa.types.is_string(kind):
            values = [None if v is None else str(v) for v in values]
        columns[col[0]] = pa.array(values, type=kind)
    return pa.table(columns) if desc else pa.table({})


def run_rendered(con, rendered: Rendered, bound: Mapping[str, object]) -> pa.Table:
    return execute(con, rendered.sql, rendered.values(bound))


def run_sql(target: TrinoTarget, sql_text: str | exp.Expr, table: str,
            bound: Mapping[str, object], where: str | None = None, con=None) -> pa.Table:
    """A DuckDB-dialect query (text or sqlglot tree) over ``transactions`` run on Trino over
    ``table``."""
    rendered = to_trino(sql_text, table, where)
    return run_rendered(con or target.connect(), rendered, bound)


# --- inputs as tables ------------------------------------------------------------------------

def input_location(text: str, root: Path | None = None) -> str:
    """The folder URI Trino reads for ``--input``: ``s3://…/`` as is, a local folder as
    ``local:///<path below the lake root>/``. InputError when it cannot be."""
    if text.startswith("s3://"):
        return text.rstrip("/") + "/"
    root = (root or lake_root()).resolve()
    path = Path(text).resolve()
    if not path.is_dir():
        raise InputError(f"--input for --backend trino must be a folder, got {text!r}")
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise InputError(f"--input {text!r} is not under the Trino server's lake root {root} "
                         "(FRAUDLAKE_TRINO_ROOT)") from None
    return "local:///" + (f"{rel.as_posix()}/" if rel.parts else "")


def describe_input(text: str, files: Sequence[str], database: str = DEFAULT_SCHEMA,
                   root: Path | None = None) -> TableSpec:
    """The table over ``--input``: partitioned when every file sits in ``year=/month=`` folders
    directly below it (projection over the years found), else unpartitioned."""
    location = input_location(text, root)
    base = text.rstrip("/") if text.startswith("s3://") else str(Path(text).resolve())
    years: set[int] = set()
    partitioned = bool(files)
    for f in files:
        rel = f[len(base):].lstrip("/").split("/") if f.startswith(base) else []
        if (len(rel) == 3 and rel[0].startswith("year=") and rel[1].startswith("month=")
                and rel[0][5:].isdigit() and rel[1][6:].isdigit()):
            years.add(int(rel[0][5:]))
        else:
            partitioned = False
            break
    spec = TableSpec(database, "pending", EVENT_SCHEMA, location,
                     (min(years), max(years)) if partitioned else (2000, 2000), partitioned)
    digest = hashlib.sha1(trino_ddl(spec).encode()).hexdigest()[:12]
    return replace(spec, name=f"input_{digest}")


def list_input_files(text: str) -> list[str]:
    """Parquet files below ``--input`` (local folder or ``s3://``), as path strings."""
    if text.startswith("s3://"):
        from lake.s3 import make_filesystem

        fs = make_filesystem(TrinoSettings.from_env().s3_endpoint_url)
        found = fs.find(text)
        return ["s3://" + p for p in found if p.endswith(".parquet")
                and not Path(p).name.startswith((".", "_"))]
    from queries.staging import resolve_input

    return [str(Path(f.path).resolve()) for f in resolve_input(str(Path(text).resolve()))]


def ensure_table(con, spec: TableSpec, catalog: str) -> str:
    """Create the schema and the external table unless they exist; the qualified name."""
    execute(con, trino_schema_ddl(spec.database, catalog))
    execute(con, trino_ddl(spec, catalog))
    return f"{catalog}.{spec.database}.{spec.name}"


def open_input(target: TrinoTarget, text: str):
    """(connection, qualified table) for ``--input`` on ``target``, the table created if new."""
    input_location(text)  # a local folder outside the lake root fails before any listing
    spec = describe_input(text, list_input_files(text), target.schema)
    catalog = target.catalog_for(spec.location)
    con = target.connect(catalog)
    return con, ensure_table(con, spec, catalog)


def frame(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table)  # type: ignore[return-value]


# --- CLI wiring (batch.backtest, python -m queries) ------------------------------------------

def add_backend_args(parser) -> None:
    """``--backend duckdb|trino`` and where Trino is (credentials only from the env)."""
    parser.add_argument("--backend", choices=BACKENDS, default="duckdb",
                        help="duckdb (default): run here; trino: run the same SQL on Trino "
                             f"(env {URI_ENV}, {USER_ENV}, {PASSWORD_ENV})")
    settings = TrinoSettings.from_env()
    parser.add_argument("--trino-catalog", default=settings.catalog,
                        help=f"Trino catalog (env {CATALOG_ENV}; default {LOCAL_CATALOG} for a "
                             f"local --input, {S3_CATALOG} for s3://)")
    parser.add_argument("--trino-schema", default=settings.schema or DEFAULT_SCHEMA,
                        help=f"Trino schema for the input tables (env {SCHEMA_ENV}, "
                             f"default {DEFAULT_SCHEMA})")


def target_from_args(args) -> TrinoTarget | None:
    """The Trino target of ``--backend trino`` (None for duckdb); catalog and schema must be
    plain identifiers (they are written into DDL text): InputError (exit 2) otherwise."""
    if getattr(args, "backend", "duckdb") != "trino":
        return None
    try:
        if args.trino_catalog:
            check_identifier(args.trino_catalog, f"Trino catalog (--trino-catalog, {CATALOG_ENV})")
        check_identifier(args.trino_schema, f"Trino schema (--trino-schema, {SCHEMA_ENV})")
    except SqlTextError as exc:
        raise InputError(str(exc)) from None
    return TrinoTarget(catalog=args.trino_catalog, schema=args.trino_schema)
