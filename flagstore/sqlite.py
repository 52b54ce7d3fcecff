"""The embedded flag store (no MongoDB): one SQLite table ``flags``, writer and reader.

``SqliteFlagStore(path)`` (a ``FlagWriter``) keeps one row per ``FLAG_SCHEMA`` flag keyed by
``transaction_id`` (PRIMARY KEY), written with ``INSERT … ON CONFLICT DO UPDATE``, so a replay
updates rows and never duplicates them (``flagged_at`` keeps the first write). WAL journal mode
lets readers read while the consumer writes. Timestamps are ``TS_TEXT``, which sorts like time;
amounts exact text plus integer cents for range queries; ``rules_fired`` JSON text (filtered
by its quoted ids); ``evidence`` JSON text.

``SqliteFlagReader(path)`` (a ``FlagReader``) opens the file read-only, one connection per call:
cheap, thread-safe under Streamlit, and it sees a store that appears after it was made. A
missing file or table reads as no flags yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from flagstore.protocols import FlagReadError
from flagstore.query import FlagFilter, sql_where
from flagstore.schema import FLAG_SCHEMA, TS_TEXT, empty_flags, flag_frame, from_columns, ts_text


class FlagStoreSchemaError(RuntimeError):
    """The SQLite file holds a ``flags`` table of an older layout."""


def _sqlite_type(name: str, dtype: pl.DataType) -> str:
    if name == "transaction_id":
        return "TEXT PRIMARY KEY"
    kind = ("INTEGER" if dtype.is_integer() or dtype == pl.Boolean() else
            "REAL" if dtype.is_float() else "TEXT")
    required = name in ("user_id", "ts", "amount", "amount_cents", "rules_fired", "flagged_at")
    return f"{kind} NOT NULL" if required else kind


#: SQLite column → type, one per ``FLAG_SCHEMA`` column.
COLUMNS: dict[str, str] = {name: _sqlite_type(name, t) for name, t in FLAG_SCHEMA.items()}
INDEXES: dict[str, str] = {
    "flags_ts": "ts", "flags_user_ts": "user_id, ts", "flags_amount_cents": "amount_cents",
    "flags_flagged_at": "flagged_at, transaction_id",
}
# Built once from the constant column names above; every value is a bound ``?`` parameter.
UPSERT_SQL = (
    f"INSERT INTO flags ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "  # noqa: S608
    "ON CONFLICT(transaction_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in COLUMNS if n not in ("transaction_id", "flagged_at"))
)


def sqlite_rows(flags: pl.DataFrame) -> list[tuple]:
    """A ``FLAG_SCHEMA`` frame → rows in ``COLUMNS`` order, typed for SQLite (pure)."""
    return flags.select(
        *(pl.col(c).dt.strftime(TS_TEXT) if c in ("ts", "flagged_at") else
          pl.col(c).cast(pl.String) if c == "amount" else
          pl.col(c).cast(pl.Int64) if c == "is_fraud" else
          _json_ids(c) if c == "rules_fired" else
          pl.col(c) for c in COLUMNS)
    ).rows()


def _json_ids(col: str) -> pl.Expr:
    """A list of rule ids as JSON text; ids are ``[a-z][a-z0-9_]*``, JSON-safe unquoted."""
    quoted = pl.col(col).list.eval(pl.format('"{}"', pl.element()))
    return pl.format("[{}]", quoted.list.join(","))


class SqliteFlagStore:
    """``FlagWriter`` into the embedded store (see the module docstring). One connection;
    not thread-safe."""

    thread_safe = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self._create()

    def _create(self) -> None:
        body = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        with self.conn:
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS flags ({body})")
            have = [r[1] for r in self.conn.execute("PRAGMA table_info(flags)")]
            if have != list(COLUMNS):
                raise FlagStoreSchemaError(
                    f"{self.path}: table flags has an older layout; move the file away "
                    "(or point LOCAL_FLAGS_PATH elsewhere) and the store starts afresh")
            for name, cols in INDEXES.items():
                self.conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON flags ({cols})")

    def prepare(self) -> None:
        """Nothing to reach: the file and its table are made by the constructor."""

    def upsert(self, flagged: pl.DataFrame) -> int:
        """Insert or update flagged rows by transaction_id in one transaction."""
        if flagged.is_empty():
            return 0
        rows = sqlite_rows(flag_frame(flagged, datetime.now(UTC)))
        with self.conn:
            self.conn.executemany(UPSERT_SQL, rows)
        return len(rows)

    def delete_source_prefix(self, prefix: str) -> None:
        """Remove the flags whose ``source`` starts with ``prefix`` (the demo's reset)."""
        with self.conn:
            self.conn.execute("DELETE FROM flags WHERE substr(source, 1, ?) = ?",
                              (len(prefix), prefix))

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM flags").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteFlagStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_read_only(path: Path, timeout: float = 2.0) -> sqlite3.Connection | None:
    """A read-only connection to the SQLite file at ``path`` (``mode=ro``: never creates it);
    None while there is no file. ``sqlite3.Error`` propagates for the caller to name."""
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=timeout)


