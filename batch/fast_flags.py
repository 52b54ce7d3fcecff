"""The fast backtest engine: DuckDB reads and decides the per-row rules, NumPy the per-user ones.

Same chunks, same carry idea and same decisions as ``batch.chunked_flags`` (the SQL engine), but
per chunk:

1. DuckDB scans the files (staged exactly as for the SQL) and returns only what is needed:
   ``transaction_id, user_id, ts`` (epoch µs), ``lat, lon``, ``fraud_scenario`` and one integer
   ``code`` = year, label state, ``high_amount`` and ``unusual_hour`` (the row-wise rules, in SQL,
   parameters bound). A background thread already scans the next chunk while NumPy works.
2. ``batch.window_rules`` decides ``high_frequency`` and ``geo_mismatch`` over the chunk plus the
   carry (the previous chunks' rows it still needs); carry rows are context only.
3. Counts per (year, is_fraud, fraud_scenario) come from one ``bincount`` over the code extended by
   the two window rules; the rare rows with a fraud scenario are grouped by Polars. With a sink
   (``--flags-out``) every row's flags go to it as an Arrow batch.

NULLs: a NULL ``lat``/``lon`` becomes NaN (no distance, never a geo mismatch, as in SQL); a rule
that is NULL in SQL (NULL ``amount`` or ``utc_offset_min``) counts as not fired, as it does in the
SQL engine's counts (only ``--flags-out`` then shows false instead of NULL). NULL ``user_id`` or
``ts`` would need SQL's NULL ordering: ``needs_sql_engine`` tells from the Parquet statistics when
to use the SQL engine instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from batch.chunked_flags import FLAG_COLUMNS, Chunk, Sink
from batch.window_rules import arrow_int64, as_numpy, window_flags
from fraudlake.contract import FLAGGED, RULE_NAMES
from queries import sql as queries_sql
from queries.params import RuleParams
from queries.staging import ParquetFile, open_source, staging_sql

# code = year * 64 + label * 16 + high_amount * 8 + unusual_hour * 4 (label: 0 NULL, 1 not fraud,
# 2 fraud); the two low bits are left for high_frequency (2) and geo_mismatch (1). A rule that is
# NULL (NULL amount or offset) counts as not fired. The unusual_hour arithmetic is that of
# queries/rules/flags.sql; the year is taken from a plain TIMESTAMP (the UTC year without the
# time-zone library: 3x cheaper). Only fixed identifiers are spliced in (the staged source),
# parameters are bound.
_ROWS_SQL = """
select
    transaction_id, user_id, ts_us, coalesce(lat, 'NaN'::double) as lat,
    coalesce(lon, 'NaN'::double) as lon, fraud_scenario,
    cast(year(make_timestamp(ts_us)) as integer) * 64
    + case when is_fraud is null then 0 when is_fraud then 32 else 16 end
    + case when amount > cast($high_amount_threshold as decimal(18, 2)) then 8 else 0 end
    + case when case
        when $unusual_hour_start_hour <= $unusual_hour_end_hour
            then local_hour >= $unusual_hour_start_hour and local_hour < $unusual_hour_end_hour
        else local_hour >= $unusual_hour_start_hour or local_hour < $unusual_hour_end_hour
      end then 4 else 0 end as code
