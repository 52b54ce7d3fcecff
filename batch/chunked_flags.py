"""Run the composed flags query of a rule set over a large lake in time chunks, no global sort.

This is the SQL engine of ``batch.backtest`` (``--engine sql``) and the chunk planner both
engines share. Both engines implement one call (``batch.fast_flags`` is the fast one)::

    flag_counts(con, chunks, rule_set, sink=None, progress=None) -> pl.DataFrame

- ``con``: a DuckDB connection (``queries.staging.connect``); ``chunks``: ``plan_chunks`` output;
  ``rule_set``: a ``rules.model.RuleSet``.
- returns the *counts frame* of ``batch.hitrates`` (module docstring there): ``year, is_fraud,
  fraud_scenario, rows``, one Int64 column per rule id in file order, ``flagged``; the same group
  may appear in several rows (e.g. one part per chunk); the caller sums with
  ``hitrates.normalize_counts(counts, rule_set.rule_ids)``.
- ``sink`` (``--flags-out``), when given, receives every decided row once, in Arrow record
  batches of exactly ``flags_schema(rule_set)``: ``transaction_id`` (string), one bool per rule
  id (file order), ``score`` (float64 = exact sum of fired weights), ``flagged`` (bool); rows in
  any order; decided columns never NULL (a row with a NULL core column is false everywhere,
  score 0).
- ``progress(n)``: called with ``chunk.rows`` after each chunk.

The rules look back a bounded time (velocity windows, the new_device lookback) and a bounded
number of events (the previous event, the last ``history`` amounts): ``carry_needs`` says how
much. Files are grouped into chunks of consecutive time (from each file's Parquet ``ts``
statistics) and each chunk is decided together with a *carry* from the chunks before it: per
user every decidable event of the last ``horizon`` before the chunk's end and the user's last
``last_k`` decidable events. Carry rows are context only (not decided again, not counted), and
decisions equal those of one query over everything.

Chunks need disjoint time ranges: a chunk boundary is only placed where every earlier file ends
strictly before every later file starts. When files overlap in time (or lack statistics) they
simply share a chunk; at worst everything is one chunk, i.e. the plain query.

Per chunk the flags are counted per (year, is_fraud, fraud_scenario) in DuckDB, or, when a sink
wants the rows, streamed to it batch by batch and counted in Polars: the rows are never
materialized, and memory stays bounded by the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import polars as pl
import pyarrow as pa

from batch.hitrates import FLAGGED, check_rule_ids
from queries.compose import FlagsQuery, compose_flags
from queries.staging import ParquetFile, open_source, staging_sql
from rules.model import RuleSet

# Only fixed identifiers and the composer's positional columns (r1 ...) are spliced into these
# statements, never anything from a rule file; values are bound.
_DECIDED = ("SELECT CAST(year(ts) AS INTEGER) AS year, is_fraud, fraud_scenario, "  # noqa: S608
            "transaction_id, {columns}, score, flagged FROM ({flags}) "
            "WHERE $after IS NULL OR ts IS NULL OR ts > $after")
_COUNTS = ("SELECT year, is_fraud, fraud_scenario, count(*) AS rows, {counts} "  # noqa: S608
           "FROM ({decided}) GROUP BY ALL")
# The carry is a suffix of each user's history: the last `horizon`, and the last k events (k = 1:
# every event at the user's last ts, found by a hash aggregate; k > 1: a window).
_CARRY_LAST = """
CREATE OR REPLACE TEMP TABLE carry AS
WITH decidable AS (
    SELECT * FROM transactions
    WHERE user_id IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL AND lat IS NOT NULL
    AND lon IS NOT NULL AND utc_offset_min IS NOT NULL
),
last_ts AS (SELECT user_id, max(ts) AS ts FROM decidable GROUP BY user_id)
SELECT d.* FROM decidable d LEFT JOIN last_ts l ON d.user_id = l.user_id AND d.ts = l.ts
WHERE l.user_id IS NOT NULL OR d.ts >= $tail_start
"""
_CARRY_LAST_K = """
CREATE OR REPLACE TEMP TABLE carry AS
SELECT * FROM transactions
WHERE user_id IS NOT NULL AND ts IS NOT NULL AND amount IS NOT NULL AND lat IS NOT NULL
    AND lon IS NOT NULL AND utc_offset_min IS NOT NULL