@dataclass(frozen=True)
class Appended:
    """What ``SqliteFlagReader.appended`` read in one read transaction."""

    top: int  #: the newest rowid (0: no rows)
    rows: int | None  #: every row of the table, when asked to count
    frames: list[pl.DataFrame]  #: ``FLAG_SCHEMA`` frames of the rows after ``after``, to ``top``


class SqliteFlagReader:
    """``FlagReader`` over the embedded store, read-only (see the module docstring).
    ``columns`` limits what is read (the others read as null); ``transaction_id`` always is."""

    _CHUNK = 50_000  # rows per frame while reading

    def __init__(self, path: Path, columns: tuple[str, ...] = tuple(FLAG_SCHEMA)) -> None:
        self.path = Path(path)
        self.label = f"local store {self.path}"
        self.key = f"local:{self.path.resolve()}"
        wanted = ["transaction_id", *(c for c in COLUMNS if c in columns and
                                      c != "transaction_id")]
        self._select = f"SELECT {', '.join(wanted)} FROM flags"  # noqa: S608 - constant names

    def _connect(self) -> sqlite3.Connection | None:
        try:
            return open_read_only(self.path)
        except sqlite3.Error as exc:
            raise FlagReadError(f"cannot open {self.label}: {exc}") from exc

    def _error(self, exc: sqlite3.Error) -> FlagReadError:
        """One line naming the store: not a SQLite file at all, or what failed reading it."""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
            return FlagReadError(f"{self.label} is not a SQLite flag store ({text})")
        return FlagReadError(f"cannot read {self.label}: {text}")

    def _chunks(self, cur: sqlite3.Cursor, size: int | None = None) -> Iterator[pl.DataFrame]:
        """The cursor's rows as ``FLAG_SCHEMA`` frames of at most ``size`` rows (column by
        column: no dict per row)."""
        names = [d[0] for d in cur.description]
        while rows := cur.fetchmany(size or self._CHUNK):
            columns = zip(*rows, strict=True)
            yield from_columns(dict(zip(names, columns, strict=True)), len(rows))

    def _frames(self, sql: str, params: list[object], size: int | None = None
                ) -> Iterator[pl.DataFrame]:
        """The rows of ``sql`` (``{select}`` stands for this reader's SELECT list) as frames;
        none while there is no store yet."""
        conn = self._connect()
        if conn is None:
            return
        try:
            yield from self._chunks(conn.execute(sql.replace("{select}", self._select), params),
                                    size)
        except sqlite3.Error as exc:
            if "no such table" not in str(exc):
                raise self._error(exc) from exc
        finally:
            conn.close()

    def appended(self, after: int, *, count: bool = False) -> Appended | None:
        """The rows with a rowid above ``after`` (the store only appends; a replay updates in
        place), the newest rowid and, with ``count``, the table's row count, all read in one
        transaction (consistent). None while there is no store or table yet."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            conn.execute("BEGIN")
            top = int(conn.execute("SELECT coalesce(max(rowid), 0) FROM flags").fetchone()[0])
            rows = int(conn.execute("SELECT count(*) FROM flags").fetchone()[0]) if count else None
            cur = conn.execute(f"{self._select} WHERE rowid > ? AND rowid <= ?", [after, top])
            return Appended(top, rows, list(self._chunks(cur)))
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return None
            raise self._error(exc) from exc
        finally:
            conn.close()

    def _frame(self, sql: str, params: list[object]) -> pl.DataFrame:
        return pl.concat([empty_flags(), *self._frames(sql, params)])

    def recent(self, f: FlagFilter, limit: int) -> pl.DataFrame:
        where, params = sql_where(f)
        sql = f"{{select}}{where} ORDER BY ts DESC, transaction_id DESC LIMIT ?"
        return self._frame(sql, [*params, int(limit)])

    def count(self, f: FlagFilter, cap: int) -> int:
        where, params = sql_where(f)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM flags{where} LIMIT ?)"  # noqa: S608 - fixed fragments, values bound
        conn = self._connect()
        if conn is None:
            return 0
        try:
            return int(conn.execute(sql, [*params, int(cap)]).fetchone()[0])
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return 0
            raise self._error(exc) from exc
        finally:
            conn.close()

    def export(self, f: FlagFilter) -> pl.DataFrame:
        where, params = sql_where(f)
        return self._frame(f"{{select}}{where} ORDER BY ts DESC, transaction_id DESC", params)

    def read_since(self, since: datetime | None, chunk_rows: int) -> Iterator[pl.DataFrame]:
        bound = ts_text(since or datetime(1, 1, 1, tzinfo=UTC))
        sql = "{select} WHERE flagged_at >= ? ORDER BY flagged_at, transaction_id"
        yield from self._frames(sql, [bound], size=chunk_rows)

    def close(self) -> None:
        """Nothing held open between calls."""
