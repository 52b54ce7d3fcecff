"""The fast backtest engine: DuckDB scans, ``rules.kernels`` decide a rule set with NumPy.

Same chunks, same carry idea and same decisions as ``batch.chunked_flags`` (the SQL engine), and
the same call: ``flag_counts(con, chunks, rule_set, sink, progress)`` returns the counts frame of
``batch.hitrates`` (``year, is_fraud, fraud_scenario, rows``, one Int64 per rule id, ``flagged``);
a sink gets Arrow batches of ``transaction_id``, one bool per rule id, ``score``, ``flagged``.
Per chunk:

1. DuckDB scans the files (staged exactly as for the SQL) and returns only the columns the rule
   set reads (``rules.kernels.needed_columns``): ``ts`` as epoch µs, ``amount`` as int64 cents,
   plus one integer ``code`` = year and label, ``fraud_scenario`` and ``ok`` (no NULL core
   column). A background thread already scans the next chunk while NumPy works.
2. The carry (kept in ts order) and the chunk are sorted once by (user_id, ts, transaction_id)
   (``batch.window_rules``); ``rules.kernels.decide_events`` decides every rule; carry rows are
   context only. A row with a NULL core column is decided false on every
   rule and seen by no other row (DESIGN.md, NULLs).
3. Counts per (year, is_fraud, fraud_scenario): a ``bincount`` of the code per rule over the
   rows it fired on; the rare rows with a fraud scenario are grouped by Polars.
4. The next carry: per user the rows ``rules.kernels.retention`` names, in ts order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from batch.chunked_flags import Chunk, Sink
from batch.window_rules import IdParts, arrow_int64, as_numpy, order_events
from queries.staging import ParquetFile, open_source, staging_sql
from rules.kernel_events import bools
from rules.kernels import (
    CORE_COLUMNS,
    Events,
    context_columns,
    decide_events,
    needed_columns,
    retained,
    retention,
)

# Numeric inputs of the kernels (NULLs coalesced; ``ok`` says whether the row is decidable) and
# the SQL that makes them. Only fixed identifiers (contract column names) are spliced in.
_NUMERIC = {"user_id": "user_id", "ts_us": "ts_us",
            "amount_cents": "CAST(amount * 100 AS BIGINT)", "lat": "lat", "lon": "lon",
            "utc_offset_min": "utc_offset_min"}
_DTYPES = {"user_id": np.int64, "ts_us": np.int64, "amount_cents": np.int64,
           "lat": np.float64, "lon": np.float64, "utc_offset_min": np.int32}
_ROWS_SQL = """
select transaction_id, {numeric}{strings},
    (cast(coalesce(year(make_timestamp(ts_us)) + 1, 0) as integer) * 4
     + case when is_fraud is null then 0 when is_fraud then 2 else 1 end) as code,
    fraud_scenario,
    ({ok}) as ok
