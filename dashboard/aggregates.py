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
SERIES = pl.Schema({"bucket": pl.Datetime("us", "UTC"), "flags": pl.Int64(),
                    "flagged_amount": pl.Float64()})
PER_RULE = pl.Schema({"rule": pl.String(), "flags": pl.Int64(), "labelled": pl.Int64(),
                      "fraud": pl.Int64(), "precision": pl.Float64()})


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


STEP_US: dict[str, int] = {"minute": 60_000_000, "hour": 3_600_000_000,
                           "day": 86_400_000_000, "month": 86_400_000_000}  # month: by day first


def _bucket(unit: str) -> pl.Expr:
    """ts floored to the unit by integer arithmetic (Polars' calendar truncation to months
    costs ~65 ms per 1M rows; months are summed from days afterwards, on few rows)."""
    step = STEP_US[unit]
    return ((pl.col("ts").dt.epoch("us") // step) * step).cast(pl.Datetime("us", "UTC"))


def _to_months(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Day buckets summed into months (``keys`` besides bucket are kept)."""
    values = [c for c in frame.columns if c not in ("bucket", *keys)]
    return (frame.group_by(pl.col("bucket").dt.truncate("1mo"), *keys)
            .agg(pl.col(values).sum()).sort([*keys, "bucket"]))


def flag_aggregates(flags: pl.LazyFrame, unit: str, top_n: int = 10) -> FlagAggregates:
    """Counts, series, top users, per-rule counts and precision over every row of ``flags``."""
    from dashboard.flag_cache import MASK

    cols = ["ts", "user_id", "amount_cents", "rules_fired", "is_fraud"]
    has_mask = MASK in flags.collect_schema().names()
    frame = flags.select(*cols, *([MASK] if has_mask else [])).collect()
    amount = pl.col("amount_cents").cast(pl.Float64) / 100
    bucketed = frame.with_columns(_bucket(unit).alias("bucket"))
    totals = frame.select(
        pl.len().alias("n"), pl.col("is_fraud").is_not_null().sum().alias("labelled"),
        pl.col("is_fraud").cast(pl.Int64).sum().alias("fraud"),
        pl.col("ts").min().alias("oldest"), pl.col("ts").max().alias("newest")).row(0, named=True)
    series = (bucketed.group_by("bucket")
              .agg(pl.len().cast(pl.Int64).alias("flags"), amount.sum().alias("flagged_amount"))
              .sort("bucket"))
    rule_series = _rule_series(bucketed, has_mask)
    if unit == "month":
        series, rule_series = _to_months(series, []), _to_months(rule_series, ["rule"])
    labelled = int(totals["labelled"] or 0)
    pr = rule_series.group_by("rule").agg(pl.col("flags", "labelled", "fraud").sum()).sort("rule")
    pr = pr.with_columns(
        pl.when(pl.col("labelled") > 0).then(pl.col("fraud") / pl.col("labelled"))
        .otherwise(None).cast(pl.Float64).alias("precision"))
    return FlagAggregates(
        total=int(totals["n"]), series=series.cast(SERIES).select(list(SERIES)),
        top=top_users(frame, top_n),
        precision=(int(totals["fraud"] or 0) / labelled) if labelled else None,
        labelled=labelled, per_rule=pr.cast(PER_RULE).select(list(PER_RULE)),
        oldest=totals["oldest"], newest=totals["newest"],
        rule_series=rule_series.select("bucket", "rule", "flags"))


def _rule_series(bucketed: pl.DataFrame, has_mask: bool) -> pl.DataFrame:
    """(bucket, rule, flags, labelled, fraud): v1 rules from the bit mask (no list explode);
    only flags that also fired other rule ids are exploded."""
    from dashboard.flag_cache import MASK
    from fraudlake.contract import RULE_NAMES

    schema = pl.Schema({"bucket": pl.Datetime("us", "UTC"), "rule": pl.String(),
                        "flags": pl.Int64(), "labelled": pl.Int64(), "fraud": pl.Int64()})
    parts = []
    rest = bucketed
    if has_mask:
        known = pl.lit(0, pl.UInt32)
        aggs = []
        for i, r in enumerate(RULE_NAMES):
            hit = (pl.col(MASK) & (1 << i)) != 0
            known = known + hit.cast(pl.UInt32)
            aggs += [hit.sum().cast(pl.Int64).alias(f"{r}\x1fflags"),
                     (hit & pl.col("is_fraud").is_not_null()).sum().cast(pl.Int64)
                     .alias(f"{r}\x1flabelled"),
                     (hit & pl.col("is_fraud").fill_null(False)).sum().cast(pl.Int64)
                     .alias(f"{r}\x1ffraud")]
        wide = bucketed.group_by("bucket").agg(aggs)
        for r in RULE_NAMES:
            parts.append(wide.select("bucket", pl.lit(r).alias("rule"),
                                     *(pl.col(f"{r}\x1f{c}").alias(c)
                                       for c in ("flags", "labelled", "fraud"))))
        rest = bucketed.filter(pl.col("rules_fired").list.len() > known)
    if not rest.is_empty():
        exploded = rest.select("bucket", "rules_fired", "is_fraud").explode("rules_fired")
        if has_mask:
            exploded = exploded.filter(~pl.col("rules_fired").is_in(list(RULE_NAMES)))
        parts.append(exploded.filter(pl.col("rules_fired").is_not_null())
                     .group_by("bucket", pl.col("rules_fired").alias("rule"))
                     .agg(pl.len().cast(pl.Int64).alias("flags"),
                          pl.col("is_fraud").is_not_null().sum().cast(pl.Int64).alias("labelled"),
                          pl.col("is_fraud").cast(pl.Int64).sum().cast(pl.Int64).alias("fraud")))
    if not parts:
        return pl.DataFrame(schema=schema)
    out = pl.concat([p.cast(schema).select(list(schema)) for p in parts])
    return out.filter(pl.col("flags") > 0).sort("rule", "bucket")


def top_users(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` users with the most flags (then the latest flag, then user id), with their
    flagged amount, biggest flag and rules. Counting by ``np.bincount`` when user ids are
    small non-negative integers (a hash group-by over 250k users costs ~200 ms per 1M flags)."""
    import numpy as np

    users = frame["user_id"]
    if users.is_empty():
        cand = frame.head(0).select("user_id")
    else:
        lo, hi = users.min(), users.max()
        if users.null_count() == 0 and lo >= 0 and hi < 50_000_000:  # type: ignore[operator]
            counts = np.bincount(users.to_numpy(), minlength=int(hi) + 1)  # type: ignore[arg-type]
            k = min(n, int(np.count_nonzero(counts)))
            threshold = np.partition(counts, -k)[-k]
            cand = pl.DataFrame({"user_id": np.nonzero(counts >= threshold)[0].astype(np.int64)})
        else:
            cand = frame.group_by("user_id").len().sort("len", descending=True).head(
                n).select("user_id")
    amount = pl.col("amount_cents").cast(pl.Float64) / 100
    return (frame.join(cand, on="user_id", how="semi").group_by("user_id")
            .agg(pl.len().alias("flags"), amount.sum().alias("flagged_amount"),
                 amount.max().alias("max_amount"),
                 pl.col("rules_fired").explode().drop_nulls().unique().sort().str.join(", ")
                 .alias("rules"), pl.col("ts").max().alias("last_flag"))
            .sort(["flags", "last_flag", "user_id"], descending=[True, True, False])
            .head(n))


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
    """(rule, flags) over every row of ``flags`` (the monitor's all-traffic counts); v1 rules
    from the bit mask when the frame has it."""
    from dashboard.flag_cache import MASK

    has_mask = MASK in flags.collect_schema().names()
    frame = flags.select("rules_fired", "is_fraud", *([MASK] if has_mask else [])).collect()
    one = frame.with_columns(pl.lit(0).cast(pl.Datetime("us", "UTC")).alias("bucket"))
    return (_rule_series(one, has_mask).group_by("rule").agg(pl.col("flags").sum())
            .sort("rule"))
