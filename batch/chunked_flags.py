"""Run ``queries/rules/flags.sql`` over a large lake in time chunks, without a global sort.

This is the SQL engine of ``batch.backtest`` (``--engine sql``) and the chunk planner both
engines share; ``batch.fast_flags`` is the default engine (same chunks and carry, same decisions).

The rules look back at most one window (``high_frequency``) and one event (``geo_mismatch``),
so files are grouped into chunks of consecutive time (from each file's Parquet ``ts``
statistics) and each chunk is decided together with a small *carry*: per user the last event
(all of them if several share the last ts), plus every event of the last window. Decisions
equal those of one query over everything.

Chunks need disjoint time ranges: a chunk boundary is only placed where every earlier file ends
strictly before every later file starts. When files overlap in time (or lack statistics) they
simply share a chunk; at worst everything is one chunk, i.e. the plain query.

Per chunk the flags are counted per (year, is_fraud, fraud_scenario) in DuckDB, or, when a sink
wants the rows (``--flags-out``), streamed to it batch by batch and counted in Polars: the rows
are never materialized, and memory stays bounded by the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl
import pyarrow as pa

from fraudlake.contract import FLAGGED, RULE_NAMES
from queries import sql as queries_sql
from queries.params import RuleParams
from queries.staging import ParquetFile, open_source, staging_sql

FLAG_COLUMNS: tuple[str, ...] = ("transaction_id", *RULE_NAMES, FLAGGED)
_RULE_COLUMNS: tuple[str, ...] = (*RULE_NAMES, FLAGGED)
# Only fixed contract identifiers are spliced into these statements, never user input.
_DECIDED = ("SELECT CAST(year(ts) AS INTEGER) AS year, is_fraud, fraud_scenario, "  # noqa: S608
            + ", ".join(FLAG_COLUMNS) + " FROM ({flags}) WHERE $after IS NULL OR ts > $after")
_COUNTS = ("SELECT year, is_fraud, fraud_scenario, count(*) AS rows, "  # noqa: S608
           + ", ".join(f"count_if({c}) AS {c}" for c in _RULE_COLUMNS)
           + " FROM ({decided}) GROUP BY ALL")
_CARRY = """
CREATE OR REPLACE TEMP TABLE carry AS
WITH last_ts AS (
    SELECT user_id, max(ts) AS ts FROM transactions GROUP BY user_id
)
SELECT t.transaction_id, t.user_id, t.ts, t.lat, t.lon
FROM transactions t LEFT JOIN last_ts l ON t.user_id = l.user_id AND t.ts = l.ts
WHERE l.user_id IS NOT NULL OR t.ts >= $tail_start
"""

Sink = Callable[[pa.RecordBatch], None]


@dataclass(frozen=True)
class Chunk:
    files: tuple[ParquetFile, ...]
    rows: int
    last_ts: datetime | None = None  # largest ts in the chunk (None: unknown, the only chunk)


def plan_chunks(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile],
                target_rows: int) -> list[Chunk]:
    """Group files into time-ordered chunks of about ``target_rows`` with disjoint ts ranges.

    Files without rows ride along in the first chunk; if any other file lacks ts statistics,
    everything is one chunk.
    """
    stats = _file_stats(con, files)
    if stats is None:
        return [Chunk(tuple(files), 0)]
    by_path = {f.path: f for f in files}
    empty = [by_path[path] for path, lo, _, _ in stats if lo is None]
    chunks: list[Chunk] = []
    current: list[ParquetFile] = list(empty)
    rows = 0
    seen_max: datetime | None = None
    for path, lo, hi, n in (s for s in stats if s[1] is not None):
        if rows >= target_rows and seen_max is not None and lo > seen_max:
            chunks.append(Chunk(tuple(current), rows, seen_max))
            current, rows = [], 0
        current.append(by_path[path])
        rows += n
        seen_max = hi if seen_max is None else max(seen_max, hi)
    if current:
        chunks.append(Chunk(tuple(current), rows, seen_max))
    return chunks


def _file_stats(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile]):
    """[(path, min ts, max ts, rows)] by min ts (None for empty files); None if stats lack."""
    paths = [f.path for f in files]
    counts = dict(con.sql("SELECT file_name, num_rows FROM parquet_file_metadata($files)",
                          params={"files": paths}).fetchall())
    ranges = {r[0]: r[1:] for r in con.sql(
        "SELECT file_name, min(TRY_CAST(stats_min_value AS TIMESTAMPTZ)), "
        "max(TRY_CAST(stats_max_value AS TIMESTAMPTZ)), "
        "bool_or(TRY_CAST(stats_min_value AS TIMESTAMPTZ) IS NULL "
        "OR TRY_CAST(stats_max_value AS TIMESTAMPTZ) IS NULL) "
        "FROM parquet_metadata($files) WHERE path_in_schema = 'ts' "
        "AND row_group_num_rows > 0 GROUP BY file_name",
        params={"files": paths},
    ).fetchall()}
    out = []
    for path in paths:
        n = int(counts.get(path, 0))
        if n == 0:
            out.append((path, None, None, 0))
        elif path not in ranges or ranges[path][2]:
            return None
        else:
            out.append((path, ranges[path][0], ranges[path][1], n))
    return sorted(out, key=lambda r: (r[1] is not None, r[1] or datetime.min, r[0]))


def flag_counts(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk], params: RuleParams,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Decide every event of ``chunks`` (in order); return the counts frame (one part per chunk).
    """
    flags_sql = queries_sql.load_sql(queries_sql.FLAGS_QUERY)
    binds = queries_sql.bind(flags_sql, params)
    decided = _DECIDED.format(flags=flags_sql)
    con.execute("CREATE OR REPLACE TEMP TABLE carry (transaction_id VARCHAR, user_id BIGINT, "
                "ts TIMESTAMPTZ, lat DOUBLE, lon DOUBLE)")
    parts: list[pl.DataFrame] = []
    after: datetime | None = None  # previous chunk's last ts: rows up to it are only context
    for i, chunk in enumerate(chunks):
        present = open_source(con, chunk.files, source="chunk_source", view=None)
        staged = staging_sql(present, "chunk_source")
        con.execute(f"CREATE OR REPLACE TEMP VIEW transactions AS {staged} "  # noqa: S608
                    "UNION ALL BY NAME SELECT * FROM carry")
        chunk_binds = {**binds, "after": after}
        if sink is None:
            parts.append(con.sql(_COUNTS.format(decided=decided), params=chunk_binds).pl())
        else:
            parts.append(_stream(con.sql(decided, params=chunk_binds), sink))
        if i + 1 < len(chunks):
            assert chunk.last_ts is not None  # several chunks only come from ts statistics
            window = timedelta(seconds=params.high_frequency_window_seconds)
            con.execute(_CARRY, {"tail_start": chunk.last_ts - window})
            after = chunk.last_ts
        if progress:
            progress(chunk.rows)
    return pl.concat(parts) if parts else pl.DataFrame()


def _stream(rel: duckdb.DuckDBPyRelation, sink: Sink) -> pl.DataFrame:
    """Hand every batch of decided rows to ``sink``; count them on the way."""
    counts: list[pl.DataFrame] = []
    for batch in rel.to_arrow_reader(1 << 17):
        sink(batch.select(list(FLAG_COLUMNS)))
        frame = pl.from_arrow(batch)
        counts.append(frame.group_by("year", "is_fraud", "fraud_scenario").agg(
            pl.len().alias("rows"), *[pl.col(c).sum() for c in _RULE_COLUMNS]))
    return pl.concat(counts) if counts else pl.DataFrame()
