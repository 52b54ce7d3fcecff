"""Triage: one case per alert (status, assignee, notes) with an audit trail, beside the flags.

Stored apart from the flags so that no consumer replay or demo re-run touches it:

- embedded mode: tables ``cases`` and ``case_audit`` in the SQLite flag store's file;
- MongoDB: collections ``cases`` and ``case_audit`` in the flags' database (``fraud.cases``).

An alert without a case row is ``open``. ``CaseStore.act`` is idempotent: an action that
changes nothing (the same status again, a re-sent form) writes nothing; every change writes
one audit entry per field (who, when, what: old → new). Audit entries of the MongoDB store
have deterministic ids (``<transaction_id>:<version>:<field>``), so a retried write never
duplicates them, and the case is updated only if it is still at the version that was read
(two analysts at once: one wins, the other is told to reload).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from flagstore.schema import ts_text
from flagstore.sqlite import open_read_only

STATUSES: tuple[str, ...] = ("open", "fraud", "legitimate", "escalated")
CASE_COLUMNS: dict[str, pl.DataType] = {
    "transaction_id": pl.String(), "status": pl.String(), "assignee": pl.String(),
    "notes": pl.Int64(), "updated_at": pl.Datetime("us", "UTC"), "updated_by": pl.String(),
    "version": pl.Int64(),
}
AUDIT_COLUMNS: dict[str, pl.DataType] = {
    "at": pl.Datetime("us", "UTC"), "user": pl.String(), "field": pl.String(),
    "old": pl.String(), "new": pl.String(),
}
MAX_NOTE = 2_000


class CaseError(RuntimeError):
    """The case store cannot be read or written; one line for the page."""


class CaseConflict(CaseError):
    """The case changed since it was read (another analyst): reload and retry."""


@dataclass(frozen=True)
class Action:
    """What an analyst asks for on one alert; None = leave as is."""

    transaction_id: str
    user: str
    status: str | None = None
    assignee: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.user:
            raise CaseError("sign in to change a case")
        if self.status is not None and self.status not in STATUSES:
            raise CaseError(f"status must be one of {', '.join(STATUSES)}")
        if self.note is not None and len(self.note) > MAX_NOTE:
            raise CaseError(f"a note is at most {MAX_NOTE} characters")


def changes(current: dict | None, action: Action) -> list[tuple[str, str | None, str]]:
    """(field, old, new) for every field the action changes (pure; empty = nothing to do)."""
    cur = current or {"status": "open", "assignee": None}
    out: list[tuple[str, str | None, str]] = []
    if action.status is not None and action.status != cur.get("status"):
        out.append(("status", cur.get("status"), action.status))
    assignee = None if action.assignee is None else action.assignee.strip()
    if assignee is not None and assignee != (cur.get("assignee") or ""):
        out.append(("assignee", cur.get("assignee"), assignee))
    note = (action.note or "").strip()
    if note:
        out.append(("note", None, note))
    return out


class CaseStore(Protocol):
    label: str

    def cases(self) -> pl.DataFrame:
        """Every case (``CASE_COLUMNS``); alerts without a row are open."""
        ...

    def audit(self, transaction_id: str) -> pl.DataFrame:
        """The case's audit trail, oldest first (``AUDIT_COLUMNS``)."""
        ...

    def act(self, action: Action, now: datetime | None = None) -> int:
        """Apply ``action``; return how many fields changed (0: nothing written)."""
        ...


def _case_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CASE_COLUMNS, orient="row") if rows else \
        pl.DataFrame(schema=CASE_COLUMNS)


