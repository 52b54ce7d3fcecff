"""Flag aggregates over EVERY flag matching the filters (pure: a LazyFrame in, frames out).

The page's chart, top users, precision and per-rule counts come from here, computed over the
whole chosen range (the sources hand over every matching flag, held in the page process), never
over a window of the latest flags. Time buckets are filled with zeros over the range so a quiet
hour shows as 0, not as a line drawn across it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

#: bucket unit → Polars truncate interval.
UNITS: dict[str, str] = {"minute": "1m", "hour": "1h", "day": "1d", "month": "1mo"}
SERIES: dict[str, pl.DataType] = {"bucket": pl.Datetime("us", "UTC"), "flags": pl.Int64(),
                                  "flagged_amount": pl.Float64()}
PER_RULE: dict[str, pl.DataType] = {"rule": pl.String(), "flags": pl.Int64(),
                                    "labelled": pl.Int64(), "fraud": pl.Int64(),
                                    "precision": pl.Float64()}


@dataclass(frozen=True)
class FlagAggregates:
    total: int  # matching flags
    series: pl.DataFrame  # SERIES, one row per bucket that has flags
    top: pl.DataFrame  # top flagged users
    precision: float | None  # simulator labels (is_fraud) among matching flags
    labelled: int
    per_rule: pl.DataFrame  # PER_RULE
    oldest: datetime | None
    newest: datetime | None
    rule_series: pl.DataFrame  # bucket, rule, flags (hits per rule per bucket)


def choose_unit(span: timedelta) -> str:
    """A bucket size giving at most a few hundred points over ``span``."""
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=8):
        return "hour"
    if span <= timedelta(days=400):
        return "day"
    return "month"


def flag_aggregates(flags: pl.LazyFrame, unit: str, top_n: int = 10) -> FlagAggregates:
    """Counts, series, top users and precision over every row of ``flags``."""
    amount = pl.col("amount_cents").cast(pl.Float64) / 100
    totals = flags.select(
        pl.len().alias("n"), pl.col("is_fraud").is_not_null().sum().alias("labelled"),
        pl.col("is_fraud").cast(pl.Int64).sum().alias("fraud"),
        pl.col("ts").min().alias("oldest"), pl.col("ts").max().alias("newest"))
    series = (flags.group_by(pl.col("ts").dt.truncate(UNITS[unit]).alias("bucket"))
              .agg(pl.len().cast(pl.Int64).alias("flags"), amount.sum().alias("flagged_amount"))
              .sort("bucket"))
    leaders = (flags.group_by("user_id")
               .agg(pl.len().alias("flags"), pl.col("ts").max().alias("last_flag"))
               .sort(["flags", "last_flag", "user_id"], descending=[True, True, False])
               .head(top_n))
    top = (flags.join(leaders.select("user_id"), on="user_id", how="semi")  # details: 10 users
           .group_by("user_id")
           .agg(amount.sum().alias("flagged_amount"), amount.max().alias("max_amount"),
                pl.col("rules").explode().drop_nulls().unique().sort().str.join(", ")
                .alias("rules"))
           .join(leaders, on="user_id")
           .sort(["flags", "last_flag", "user_id"], descending=[True, True, False])
           .select("user_id", "flags", "flagged_amount", "max_amount", "rules", "last_flag"))
    rule_series = (flags.select(pl.col("ts").dt.truncate(UNITS[unit]).alias("bucket"), "rules",
                                "is_fraud").explode("rules")
                   .filter(pl.col("rules").is_not_null())
                   .group_by("bucket", pl.col("rules").alias("rule"))
                   .agg(pl.len().cast(pl.Int64).alias("flags"),
                        pl.col("is_fraud").is_not_null().sum().cast(pl.Int64).alias("labelled"),
                        pl.col("is_fraud").cast(pl.Int64).sum().cast(pl.Int64).alias("fraud"))
                   .sort("rule", "bucket"))
    t, s, tp, rs = pl.collect_all([totals, series, top, rule_series])
    row = t.row(0, named=True)
    labelled = int(row["labelled"] or 0)
    pr = rs.group_by("rule").agg(pl.col("flags", "labelled", "fraud").sum()).sort("rule")
    pr = pr.with_columns(
        pl.when(pl.col("labelled") > 0).then(pl.col("fraud") / pl.col("labelled"))
        .otherwise(None).cast(pl.Float64).alias("precision"))
    return FlagAggregates(
        total=int(row["n"]), series=s.cast(SERIES).select(list(SERIES)),  # type: ignore[arg-type]
        top=tp, precision=(int(row["fraud"] or 0) / labelled) if labelled else None,
        labelled=labelled, per_rule=pr.cast(PER_RULE).select(list(PER_RULE)),  # type: ignore[arg-type]
        oldest=row["oldest"], newest=row["newest"],
        rule_series=rs.select("bucket", "rule", "flags"))


def bucket_range(start: datetime, end: datetime, unit: str) -> pl.DataFrame:
    """Every bucket from ``start``'s to ``end``'s (the zero-filled time axis)."""
    lo = pl.Series([start]).cast(pl.Datetime("us", "UTC")).dt.truncate(UNITS[unit])[0]
    hi = pl.Series([end]).cast(pl.Datetime("us", "UTC")).dt.truncate(UNITS[unit])[0]
    if lo > hi:
        lo, hi = hi, lo
    return pl.DataFrame({"bucket": pl.datetime_range(lo, hi, UNITS[unit], time_unit="us",
                                                     time_zone="UTC", eager=True)})


def chart_frame(axis: pl.DataFrame, live: pl.DataFrame | None, flags: pl.DataFrame,
                history: pl.DataFrame | None) -> pl.DataFrame:
    """Long frame for the chart: bucket, series, events — zero-filled over ``axis``.

    ``live`` (bucket, events) is None when the live lake is missing: no 'live events' series
    then (flags without their events would read as flagged > all). ``history`` is the batch
    history's volume (no flags exist for it: it is labelled, not decided)."""
    wide = axis.join(flags.select("bucket", pl.col("flags").alias("flagged (live)")),
                     on="bucket", how="left")
    if live is not None:
        wide = wide.join(live.select("bucket", pl.col("events").alias("live events")),
                         on="bucket", how="left")
    if history is not None and not history.is_empty():
        wide = wide.join(history.select("bucket", pl.col("events").alias("history events")),
                         on="bucket", how="left")
    value_cols = [c for c in wide.columns if c != "bucket"]
    wide = wide.with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in value_cols)
    return wide.unpivot(index="bucket", variable_name="series", value_name="events")


def per_rule_counts(flags: pl.LazyFrame) -> pl.DataFrame:
    """(rule, flags) over every row of ``flags`` (the monitor's all-traffic counts)."""
    return (flags.select("rules").explode("rules").filter(pl.col("rules").is_not_null())
            .group_by(pl.col("rules").alias("rule")).agg(pl.len().cast(pl.Int64).alias("flags"))
            .sort("rule").collect())