from (select *, epoch_us(ts) as ts_us from ({staged}))
"""
_CODE_LABEL = {0: None, 1: False, 2: True}
Observer = Callable[[pa.Table, Mapping[str, np.ndarray]], None]
#: The scan's columns an observer sees.
OBSERVED = ("transaction_id", "user_id", "ts_us", "amount_cents", "code", "fraud_scenario")


def flags_schema(rule_set) -> pa.Schema:
    """``--flags-out`` rows: transaction_id, one bool per rule id (file order), score, flagged."""
    return pa.schema([("transaction_id", pa.string()),
                      *[(rid, pa.bool_()) for rid in rule_set.rule_ids],
                      ("score", pa.float64()), ("flagged", pa.bool_())])


def needs_sql_engine(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile]) -> bool:
    """False: this engine decides rows with NULL core columns itself (kept for callers that
    still ask, from the v1 engine that could not)."""
    return False


@dataclass
class _Carry:
    """Rows later chunks may need, in ts order: numeric columns as arrays, string columns and
    transaction ids as Arrow arrays."""

    columns: dict[str, np.ndarray | pa.Array]
    ids: pa.Array

    def __len__(self) -> int:
        return len(self.ids)


def flag_counts(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk], rule_set,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None,
                observe: Observer | None = None) -> pl.DataFrame:
    """Decide every event of ``chunks`` (in order); return the counts frame (one part per chunk).

    ``observe(table, fired)`` (the what-if runner) sees each chunk's scan (``transaction_id,
    user_id, ts_us, amount_cents, code, fraud_scenario``, ...) with each rule's decisions.
    """
    strings = [c for c in needed_columns(rule_set) if c not in (*CORE_COLUMNS, "transaction_id")]
    keep = retention(rule_set)
    schema = flags_schema(rule_set)
    parts: list[pl.DataFrame] = []
    carry: _Carry | None = None
    for chunk, box in _prefetched(con, chunks, strings):
        part, carry, batch = _decide_chunk(box, carry, rule_set, strings, keep, schema,
                                           want_rows=sink is not None, observe=observe)
        parts.append(part)
        if sink is not None and batch is not None:
            sink(batch)
        if progress:
            progress(chunk.rows)
    return pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()


def _decide_chunk(box: list[pa.Table], carry: _Carry | None, rule_set, strings: list[str], keep,
                  schema: pa.Schema, want_rows: bool, observe: Observer | None = None):
    """(counts of the chunk, the next carry, the chunk's flag rows or None); ``box`` holds the
    only reference to the chunk's table, so its columns are freed once copied out."""
    table = box.pop()
    n = table.num_rows
    ok = _column(table, "ok")
    good = None if n == 0 or pc.all(ok).as_py() else np.flatnonzero(bools(ok))
    skip = len(carry) if carry is not None else 0  # carry rows come first, context only
    cols = _columns(carry, table, strings, good)
    chunk_ids = table.column("transaction_id").chunks
    if good is not None:
        chunk_ids = [_column(table, "transaction_id").take(arrow_int64(good))]
    ids = IdParts(([carry.ids] if carry is not None else []) + chunk_ids)
    table = table.select(["transaction_id", "code", "fraud_scenario"] if observe is None else
                         list(OBSERVED))  # the rest is copied
    perm, us, ts = order_events(cols["user_id"], cols["ts_us"], ids)
    events = Events(perm, us, ts, cols)
    del cols, perm, us, ts
    decided = decide_events(events, rule_set)
    next_carry = _next_carry(events, ids, keep, context_columns(rule_set))
    del events, ids  # the chunk's kernel inputs: freed before counting and the sink's rows
    fired = {rid: _spread(hit[skip:], good, n) for rid, hit in decided.fired.items()}
    flagged = _spread(decided.flagged[skip:], good, n)
    code = _join([as_numpy(p) for p in table.column("code").chunks], np.int32)
    part = _counts(code, fired, flagged, _column(table, "fraud_scenario"), rule_set.rule_ids)
    if observe is not None:
        observe(table, fired)
    batch = None
    if want_rows:
        batch = pa.RecordBatch.from_arrays(
            [_column(table, "transaction_id"), *[pa.array(fired[r]) for r in rule_set.rule_ids],
             pa.array(_spread(decided.score[skip:], good, n)), pa.array(flagged)],
            schema=schema)
    return part, next_carry, batch


def _columns(carry: _Carry | None, table: pa.Table, strings: list[str],
             good: np.ndarray | None) -> dict[str, np.ndarray | pa.Array | pa.ChunkedArray]:
    """The kernels' input columns: the carry's rows, then the chunk's decidable rows (numeric
    columns copied once, strings left in their Arrow parts)."""
    cols: dict[str, np.ndarray | pa.Array | pa.ChunkedArray] = {}
    for name, dtype in _DTYPES.items():
        parts = [as_numpy(p) for p in table.column(name).chunks]
        if good is not None:
            parts = [_join(parts, dtype)[good]]
        before = [carry.columns[name]] if carry is not None else []
        cols[name] = _join(before + parts, dtype)
    for name in strings:
        parts = table.column(name).chunks
        if good is not None:
            parts = [_column(table, name).take(arrow_int64(good))]
        before = [] if carry is None else [
            carry.columns.get(name, pa.nulls(len(carry), pa.string()))]
        cols[name] = pa.chunked_array(before + parts, type=pa.string())
    return cols


def _next_carry(events: Events, ids: IdParts, keep, context: tuple[str, ...]) -> _Carry:
    """The rows ``keep`` retains, in row order (= ts order): numeric columns and the string
    columns that matter on context rows (``rules.kernels.context_columns``)."""
    mask = np.zeros(len(events), dtype=bool)
    mask[events.rows_of(np.flatnonzero(retained(events.user, events.ts, keep)))] = True
    rows = np.flatnonzero(mask)
    taken = arrow_int64(rows)
    return _Carry({name: (col.take(taken).combine_chunks() if isinstance(col, pa.ChunkedArray)
                          else np.asarray(col)[rows]) for name, col in events.columns.items()
                   if not isinstance(col, pa.ChunkedArray) or name in context},
                  ids.take(taken))


def _spread(values: np.ndarray, good: np.ndarray | None, n: int) -> np.ndarray:
    """Values of the decided rows placed at their rows of the chunk (others zero/False)."""
    if good is None:
        return values
    out = np.zeros(n, dtype=values.dtype)
    out[good] = values
    return out


def _prefetched(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk],
                strings: list[str]) -> Iterator[tuple[Chunk, list[pa.Table]]]:
    """Each chunk with its DuckDB result (in a list the caller empties, so that nothing here
    keeps it alive); the next chunk is scanned while this one is decided."""
    cursor = con.cursor()  # used by the one worker thread only
    try:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.execute("SET preserve_insertion_order = true")  # files in ts order: rows too
        cursor.execute("SET enable_progress_bar = false")  # the caller shows progress
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as pool:
            pending = [pool.submit(_scan, cursor, chunk, strings) for chunk in chunks[:1]]
            for i, chunk in enumerate(chunks):
                pending += [pool.submit(_scan, cursor, c, strings) for c in chunks[i + 1:i + 2]]
                yield chunk, pending.pop(0).result()
    finally:
        cursor.close()


