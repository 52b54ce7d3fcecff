"""Lake reads for the dashboard: DuckDB over the history and the live lake, files passed bound.

Two kinds of reads:

- history (``Settings.history_dir``, ~47M rows, changes rarely): aggregated ONCE into a small
  Parquet cache (per-user baselines + per-day totals), keyed by a fingerprint of the files'
  paths, sizes and mtimes; a new or rewritten history file makes a new cache.
  ``python -m dashboard.baseline`` builds it ahead of time.
- live lake (``Settings.lake_transactions_dir``, the consumer's output): small, read per refresh,
  only the month folders the asked time range touches.

Every query binds its file list and values as ``$name`` parameters.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from lake.layout import HIVE_TYPES, month_of

#: One row per user: what is usual for them (history + live lake).
BASELINE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(), "txn_count": pl.Int64(), "median_amount": pl.Float64(),
    "usual_city": pl.String(), "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
}
#: One row per time bucket: events and total amount.
SERIES_SCHEMA = pl.Schema({
    "bucket": pl.Datetime("us", "UTC"), "events": pl.Int64(), "amount": pl.Float64(),
})

_SOURCE = "read_parquet($files, hive_partitioning=true, union_by_name=true, hive_types=$ht)"

BASELINE_SQL = f"""
SELECT user_id, count(*)::BIGINT AS txn_count, median(amount)::DOUBLE AS median_amount,
       mode(city) AS usual_city, min(ts) AS first_seen, max(ts) AS last_seen
FROM {_SOURCE}
WHERE $all_users OR user_id IN (SELECT unnest($users::BIGINT[]))
GROUP BY user_id
"""  # noqa: S608 - constant fragments only; every value is a bound parameter

SERIES_SQL = f"""
SELECT date_trunc($unit, ts) AS bucket, count(*)::BIGINT AS events,
       sum(amount)::DOUBLE AS amount
FROM {_SOURCE}
WHERE ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)
GROUP BY 1 ORDER BY 1
"""  # noqa: S608 - constant fragments only; every value is a bound parameter

WINDOW_SQL = f"""
SELECT count(*)::BIGINT AS events, count_if(flagged)::BIGINT AS flagged, min(ts) AS first_ts
FROM {_SOURCE}
WHERE ts >= $since
"""  # noqa: S608 - constant fragments only; every value is a bound parameter

MIN_TS_SQL = f"SELECT min(ts) FROM {_SOURCE}"  # noqa: S608 - constant
MAX_TS_SQL = f"SELECT max(ts) FROM {_SOURCE}"  # noqa: S608 - constant


_DB: duckdb.DuckDBPyConnection | None = None
_DB_LOCK = threading.Lock()


def connect() -> duckdb.DuckDBPyConnection:
    """A cursor on one shared in-memory DuckDB (opening a database costs ~20 ms; a cursor
    ~nothing). Cursors are safe to use from different threads, one thread each."""
    global _DB
    with _DB_LOCK:
        if _DB is None:
            _DB = duckdb.connect()
        con = _DB.cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


def fingerprint(files: Sequence[Path]) -> str:
    """Changes whenever a file is added, removed or rewritten."""
    h = hashlib.sha1(usedforsecurity=False)
    for p in files:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def files_in_range(files: Sequence[Path], since: datetime | None,
                   until: datetime | None = None) -> list[Path]:
    """Keep files whose ``year=/month=`` folder can hold events in [since, until)."""
    lo = None if since is None else since.year * 12 + since.month - 1
    hi = None if until is None else until.year * 12 + until.month - 1
    kept = []
    for p in files:
        ym = month_of(p)
        if ym is None:
            kept.append(p)
            continue
        k = ym[0] * 12 + ym[1] - 1
        if (lo is None or k >= lo) and (hi is None or k <= hi):
            kept.append(p)
    return kept


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]
           ) -> pl.DataFrame:
    return pl.DataFrame(con.sql(sql, params=params).to_arrow_table())


def _params(files: Sequence[Path], **extra: object) -> dict[str, object]:
    return {"files": [str(p) for p in files], "ht": dict(HIVE_TYPES), **extra}


def user_baselines(files: Sequence[Path], user_ids: Sequence[int] | None = None,
                   con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame:
    """Per-user baseline over ``files``; all users when ``user_ids`` is None."""
    if not files or (user_ids is not None and not user_ids):
        return pl.DataFrame(schema=BASELINE_SCHEMA)
    con = con or connect()
    params = _params(files, all_users=user_ids is None, users=[int(u) for u in user_ids or []])
    df = _frame(con, BASELINE_SQL, params)
    return df.cast(pl.Schema(BASELINE_SCHEMA)).select(list(BASELINE_SCHEMA))


def amount_series(files: Sequence[Path], unit: str, since: datetime | None,
                  until: datetime | None = None,
                  con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame:
    """Events and amount per ``unit`` bucket (minute/hour/day/month) in [since, until)."""
    files = files_in_range(files, since, until)
    if not files:
        return pl.DataFrame(schema=SERIES_SCHEMA)
    con = con or connect()
    df = _frame(con, SERIES_SQL, _params(files, unit=unit, since=since, until=until))
    return df.cast(pl.Schema(SERIES_SCHEMA)).select(list(SERIES_SCHEMA))


def window_counts(files: Sequence[Path], since: datetime,
                  con: duckdb.DuckDBPyConnection | None = None) -> tuple[int, int]:
    """(events, flagged events) in the live lake since ``since``."""
    files = files_in_range(files, since)
    if not files:
        return 0, 0
    con = con or connect()
    events, flagged, _ = con.execute(WINDOW_SQL, _params(files, since=since)).fetchall()[0]
    return int(events or 0), int(flagged or 0)


def min_ts(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
           ) -> datetime | None:
    if not files:
        return None
    con = con or connect()
    return con.execute(MIN_TS_SQL, _params(files)).fetchall()[0][0]


def max_ts(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
           ) -> datetime | None:
    if not files:
        return None
    con = con or connect()
    return con.execute(MAX_TS_SQL, _params(files)).fetchall()[0][0]


BOUNDS_SQL = """
SELECT filename, min(ts) AS lo, max(ts) AS hi
FROM read_parquet($files, hive_partitioning=true, union_by_name=true, hive_types=$ht,
                  filename=true)