from (
    select *, ((ts_us // 60000000 + utc_offset_min) // 60) % 24 as local_hour
    from (select *, epoch_us(ts) as ts_us from ({staged}))
)
"""
_COLUMNS = {"user_id": np.int64, "ts_us": np.int64, "lat": np.float64, "lon": np.float64}
_ORDER_COLUMNS = ("user_id", "ts")  # columns that must be free of NULLs


@dataclass(frozen=True)
class _Rows:
    """The arrays ``window_rules`` needs, for the rows of one chunk or of the carry."""
    user_id: np.ndarray
    ts_us: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    transaction_id: _Ids

    @classmethod
    def of(cls, carry: _Rows | None, table: pa.Table) -> _Rows:
        """The carry's rows, then the chunk's (one copy of each numeric column)."""
        before = [carry] if carry is not None else []
        arrays = [_join([getattr(c, name) for c in before] + [
            as_numpy(part) for part in table.column(name).chunks], dtype)
            for name, dtype in _COLUMNS.items()]
        ids = [part for c in before for part in c.transaction_id.parts]
        return cls(*arrays, _Ids(ids + table.column("transaction_id").chunks))

    def take(self, rows: np.ndarray) -> _Rows:
        return _Rows(*(a[rows] for a in (self.user_id, self.ts_us, self.lat, self.lon)),
                     _Ids([self.transaction_id.take(arrow_int64(rows))]))

    def __len__(self) -> int:
        return len(self.ts_us)


class _Ids:
    """transaction_id of the rows as the Arrow arrays they came in (concatenating them would
    copy every string); ``take`` gathers from each part."""

    def __init__(self, parts: list[pa.Array]) -> None:
        self.parts = [p for p in parts if len(p)] or [pa.array([], pa.string())]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def take(self, indices: pa.Array) -> pa.Array:
        rows = as_numpy(indices)
        if len(self.parts) == 1:
            return self.parts[0].take(indices)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        cuts = np.searchsorted(ordered, self.starts)
        taken = pa.concat_arrays([part.take(arrow_int64(ordered[a:b] - start)) for part, start, a, b
                                  in zip(self.parts, self.starts, cuts[:-1], cuts[1:],
                                         strict=False)])
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return taken.take(arrow_int64(back))

    def tail(self, start: int) -> pa.Array:
        """The ids from row ``start`` on (start = the end of a part)."""
        first = int(np.searchsorted(self.starts, start))
        assert self.starts[first] == start
        return pa.concat_arrays(self.parts[first:] or [pa.array([], pa.string())])


def needs_sql_engine(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile]) -> bool:
    """True unless every file's statistics show ``user_id`` and ``ts`` present and NULL-free."""
    rows = con.sql(
        "SELECT file_name, path_in_schema, sum(stats_null_count), bool_or(stats_null_count IS "
        "NULL) FROM parquet_metadata($files) WHERE row_group_num_rows > 0 GROUP BY ALL",
        params={"files": [f.path for f in files]}).fetchall()
    clean = {(f, c) for f, c, nulls, unknown in rows if not unknown and nulls == 0}
    nonempty = {f for f, *_ in rows}
    return any((f, c) not in clean for f in nonempty for c in _ORDER_COLUMNS)


def flag_counts(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk], params: RuleParams,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Decide every event of ``chunks`` (in order); return the counts frame (one part per chunk).
    """
    parts: list[pl.DataFrame] = []
    carry: _Rows | None = None
    for chunk, box in _prefetched(con, chunks, params):
        table = box.pop()  # the only reference: freed below, before the window rules run
        skip = len(carry) if carry is not None else 0  # carry rows come first, context only
        rows = _Rows.of(carry, table)
        code = _join([as_numpy(part) for part in table.column("code").chunks], np.int32)
        scenario = _column(table, "fraud_scenario")
        del table
        flags = window_flags(rows.user_id, rows.ts_us, rows.lat, rows.lon, rows.transaction_id,
                             params)
        hf, geo = (np.sort(r[r >= skip]) - skip for r in (flags.high_frequency,
                                                          flags.geo_mismatch))
        parts.append(_counts(code, hf, geo, scenario))
        if sink is not None:
            sink(_flag_batch(rows.transaction_id.tail(skip), code, hf, geo))
        carry = rows.take(flags.carry)
        if progress:
            progress(chunk.rows)
    return pl.concat(parts) if parts else pl.DataFrame()


def _prefetched(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk],
                params: RuleParams) -> Iterator[tuple[Chunk, list[pa.Table]]]:
    """Each chunk with its DuckDB result (in a list the caller empties, so that nothing here
    keeps it alive); the next chunk is scanned while this one is used."""
    cursor = con.cursor()  # used by the one worker thread only
    try:
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.execute("SET preserve_insertion_order = true")  # files in ts order: rows too
        cursor.execute("SET enable_progress_bar = false")  # the caller shows progress
        binds = queries_sql.bind(_ROWS_SQL, params)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as pool:
            pending = [pool.submit(_scan, cursor, chunk, binds) for chunk in chunks[:1]]
            for i, chunk in enumerate(chunks):
                pending += [pool.submit(_scan, cursor, c, binds) for c in chunks[i + 1:i + 2]]
                yield chunk, pending.pop(0).result()
    finally:
        cursor.close()


def _scan(cursor: duckdb.DuckDBPyConnection, chunk: Chunk, binds: dict) -> list[pa.Table]:
    present = open_source(cursor, chunk.files, source="fast_chunk_source", view=None)
    sql = _ROWS_SQL.format(staged=staging_sql(present, "fast_chunk_source"))
    return [cursor.sql(sql, params=binds).to_arrow_table()]


def _join(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks) \
        if col.num_chunks else pa.array([], col.type)


def _flag_batch(transaction_id: pa.Array, code: np.ndarray, hf: np.ndarray,
                geo: np.ndarray) -> pa.RecordBatch:
    ha, uh = (code & 8) != 0, (code & 4) != 0
    window = np.zeros((2, len(code)), dtype=bool)
    window[0, hf] = window[1, geo] = True
    columns = [ha, window[0], uh, window[1], ha | uh | window[0] | window[1]]
    return pa.RecordBatch.from_arrays([transaction_id, *map(pa.array, columns)],
                                      names=list(FLAG_COLUMNS))


def _counts(code: np.ndarray, hf: np.ndarray, geo: np.ndarray,
            scenario: pa.Array) -> pl.DataFrame:
    """Counts frame of one chunk from the row codes and the (sorted) rows of the window rules.

    One bincount over all codes; then corrections for the few rows a window rule flagged (their
    full code adds 2 for high_frequency, 1 for geo_mismatch) and for the few with a scenario,
    which Polars groups by scenario.
    """
    if len(code) == 0:
        return _decode(pl.DataFrame(schema={"full": pl.Int64, "fraud_scenario": pl.String,
                                            "rows": pl.Int64}))
    low, size = int(code.min()), int(code.max()) - int(code.min()) + 4
    bins = np.bincount(code - low, minlength=size)
    touched = np.union1d(hf, geo)
    extra = np.zeros(len(touched), dtype=np.int64)
    extra[np.searchsorted(touched, hf)] += 2
    extra[np.searchsorted(touched, geo)] += 1
    bins += np.bincount(code[touched] + extra - low, minlength=size)
    bins -= np.bincount(code[touched] - low, minlength=size)
    frame = pl.DataFrame({"full": np.arange(size) + low, "rows": bins}).filter(pl.col("rows") > 0)
    if scenario.null_count == len(scenario):
        return _decode(frame.with_columns(fraud_scenario=pl.lit(None, pl.String)))
    rare = as_numpy(pc.indices_nonzero(pc.is_valid(scenario))).astype(np.int64)
    full = code[rare].copy()
    at = np.minimum(np.searchsorted(touched, rare), max(len(touched) - 1, 0))
    hit = touched[at] == rare if len(touched) else np.zeros(len(rare), dtype=bool)
    full[hit] += extra[at[hit]]
    bins -= np.bincount(full - low, minlength=size)
    plain = pl.DataFrame({"full": np.arange(size) + low, "rows": bins}).filter(pl.col("rows") > 0)
    by_scenario = pl.DataFrame({"full": full, "fraud_scenario": pl.Series(scenario.take(
        arrow_int64(rare))).cast(pl.String)}).group_by("full", "fraud_scenario").agg(
        pl.len().cast(pl.Int64).alias("rows"))
    return _decode(pl.concat([plain.with_columns(fraud_scenario=pl.lit(None, pl.String)),
                              by_scenario], how="diagonal_relaxed"))


def _decode(frame: pl.DataFrame) -> pl.DataFrame:
    """(full code, scenario, rows) -> the counts frame of ``batch.hitrates``."""
    full, rows = pl.col("full"), pl.col("rows")
    bit = {"geo_mismatch": 1, "high_frequency": 2, "unusual_hour": 4, "high_amount": 8}
    label = (full // 16) % 4
    return frame.select(
        year=(full // 64).cast(pl.Int32),
        is_fraud=pl.when(label == 0).then(None).otherwise(label == 2),
        fraud_scenario=pl.col("fraud_scenario"),
        rows=rows,
        **{name: pl.when((full & bit[name]) > 0).then(rows).otherwise(0) for name in RULE_NAMES},
        **{FLAGGED: pl.when((full & 15) > 0).then(rows).otherwise(0)},
    )