def _scan(cursor: duckdb.DuckDBPyConnection, chunk: Chunk, strings: list[str]) -> list[pa.Table]:
    present = open_source(cursor, chunk.files, source="fast_chunk_source", view=None)
    return [cursor.sql(rows_sql(staging_sql(present, "fast_chunk_source"), strings))
            .to_arrow_table()]


def rows_sql(staged: str, strings: Sequence[str]) -> str:
    """The scan of one chunk (``strings``: contract column names, never user text)."""
    numeric = ", ".join(f"coalesce({expr}, 0) as {name}" for name, expr in _NUMERIC.items())
    core = [c if c != "ts" else "ts_us" for c in CORE_COLUMNS]
    return _ROWS_SQL.format(numeric=numeric, strings="".join(f", {s}" for s in strings),
                            ok=" and ".join(f"{c} is not null" for c in core), staged=staged)


def _join(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks) \
        if col.num_chunks else pa.array([], col.type)


def _counts(code: np.ndarray, fired: dict[str, np.ndarray], flagged: np.ndarray,
            scenario: pa.Array, rule_ids: Sequence[str]) -> pl.DataFrame:
    """Counts frame of one chunk: per code (year, label) a bincount of the rows each rule fired
    on, minus the rows with a fraud scenario, which Polars groups by scenario."""
    decided = {**fired, "flagged": flagged}
    size = int(code.max()) + 1 if len(code) else 1
    plain = {"code": np.arange(size), "rows": np.bincount(code, minlength=size)}
    for name, hit in decided.items():
        plain[name] = np.bincount(code[hit], minlength=size)
    rare = np.flatnonzero(bools(pc.is_valid(scenario))) \
        if scenario.null_count < len(scenario) else None
    frames = []
    if rare is not None and len(rare):
        by = pl.DataFrame({"code": code[rare], "fraud_scenario": pl.Series(
            scenario.take(arrow_int64(rare))).cast(pl.String),
            **{name: hit[rare] for name, hit in decided.items()}})
        grouped = by.group_by("code", "fraud_scenario").agg(
            pl.len().cast(pl.Int64).alias("rows"),
            *[pl.col(c).sum().cast(pl.Int64) for c in decided])
        frames.append(grouped)
        plain["rows"] = plain["rows"] - np.bincount(code[rare], minlength=size)
        for name, hit in decided.items():
            plain[name] = plain[name] - np.bincount(code[rare[hit[rare]]], minlength=size)
    frames.insert(0, pl.DataFrame(plain).filter(pl.col("rows") > 0).with_columns(
        fraud_scenario=pl.lit(None, pl.String)))
    out = pl.concat([f.select("code", "fraud_scenario", "rows", *decided).cast(
        {"code": pl.Int64, "rows": pl.Int64, **dict.fromkeys(decided, pl.Int64)}) for f in frames])
    year = pl.col("code") // 4 - 1
    return out.select(
        year=pl.when(year >= 0).then(year).cast(pl.Int32),
        is_fraud=pl.col("code").mod(4).replace_strict(_CODE_LABEL, return_dtype=pl.Boolean),
        fraud_scenario=pl.col("fraud_scenario"), rows=pl.col("rows"),
        **{name: pl.col(name) for name in (*rule_ids, "flagged")})