GROUP BY filename
"""  # noqa: S608 - constant fragments only; every value is a bound parameter

_BOUNDS: dict[tuple[str, int, int], tuple[datetime | None, datetime | None]] = {}
_BOUNDS_LOCK = threading.Lock()


def _versions(files: Sequence[Path]) -> dict[str, tuple[str, int, int]]:
    keys = {}
    for p in files:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        keys[str(p)] = (str(p), st.st_size, st.st_mtime_ns)
    return keys


def file_bounds(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
                ) -> dict[str, tuple[datetime | None, datetime | None]]:
    """path → (oldest, newest) event time; each file read once per version (path, size,
    mtime), so a refresh reads only the files written since the last one."""
    keys = _versions(files)
    with _BOUNDS_LOCK:
        todo = [path for path, k in keys.items() if k not in _BOUNDS]
    if todo:
        con = con or connect()
        rows = con.execute(BOUNDS_SQL, _params([Path(t) for t in todo])).fetchall()
        with _BOUNDS_LOCK:
            if len(_BOUNDS) > 100_000:
                _BOUNDS.clear()
            for name, lo, hi in rows:
                if name in keys:
                    _BOUNDS[keys[name]] = (lo, hi)
    with _BOUNDS_LOCK:
        return {path: _BOUNDS.get(k, (None, None)) for path, k in keys.items()}


def ts_bounds(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
              ) -> tuple[datetime | None, datetime | None]:
    """(oldest, newest) event time over ``files``."""
    got = file_bounds(files, con).values()
    los = [lo for lo, _ in got if lo is not None]
    his = [hi for _, hi in got if hi is not None]
    return (min(los) if los else None), (max(his) if his else None)


def files_since(files: Sequence[Path], since: datetime,
                con: duckdb.DuckDBPyConnection | None = None) -> list[Path]:
    """The files holding an event at or after ``since`` (by their memoized bounds)."""
    bounds = file_bounds(files, con)
    return [p for p in files if (hi := bounds.get(str(p), (None, None))[1]) is not None
            and hi >= since]


MINUTES_SQL = """
SELECT filename, date_trunc('minute', ts) AS bucket, count(*)::BIGINT AS events,
       count_if(flagged)::BIGINT AS flagged, sum(amount)::DOUBLE AS amount
FROM read_parquet($files, hive_partitioning=true, union_by_name=true, hive_types=$ht,
                  filename=true)