class SqliteCaseStore:
    """Cases in the embedded store's SQLite file (its own two tables)."""

    _DDL = (
        "CREATE TABLE IF NOT EXISTS cases (transaction_id TEXT PRIMARY KEY, status TEXT NOT NULL,"
        " assignee TEXT, notes INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,"
        " updated_by TEXT NOT NULL, version INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS case_audit (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " transaction_id TEXT NOT NULL, at TEXT NOT NULL, user TEXT NOT NULL, field TEXT NOT NULL,"
        " old TEXT, new TEXT)",
        "CREATE INDEX IF NOT EXISTS case_audit_txn ON case_audit (transaction_id, id)",
    )

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.label = f"cases in {self.path}"

    def _connect(self, write: bool) -> sqlite3.Connection | None:
        try:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=10.0)
                conn.execute("PRAGMA journal_mode=WAL")
                with conn:
                    for ddl in self._DDL:
                        conn.execute(ddl)
                return conn
            return open_read_only(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise CaseError(f"cannot open {self.label}: {_line(exc)}") from exc

    def _read(self, sql: str, params: list[Any]) -> list[tuple]:
        conn = self._connect(write=False)
        if conn is None:
            return []
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise CaseError(f"cannot read {self.label}: {_line(exc)}") from exc
        except sqlite3.Error as exc:
            raise CaseError(f"cannot read {self.label}: {_line(exc)}") from exc
        finally:
            conn.close()

    def cases(self) -> pl.DataFrame:
        rows = self._read("SELECT transaction_id, status, assignee, notes, updated_at, "
                          "updated_by, version FROM cases", [])
        return _case_frame([dict(zip(CASE_COLUMNS, r, strict=True))
                            | {"updated_at": _parse(r[4])} for r in rows])

    def audit(self, transaction_id: str) -> pl.DataFrame:
        rows = self._read("SELECT at, user, field, old, new FROM case_audit "
                          "WHERE transaction_id = ? ORDER BY id", [transaction_id])
        if not rows:
            return pl.DataFrame(schema=AUDIT_COLUMNS)
        return pl.DataFrame([(_parse(r[0]), *r[1:]) for r in rows], schema=AUDIT_COLUMNS,
                            orient="row")

    def act(self, action: Action, now: datetime | None = None) -> int:
        now = now or datetime.now(UTC)
        conn = self._connect(write=True)
        assert conn is not None
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT status, assignee, notes, version FROM cases "
                                   "WHERE transaction_id = ?", [action.transaction_id]).fetchone()
                current = None if row is None else dict(
                    zip(("status", "assignee", "notes", "version"), row, strict=True))
                todo = changes(current, action)
                if not todo:
                    return 0
                cur = current or {"status": "open", "assignee": None, "notes": 0, "version": 0}
                new = _apply(cur, todo)
                at = ts_text(now)
                conn.execute(
                    "INSERT INTO cases (transaction_id, status, assignee, notes, updated_at, "
                    "updated_by, version) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(transaction_id)"
                    " DO UPDATE SET status = excluded.status, assignee = excluded.assignee, "
                    "notes = excluded.notes, updated_at = excluded.updated_at, "
                    "updated_by = excluded.updated_by, version = excluded.version",
                    [action.transaction_id, new["status"], new["assignee"], new["notes"],
                     at, action.user, new["version"]])
                conn.executemany(
                    "INSERT INTO case_audit (transaction_id, at, user, field, old, new) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(action.transaction_id, at, action.user, f, o, n) for f, o, n in todo])
            return len(todo)
        except sqlite3.Error as exc:
            raise CaseError(f"cannot write {self.label}: {_line(exc)}") from exc
        finally:
            conn.close()


class MongoCaseStore:
    """Cases in MongoDB (``<db>.cases`` + ``<db>.case_audit``), beside ``<db>.flags``."""

    def __init__(self, client: Any, db: str) -> None:
        self._db = client[db]
        self.label = f"MongoDB {db}.cases"

    def _guard(self, what: str, fn):
        from pymongo.errors import PyMongoError

        try:
            return fn()
        except PyMongoError as exc:
            raise CaseError(f"{self.label}: {what} failed: {_line(exc)}") from exc

    def cases(self) -> pl.DataFrame:
        docs = self._guard("find", lambda: list(self._db["cases"].find({})))
        return _case_frame([{**{k: d.get(k) for k in CASE_COLUMNS}, "transaction_id": d["_id"]}
                            for d in docs])

    def audit(self, transaction_id: str) -> pl.DataFrame:
        docs = self._guard("find", lambda: list(self._db["case_audit"].find(
            {"transaction_id": transaction_id}, sort=[("version", 1), ("seq", 1)])))
        if not docs:
            return pl.DataFrame(schema=AUDIT_COLUMNS)
        return pl.DataFrame([{k: d.get(k) for k in AUDIT_COLUMNS} for d in docs],
                            schema=AUDIT_COLUMNS)

    def act(self, action: Action, now: datetime | None = None) -> int:
        from pymongo.errors import BulkWriteError, DuplicateKeyError

        now = now or datetime.now(UTC)
        cases = self._db["cases"]
        current = self._guard("find", lambda: cases.find_one({"_id": action.transaction_id}))
        todo = changes(current, action)
        if not todo:
            return 0
        cur = current or {"status": "open", "assignee": None, "notes": 0, "version": 0}
        new = _apply(cur, todo)
        audit = [{"_id": f"{action.transaction_id}:{new['version']}:{i}:{f}",
                  "transaction_id": action.transaction_id, "version": new["version"], "seq": i,
                  "at": now, "user": action.user, "field": f, "old": o, "new": n}
                 for i, (f, o, n) in enumerate(todo)]
        doc = {"status": new["status"], "assignee": new["assignee"], "notes": new["notes"],
               "updated_at": now, "updated_by": action.user, "version": new["version"]}
        try:
            if current is None:
                self._guard("insert", lambda: cases.insert_one(
                    {"_id": action.transaction_id, **doc}))
            else:
                res = self._guard("update", lambda: cases.update_one(
                    {"_id": action.transaction_id, "version": cur["version"]}, {"$set": doc}))
                if res.matched_count == 0:
                    raise CaseConflict("the case changed meanwhile; reload and try again")
        except DuplicateKeyError as exc:
            raise CaseConflict("the case changed meanwhile; reload and try again") from exc
        try:
            self._guard("audit", lambda: self._db["case_audit"].insert_many(audit,
                                                                           ordered=False))
        except BulkWriteError:  # already written by an earlier try: ids are deterministic
            pass
        return len(todo)


def _apply(cur: dict, todo: list[tuple[str, str | None, str]]) -> dict:
    new: dict[str, Any] = {"status": cur.get("status") or "open",
                           "assignee": cur.get("assignee"), "notes": int(cur.get("notes") or 0),
                           "version": int(cur.get("version") or 0) + 1}
    for field, _old, value in todo:
        if field == "note":
            new["notes"] += 1
        else:
            new[field] = value
    return new


def with_status(flags: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Flags + their case's status/assignee (``open`` when no case)."""
    return (flags.join(cases.select("transaction_id", "status", "assignee"),
                       on="transaction_id", how="left")
            .with_columns(pl.col("status").fill_null("open")))


def confirmed_precision(flags: pl.LazyFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Per rule: alerts an analyst called fraud / (fraud + legitimate) among ``flags``."""
    decided = cases.filter(pl.col("status").is_in(["fraud", "legitimate"])).select(
        "transaction_id", (pl.col("status") == "fraud").alias("confirmed"))
    if decided.is_empty():
        return pl.DataFrame(schema={"rule": pl.String(), "confirmed": pl.Int64(),
                                    "decided": pl.Int64(), "confirmed_precision": pl.Float64()})
    return (flags.select("transaction_id", "rules_fired").join(decided.lazy(), on="transaction_id")
            .explode("rules_fired").group_by(pl.col("rules_fired").alias("rule"))
            .agg(pl.col("confirmed").sum().cast(pl.Int64).alias("confirmed"),
                 pl.len().cast(pl.Int64).alias("decided"))
            .with_columns((pl.col("confirmed") / pl.col("decided")).alias("confirmed_precision"))
            .sort("rule").collect())


def overall_confirmed(flags: pl.LazyFrame, cases: pl.DataFrame) -> float | None:
    """fraud / (fraud + legitimate) over the analyst verdicts among ``flags``."""
    decided = cases.filter(pl.col("status").is_in(["fraud", "legitimate"])).select(
        "transaction_id", "status")
    if decided.is_empty():
        return None
    got = flags.select("transaction_id").join(decided.lazy(), on="transaction_id").collect()
    return (got.filter(pl.col("status") == "fraud").height / got.height) if got.height else None


def _parse(text: str) -> datetime:
    """``TS_TEXT`` (ISO-8601 with ``Z``) back to an aware UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