QUALIFY ts >= $tail_start OR row_number() OVER (
    PARTITION BY user_id ORDER BY ts DESC, transaction_id DESC) <= $last_k
"""

Sink = Callable[[pa.RecordBatch], None]
#: TRANSITIONAL: the v1 flag columns, imported by the v1 ``batch.fast_flags`` only; delete with
#: ``batch.v1_fast`` when the rule-set fast engine (issue-13vec) is merged.
FLAG_COLUMNS: tuple[str, ...] = ("transaction_id", "high_amount", "high_frequency",
                                 "unusual_hour", "geo_mismatch", FLAGGED)


def flags_schema(rule_set: RuleSet) -> pa.Schema:
    """The rows a sink receives / ``--flags-out`` holds: transaction_id, one bool per rule id
    (file order), score, flagged."""
    check_rule_ids(rule_set.rule_ids)
    return pa.schema([("transaction_id", pa.string()),
                      *[(rid, pa.bool_()) for rid in rule_set.rule_ids],
                      ("score", pa.float64()), (FLAGGED, pa.bool_())])


@dataclass(frozen=True)
class CarryNeeds:
    """What a later event may still need of earlier ones, per user."""

    horizon: timedelta  # every event with ts >= (chunk end - horizon)
    last_k: int  # and always the user's last k events (>= 1)


def carry_needs(rule_set: RuleSet) -> CarryNeeds:
    seconds, last_k = 0, 1
    for rule in rule_set.rules:
        if rule.kind in ("velocity_count", "velocity_amount"):
            seconds = max(seconds, int(rule.params["window_seconds"]))
        elif rule.kind == "new_device":
            seconds = max(seconds, int(rule.params["lookback_days"]) * 86400)
        elif rule.kind == "amount_vs_history":
            last_k = max(last_k, int(rule.params["history"]))
    return CarryNeeds(timedelta(seconds=seconds), last_k)


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


def flag_counts(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk], rule_set: RuleSet,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """Decide every event of ``chunks`` (in order); return the counts frame (one part per chunk).
    """
    schema = flags_schema(rule_set)
    query = compose_flags(rule_set)
    needs = carry_needs(rule_set)
    decided = _DECIDED.format(columns=", ".join(query.columns), flags=query.sql)
    counts = _COUNTS.format(decided=decided, counts=", ".join(
        f"count_if({c}) AS {c}" for c in (*query.columns, "flagged")))
    parts: list[pl.DataFrame] = []
    after: datetime | None = None  # previous chunk's last ts: rows up to it are only context
    for i, chunk in enumerate(chunks):
        present = open_source(con, chunk.files, source="chunk_source", view=None)
        staged = staging_sql(present, "chunk_source")
        union = " UNION ALL BY NAME SELECT * FROM carry" if after is not None else ""
        con.execute(f"CREATE OR REPLACE TEMP VIEW transactions AS {staged}{union}")  # noqa: S608
        binds = {**query.params, "after": after}
        if sink is None:
            part = con.sql(counts, params=binds).pl()
        else:
            part = _stream(con.sql(decided, params=binds), sink, query, schema)
        if part.width:
            parts.append(part.rename(query.names))
        if i + 1 < len(chunks):
            assert chunk.last_ts is not None  # several chunks only come from ts statistics
            tail_start = chunk.last_ts - needs.horizon
            if needs.last_k == 1:
                con.execute(_CARRY_LAST, {"tail_start": tail_start})
            else:
                con.execute(_CARRY_LAST_K, {"tail_start": tail_start, "last_k": needs.last_k})
            after = chunk.last_ts
        if progress:
            progress(chunk.rows)
    return pl.concat(parts) if parts else pl.DataFrame()


def _stream(rel: duckdb.DuckDBPyRelation, sink: Sink, query: FlagsQuery,
            schema: pa.Schema) -> pl.DataFrame:
    """Hand every batch of decided rows to ``sink``; count them on the way."""
    columns = (*query.columns, "flagged")
    counts: list[pl.DataFrame] = []
    for batch in rel.to_arrow_reader(1 << 17):
        out = batch.select(["transaction_id", *query.columns, "score", "flagged"])
        sink(pa.RecordBatch.from_arrays(out.columns, schema=schema))
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        counts.append(frame.group_by("year", "is_fraud", "fraud_scenario").agg(
            pl.len().alias("rows"), *[pl.col(c).sum() for c in columns]))
    return pl.concat(counts) if counts else pl.DataFrame()
