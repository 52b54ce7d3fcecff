"""``batch.backtest --backend trino``: the same backtest with the rule set's SQL run by Trino.

The input becomes an external table (``lake.trino``) and the rule set's composed flags query
(``queries.compose``, columns named by rule id) is rendered for Trino (``queries.trino_sql``).
Every rule decides an event from the same user's events only, so the work is split into user
buckets (``abs(user_id % n)``; NULL users in bucket 0) of about ``--chunk-rows`` rows each:
bucket results are exact and independent, and no bucket needs more than one node's memory.
Per bucket Trino returns the counts per (year, is_fraud, fraud_scenario) — the counts frame of
``batch.hitrates`` — or, with ``--flags-out``, the decided rows (fetched over Trino's HTTP
protocol: fine for millions of rows, slow for tens of millions).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence

import polars as pl
import pyarrow as pa
from sqlglot import exp
from tqdm import tqdm

from batch.density import Density
from batch.hitrates import (
    FLAGGED,
    GROUP_COLUMNS,
    hit_rates,
    hit_rates_by_year,
    normalize_counts,
    rule_columns,
)
from lake import trino
from queries import sql as queries_sql
from queries.compose import compose_flags
from queries.trino_sql import to_trino
from rules.model import RuleSet

_BUCKET = "coalesce(abs(user_id % $fl_buckets), 0) = $fl_bucket"
_YEAR = "cast(year(ts) as integer) as year"
Sink = Callable[[pa.RecordBatch], None]
# batch.density's figures over `transactions`, in DuckDB SQL for to_trino (Trino has no exact
# median: the middle of the sorted array of active spans, interpolated as DuckDB's median is).
_DENSITY = """
with per_card as (
    select user_id, count(*) as n,
           cast(epoch_us(max(ts)) - epoch_us(min(ts)) as double) / 86400000000.0 + 1.0
               as active_days
    from transactions
    where user_id is not null and ts is not null
    group by user_id
),
spans as (
    select count(*) as cards, coalesce(sum(n), 0) as rows,
           coalesce(sum(active_days), 0) as days, list_sort(list(active_days)) as sorted
    from per_card
)
select cards, rows, days,
       case when cards = 0 then 0.0
            when cards % 2 = 1 then sorted[(cards + 1) // 2]
            else sorted[cards // 2] + (sorted[cards // 2 + 1] - sorted[cards // 2]) * 0.5
       end as median_days
from spans
"""


def bucket_count(rows: int, chunk_rows: int) -> int:
    return max(1, math.ceil(rows / max(1, chunk_rows)))


def _quoted(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def decided_query(rule_set: RuleSet, rows: bool) -> exp.Expr:
    """A DuckDB-dialect tree over ``transactions``: per (year, is_fraud, fraud_scenario) the row
    count and one ``count_if`` per rule id and ``flagged`` (``rows=False``), or one row per
    transaction with ``year``, the labels and the ``--flags-out`` columns (``rows=True``).
    Rule ids enter only as quoted identifiers built by sqlglot, never as SQL text."""
    flags = exp.Subquery(this=queries_sql.named_flags_tree(rule_set),
                         alias=exp.TableAlias(this=exp.to_identifier("decided")))
    year: exp.Expr = exp.maybe_parse(_YEAR, dialect="duckdb")
    if rows:
        cols = [year, *(exp.column(c) for c in GROUP_COLUMNS[1:]), exp.column("transaction_id"),
                *(exp.column(_quoted(r)) for r in rule_set.rule_ids), exp.column("score"),
                exp.column(FLAGGED)]
        return exp.select(*cols).from_(flags)
    counts = [exp.alias_(exp.func("count_if", exp.column(_quoted(c))), _quoted(c))
              for c in rule_columns(rule_set.rule_ids)]
    select = exp.select(year, *(exp.column(c) for c in GROUP_COLUMNS[1:]),
                        exp.alias_(exp.Count(this=exp.Star()), "rows"), *counts).from_(flags)
    return select.group_by(*(exp.Literal.number(i) for i in range(1, len(GROUP_COLUMNS) + 1)))


def flag_counts(target: trino.TrinoTarget, input_text: str, rule_set: RuleSet, chunk_rows: int,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None) -> tuple[pl.DataFrame, int, int]:
    """(counts frame, buckets, rows) of ``rule_set`` over ``input_text`` decided by Trino."""
    con, table = trino.open_input(target, input_text)
    rows = trino.execute(con, f"SELECT count(*) AS n FROM {table}")["n"][0].as_py()  # noqa: S608
    buckets = bucket_count(rows, chunk_rows)
    bound = {**compose_flags(rule_set).params, "fl_buckets": buckets}
    rendered = to_trino(decided_query(rule_set, rows=sink is not None), table, where=_BUCKET)
    ids = rule_set.rule_ids
    parts: list[pl.DataFrame] = []
    for b in range(buckets):
        out = trino.run_rendered(con, rendered, {**bound, "fl_bucket": b})
        if sink is None:
            parts.append(pl.from_arrow(out))  # type: ignore[arg-type]
        else:
            decided = pl.from_arrow(out)
            assert isinstance(decided, pl.DataFrame)
            for batch in out.select(["transaction_id", *ids, "score", FLAGGED]).to_batches():
                sink(batch)
            parts.append(decided.group_by(*GROUP_COLUMNS).agg(
                pl.len().alias("rows"), *[pl.col(c).sum() for c in rule_columns(ids)]))
        if progress:
            progress(rows // buckets)
    counts = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    return counts, buckets, rows


def density(con, table: str) -> Density:
    """``batch.density.density`` of ``table``, computed by Trino."""
    row = trino.run_rendered(con, to_trino(_DENSITY, table), {}).to_pylist()[0]
    return Density(int(row["cards"]), int(row["rows"]), float(row["days"]),
                   float(row["median_days"]))


def run_backtest(cfg):
    """``batch.backtest.run_backtest`` for ``cfg.backend == "trino"`` (same result type)."""
    from batch.backtest import BacktestResult, _FlagsWriter, report_dict
    from fraudlake.atomic import write_text

    start = time.perf_counter()
    target = cfg.trino or trino.TrinoTarget()
    with _FlagsWriter(cfg.flags_out, cfg.rule_set) as writer, tqdm(
        unit="rows", unit_scale=True, file=sys.stderr, disable=None if cfg.progress else True,
        desc="backtest (trino)",
    ) as bar:
        counts, buckets, _ = flag_counts(target, cfg.input, cfg.rule_set, cfg.chunk_rows,
                                         writer.write if cfg.flags_out else None, bar.update)
        spread = density(*trino.open_input(target, cfg.input))
    counts = normalize_counts(_empty_if_none(counts, cfg.rule_set.rule_ids),
                              cfg.rule_set.rule_ids)
    result = BacktestResult(
        input=cfg.input, rule_set=cfg.rule_set, seconds=time.perf_counter() - start,
        chunks=buckets, overall=hit_rates(counts),
        by_year=hit_rates_by_year(counts) if cfg.by_year else None, engine="trino",
        density=spread,
    )
    if cfg.report:
        write_text(cfg.report, json.dumps(report_dict(result), indent=2) + "\n")
    return result


def _empty_if_none(counts: pl.DataFrame, rule_ids: Sequence[str]) -> pl.DataFrame:
    if counts.width:
        return counts
    from batch.hitrates import counts_schema

    return pl.DataFrame(schema=counts_schema(rule_ids))