GROUP BY 1, 2
"""  # noqa: S608 - constant fragments only; every value is a bound parameter
MINUTES_SCHEMA = pl.Schema({
    "bucket": pl.Datetime("us", "UTC"), "events": pl.Int64(), "flagged": pl.Int64(),
    "amount": pl.Float64()})
_MINUTES: dict[tuple[str, int, int], pl.DataFrame] = {}


def live_minutes(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
                 ) -> pl.DataFrame:
    """Events, flagged events and amount per minute over the live lake's ``files`` (which
    carry ``flagged``). Each file is aggregated once per version (path, size, mtime): a
    refresh reads only the files written since the last one (the live lake only grows, and a
    compaction writes new files)."""
    keys = _versions(files)
    with _BOUNDS_LOCK:
        todo = [path for path, k in keys.items() if k not in _MINUTES]
    if todo:
        con = con or connect()
        got = _frame(con, MINUTES_SQL, _params([Path(t) for t in todo]))
        with _BOUNDS_LOCK:
            if len(_MINUTES) > 100_000:
                _MINUTES.clear()
            for (name,), part in got.partition_by("filename", as_dict=True).items():
                if name in keys:
                    _MINUTES[keys[str(name)]] = part.drop("filename").cast(
                        MINUTES_SCHEMA).select(list(MINUTES_SCHEMA))
            for t in todo:  # a file with no rows
                _MINUTES.setdefault(keys[t], pl.DataFrame(schema=MINUTES_SCHEMA))
    with _BOUNDS_LOCK:
        parts = [_MINUTES[k] for k in keys.values() if k in _MINUTES]
    if not parts:
        return pl.DataFrame(schema=MINUTES_SCHEMA)
    return (pl.concat(parts).group_by("bucket").agg(pl.col("events", "flagged", "amount").sum())
            .sort("bucket"))


_RULE_MINUTES_SQL = """
SELECT filename, date_trunc('minute', ts) AS bucket, rule, count(*)::BIGINT AS hits
FROM (SELECT filename, ts, unnest({fired}) AS rule
      FROM read_parquet($files, hive_partitioning=true, union_by_name=true, hive_types=$ht,
                        filename=true))
WHERE rule IS NOT NULL
GROUP BY 1, 2, 3
"""  # noqa: S608 - {fired} is built from constant rule names; every value is bound
_COLUMNS_SQL = f"SELECT column_name FROM (DESCRIBE SELECT * FROM {_SOURCE})"  # noqa: S608


def columns(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None) -> set[str]:
    """The column names of ``files`` read together (union by name; parquet footers only)."""
    if not files:
        return set()
    con = con or connect()
    return {r[0] for r in con.execute(_COLUMNS_SQL, _params(files)).fetchall()}
RULE_MINUTES_SCHEMA = pl.Schema({
    "bucket": pl.Datetime("us", "UTC"), "rule": pl.String(), "hits": pl.Int64()})
_RULE_MINUTES: dict[tuple[str, int, int], pl.DataFrame] = {}


def _fired_expr(columns: set[str]) -> str | None:
    """SQL for the ids that fired on a row: lake v2's ``rules_fired``; for a v1 file the names
    of its true rule columns; None when the files carry neither."""
    from fraudlake.contract import RULE_NAMES

    v1 = [f"CASE WHEN {r} THEN '{r}' END" for r in RULE_NAMES if r in columns]
    v1_list = f"list_filter([{', '.join(v1)}], lambda x: x IS NOT NULL)" if v1 else None
    if "rules_fired" in columns:
        return f"coalesce(rules_fired, {v1_list})" if v1_list else "rules_fired"
    return v1_list


def live_rule_minutes(files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
                      ) -> pl.DataFrame:
    """Hits per rule id per minute over the live lake's ``files`` — every event a rule fired
    on, flagged or not (a rule below the alert threshold fires without raising an alert).
    Memoised per file version like ``live_minutes``."""
    keys = _versions(files)
    with _BOUNDS_LOCK:
        todo = [path for path, k in keys.items() if k not in _RULE_MINUTES]
    if todo:
        con = con or connect()
        params = _params([Path(t) for t in todo])
        fired = _fired_expr(columns([Path(t) for t in todo], con))
        got = (_frame(con, _RULE_MINUTES_SQL.format(fired=fired), params) if fired
               else pl.DataFrame(schema={"filename": pl.String(), **RULE_MINUTES_SCHEMA}))
        with _BOUNDS_LOCK:
            if len(_RULE_MINUTES) > 100_000:
                _RULE_MINUTES.clear()
            for (name,), part in got.partition_by("filename", as_dict=True).items():
                if name in keys:
                    _RULE_MINUTES[keys[str(name)]] = part.drop("filename").cast(
                        RULE_MINUTES_SCHEMA).select(list(RULE_MINUTES_SCHEMA))
            for t in todo:
                _RULE_MINUTES.setdefault(keys[t], pl.DataFrame(schema=RULE_MINUTES_SCHEMA))
    with _BOUNDS_LOCK:
        parts = [_RULE_MINUTES[k] for k in keys.values() if k in _RULE_MINUTES]
    if not parts:
        return pl.DataFrame(schema=RULE_MINUTES_SCHEMA)
    return pl.concat(parts).group_by("bucket", "rule").agg(pl.col("hits").sum()).sort(
        "rule", "bucket")
