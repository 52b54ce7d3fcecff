"""TRANSITIONAL: the v1 fast engine behind the rule-set call, for the default-shaped set only.

Delete this module when the rule-set fast engine (branch issue-13vec: ``batch.fast_flags``
taking a ``RuleSet``) is merged; ``batch.backtest`` then stops importing it by itself.
The v1 engine decides exactly the four v1 rules with weights 1 and alert threshold 1, and it
lets rows with a NULL lat/lon/amount/utc_offset_min into windows, so ``supports`` also asks the
Parquet statistics that no core column holds a NULL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from batch import fast_flags
from batch.chunked_flags import Chunk, Sink, flags_schema
from queries.params import RuleParams
from queries.staging import ParquetFile
from rules.model import RuleSet

V1 = (("high_amount", "amount_over"), ("high_frequency", "velocity_count"),
      ("unusual_hour", "local_hour"), ("geo_mismatch", "impossible_travel"))
_CORE = ("user_id", "ts", "amount", "lat", "lon", "utc_offset_min")


def supports(rule_set: RuleSet) -> bool:
    """The four v1 rules in v1 order, unscoped, weight 1, no max_amount, threshold 1."""
    return (tuple((r.id, r.kind) for r in rule_set.rules) == V1
            and all(r.weight == 1 and not r.scoped for r in rule_set.rules)
            and rule_set.alert_threshold == 1
            and rule_set.rules[1].params["max_amount"] is None)


def null_free(con: duckdb.DuckDBPyConnection, files: Sequence[ParquetFile]) -> bool:
    """True when every file's statistics show the core columns present and NULL-free."""
    rows = con.sql(
        "SELECT file_name, path_in_schema, sum(stats_null_count), bool_or(stats_null_count IS "
        "NULL) FROM parquet_metadata($files) WHERE row_group_num_rows > 0 GROUP BY ALL",
        params={"files": [f.path for f in files]}).fetchall()
    clean = {(f, c) for f, c, nulls, unknown in rows if not unknown and nulls == 0}
    return all((f, c) in clean for f in {f for f, *_ in rows} for c in _CORE)


def _params(rule_set: RuleSet) -> RuleParams:
    amount, freq, hour, geo = (r.params for r in rule_set.rules)
    return RuleParams(
        high_amount_threshold=Decimal(amount["threshold"]).quantize(Decimal("0.01")),
        high_frequency_window_seconds=freq["window_seconds"], high_frequency_count=freq["count"],
        unusual_hour_start_hour=hour["start_hour"], unusual_hour_end_hour=hour["end_hour"],
        geo_mismatch_distance_km=geo["distance_km"], geo_mismatch_speed_kmh=geo["speed_kmh"],
        geo_mismatch_min_hours=geo["min_hours"],
        geo_mismatch_earth_radius_km=geo["earth_radius_km"])


def flag_counts(con: duckdb.DuckDBPyConnection, chunks: Sequence[Chunk], rule_set: RuleSet,
                sink: Sink | None = None,
                progress: Callable[[int], None] | None = None) -> pl.DataFrame:
    """The rule-set call over the v1 engine (its sink batches gain ``score``)."""
    schema = flags_schema(rule_set)

    def scored(batch: pa.RecordBatch) -> None:
        fired = np.stack([batch.column(rid).to_numpy(zero_copy_only=False)
                          for rid in rule_set.rule_ids])
        score = pa.array(fired.sum(axis=0).astype(np.float64))
        assert sink is not None
        sink(pa.RecordBatch.from_arrays(
            [batch.column("transaction_id"), *[batch.column(r) for r in rule_set.rule_ids],
             score, batch.column("flagged")], schema=schema))

    return fast_flags.flag_counts(con, chunks, _params(rule_set),
                                  scored if sink is not None else None, progress)
