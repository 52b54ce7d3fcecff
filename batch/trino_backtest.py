"""``batch.backtest --backend trino``: the same backtest with the rule SQL run by Trino.

The input becomes an external table (``lake.trino``) and the rule query is rendered for Trino
(``queries.trino_sql``). Every rule decides an event from the same user's events only, so the
work is split into user buckets (``abs(user_id % n)``; NULL users in bucket 0) of about
``--chunk-rows`` rows each: bucket results are exact and independent, and no bucket needs more
than one node's memory. Per bucket Trino returns the counts per (year, is_fraud,
fraud_scenario), or, with ``--flags-out``, the decided rows (fetched over Trino's HTTP protocol:
fine for millions of rows, slow for tens of millions).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import polars as pl
from tqdm import tqdm

from batch.chunked_flags import FLAG_COLUMNS
from batch.hitrates import hit_rates, hit_rates_by_year, normalize_counts
from fraudlake.contract import FLAGGED, RULE_NAMES
from lake import trino
from queries import sql as queries_sql
from queries.trino_sql import to_trino

_RULE_COLUMNS = (*RULE_NAMES, FLAGGED)
_BUCKET = "coalesce(abs(user_id % $fl_buckets), 0) = $fl_bucket"
# Only fixed contract identifiers are spliced in, never user input.
_COUNTS = ("select cast(year(ts) as integer) as year, is_fraud, fraud_scenario, "  # noqa: S608
           "count(*) as rows, " + ", ".join(f"count_if({c}) as {c}" for c in _RULE_COLUMNS)
           + " from (\n{flags}\n) as decided group by 1, 2, 3")
_ROWS = ("select cast(year(ts) as integer) as year, is_fraud, fraud_scenario, "  # noqa: S608
         + ", ".join(FLAG_COLUMNS) + " from (\n{flags}\n) as decided")


def bucket_count(rows: int, chunk_rows: int) -> int:
    return max(1, math.ceil(rows / max(1, chunk_rows)))


def flag_counts(target: trino.TrinoTarget, input_text: str, params, chunk_rows: int,
                sink: Callable | None = None,
                progress: Callable[[int], None] | None = None) -> tuple[pl.DataFrame, int, int]:
    """(counts frame, buckets, rows) of the rules over ``input_text`` decided by Trino."""
    con, table = trino.open_input(target, input_text)
    rows = trino.execute(con, f"SELECT count(*) AS n FROM {table}")["n"][0].as_py()  # noqa: S608
    buckets = bucket_count(rows, chunk_rows)
    flags_sql = queries_sql.load_sql(queries_sql.FLAGS_QUERY)
    bound = {**queries_sql.bind(flags_sql, params), "fl_buckets": buckets}
    query = (_ROWS if sink else _COUNTS).format(flags=flags_sql)
    rendered = to_trino(query, table, where=_BUCKET)
    parts: list[pl.DataFrame] = []
    for b in range(buckets):
        out = trino.run_rendered(con, rendered, {**bound, "fl_bucket": b})
        if sink is None:
            parts.append(pl.from_arrow(out))  # type: ignore[arg-type]
        else:
            for batch in out.select(list(FLAG_COLUMNS)).to_batches():
                sink(batch)
            frame = pl.from_arrow(out)
            parts.append(frame.group_by("year", "is_fraud", "fraud_scenario").agg(  # type: ignore
                pl.len().alias("rows"), *[pl.col(c).sum() for c in _RULE_COLUMNS]))
        if progress:
            progress(rows // buckets)
    return (pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()), buckets, rows


def run_backtest(cfg):
    """``batch.backtest.run_backtest`` for ``cfg.backend == "trino"`` (same result type)."""
    from batch.backtest import BacktestResult, _FlagsWriter, report_dict
    from fraudlake.atomic import write_text

    start = time.perf_counter()
    target = cfg.trino or trino.TrinoTarget()
    with _FlagsWriter(cfg.flags_out) as writer, tqdm(
        unit="rows", unit_scale=True, file=sys.stderr, disable=not cfg.progress,
        desc="backtest (trino)",
    ) as bar:
        counts, buckets, _ = flag_counts(target, cfg.input, cfg.params, cfg.chunk_rows,
                                         writer.write if cfg.flags_out else None,
                                         bar.update)
    counts = normalize_counts(counts.with_columns(pl.col("rows").cast(pl.Int64)))
    result = BacktestResult(
        input=cfg.input, params=cfg.params, seconds=time.perf_counter() - start,
        chunks=buckets, overall=hit_rates(counts),
        by_year=hit_rates_by_year(counts) if cfg.by_year else None, engine="trino",
    )
    if cfg.report:
        import json

        write_text(cfg.report, json.dumps(report_dict(result), indent=2) + "\n")
    return result
