"""Pure aggregation behind the page: frames and filter values in, frames and numbers out.

No I/O except ``read_report`` / ``read_lag`` (small JSON files). Flag frames follow
``flagstore.schema.FLAG_SCHEMA``; series and baselines follow ``dashboard.lake_queries``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import polars as pl

from dashboard.lake_queries import BASELINE_SCHEMA, SERIES_SCHEMA
from flagstore.schema import TS_TEXT
from fraudlake.contract import RULE_NAMES

#: DuckDB date_trunc unit → Polars truncate interval.
UNITS: dict[str, str] = {"minute": "1m", "hour": "1h", "day": "1d", "month": "1mo"}


@dataclass(frozen=True)
class Kpis:
    events_per_min: float | None  # live lake, last window
    flags_per_min: float | None  # flagged events in the live lake, last window
    flag_rate: float | None  # flagged / events in the live lake, last window
    precision: float | None  # is_fraud among labelled flags in view
    labelled: int
    lag: int | None


def choose_unit(span: timedelta) -> str:
    """A bucket size giving at most a few hundred points over ``span``."""
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=7):
        return "hour"
    if span <= timedelta(days=400):
        return "day"
    return "month"


def live_precision(flags: pl.DataFrame) -> tuple[float | None, int]:
    """(fraud among labelled flags, number labelled); None when nothing is labelled."""
    labelled = flags.filter(pl.col("is_fraud").is_not_null())
    if labelled.is_empty():
        return None, 0
    return float(cast(float, labelled["is_fraud"].cast(pl.Float64).mean())), labelled.height


def kpis(window_minutes: float, lake_events: int, lake_flagged: int,
         flags_in_view: pl.DataFrame, lag: int | None) -> Kpis:
    """Rates come from the live lake (every event + its rule columns: one cheap scan, and the
    same events the flag store holds); precision from the flags in view."""
    precision, labelled = live_precision(flags_in_view)
    return Kpis(
        events_per_min=lake_events / window_minutes,
        flags_per_min=lake_flagged / window_minutes,
        flag_rate=(lake_flagged / lake_events) if lake_events else None,
        precision=precision, labelled=labelled, lag=lag,
    )


def top_users(flags: pl.DataFrame, n: int = 10) -> pl.DataFrame:
    """Users with the most flags in ``flags``: count, amounts, rules, last flag."""
    if flags.is_empty():
        return pl.DataFrame(schema={"user_id": pl.Int64(), "flags": pl.UInt32(),
                                    "flagged_amount": pl.Float64(), "max_amount": pl.Float64(),
                                    "rules": pl.String(), "last_flag": pl.Datetime("us", "UTC")})
    return (
        flags.group_by("user_id")
        .agg(pl.len().alias("flags"),
             pl.col("amount").cast(pl.Float64).sum().alias("flagged_amount"),
             pl.col("amount").cast(pl.Float64).max().alias("max_amount"),
             pl.col("rules_fired").explode().drop_nulls().unique().sort().str.join(", ")
             .alias("rules"),
             pl.col("ts").max().alias("last_flag"))
        .sort(["flags", "last_flag", "user_id"], descending=[True, True, False])
        .head(n)
    )


def merge_baselines(history: pl.DataFrame, live: pl.DataFrame) -> pl.DataFrame:
    """One baseline row per user from history + live lake: counts add up, first/last seen
    span both; the usual amount and city come from the part with more transactions."""
    both = pl.concat([history.select(list(BASELINE_SCHEMA)), live.select(list(BASELINE_SCHEMA))])
    if both.is_empty():
        return pl.DataFrame(schema=BASELINE_SCHEMA)
    return (
        both.sort("txn_count", descending=True)
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("txn_count").sum(), pl.col("median_amount").first(),
             pl.col("usual_city").first(), pl.col("first_seen").min(),
             pl.col("last_seen").max())
        .select(list(BASELINE_SCHEMA))
    )


def with_baselines(top: pl.DataFrame, baselines: pl.DataFrame) -> pl.DataFrame:
    """Top users joined with their lake baseline; ``x_usual`` = biggest flag / usual amount."""
    joined = top.join(baselines, on="user_id", how="left")
    return joined.with_columns(
        pl.when(pl.col("median_amount") > 0)
        .then(pl.col("max_amount") / pl.col("median_amount")).otherwise(None)
        .round(1).alias("x_usual")
    )


def flag_series(flags: pl.DataFrame, unit: str) -> pl.DataFrame:
    """Flagged events and amount per bucket."""
    if flags.is_empty():
        return pl.DataFrame(schema=SERIES_SCHEMA)
    return (
        flags.group_by(pl.col("ts").dt.truncate(UNITS[unit]).alias("bucket"))
        .agg(pl.len().cast(pl.Int64).alias("events"),
             pl.col("amount").cast(pl.Float64).sum().alias("amount"))
        .sort("bucket").cast(pl.Schema(SERIES_SCHEMA)).select(list(SERIES_SCHEMA))
    )


def rebucket(series: pl.DataFrame, unit: str, since: datetime | None,
             until: datetime | None = None) -> pl.DataFrame:
    """Restrict a series to [since, until) and sum it into ``unit`` buckets."""
    s = series
    if since is not None:
        s = s.filter(pl.col("bucket") >= since)
    if until is not None:
        s = s.filter(pl.col("bucket") < until)
    return (s.group_by(pl.col("bucket").dt.truncate(UNITS[unit]))
            .agg(pl.col("events").sum(), pl.col("amount").sum()).sort("bucket")
            .cast(pl.Schema(SERIES_SCHEMA)))


def chart_frame(all_events: list[pl.DataFrame], flagged: pl.DataFrame) -> pl.DataFrame:
    """Wide frame for the line chart: bucket, 'all events' amount, 'flagged' amount."""
    parts = [s.select(list(SERIES_SCHEMA)) for s in all_events if not s.is_empty()]
    lake_side = (pl.concat(parts).group_by("bucket").agg(pl.col("amount").sum())
                 if parts else pl.DataFrame(schema={"bucket": SERIES_SCHEMA["bucket"],
                                                    "amount": pl.Float64()}))
    out = (lake_side.rename({"amount": "all events"})
           .join(flagged.select("bucket", pl.col("amount").alias("flagged")), on="bucket",
                 how="full", coalesce=True)
           .sort("bucket").fill_null(0.0))
    return out


def table_view(flags: pl.DataFrame) -> pl.DataFrame:
    """What the 'latest flagged' table shows (and the CSV holds), newest first."""
    return flags.select(
        "ts", "transaction_id", "user_id", pl.col("amount").cast(pl.String), "currency",
        "merchant_name", "category", "channel", "city", "country",
        pl.col("rules_fired").list.join(", ").alias("rules"), "is_fraud", "fraud_scenario",
    )


def to_csv(flags: pl.DataFrame) -> bytes:
    """Exactly these rows as CSV (UTF-8, ISO-8601 UTC timestamps, exact amounts)."""
    buf = io.BytesIO()
    table_view(flags).write_csv(buf, datetime_format=TS_TEXT)
    return buf.getvalue()


def read_report(path: Path) -> dict | None:
    """The backtest report, or None when absent/unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def rule_table(report: dict) -> pl.DataFrame:
    """One row per rule (then ``flagged``): flagged, flag rate, precision, recall."""
    rows = []
    rules = report.get("rules") or {}
    order = [r for r in (*RULE_NAMES, "flagged") if r in rules] + \
            [r for r in rules if r not in RULE_NAMES and r != "flagged"]
    for name in order:
        r = rules[name] or {}
        rows.append({"rule": name, "flagged": r.get("flagged"), "flag_rate": r.get("flag_rate"),
                     "precision": r.get("precision"), "recall": r.get("recall")})
    schema = {"rule": pl.String(), "flagged": pl.Int64(), "flag_rate": pl.Float64(),
              "precision": pl.Float64(), "recall": pl.Float64()}
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def scenario_table(report: dict) -> pl.DataFrame:
    """Recall per fraud scenario (rows) and rule (columns)."""
    rules = report.get("rules") or {}
    names = [r for r in (*RULE_NAMES, "flagged") if r in rules]
    scenarios = sorted({s for r in names for s in (rules[r] or {}).get("recall_by_scenario") or {}})
    data: dict[str, list] = {"scenario": scenarios}
    for r in names:
        by = (rules[r] or {}).get("recall_by_scenario") or {}
        data[r] = [by.get(s) for s in scenarios]
    schema = {"scenario": pl.String(), **{r: pl.Float64() for r in names}}
    return pl.DataFrame(data, schema=schema, strict=False)


def read_lag(path: Path, now: datetime, max_age: timedelta = timedelta(minutes=5)
             ) -> int | None:
    """Consumer lag from the consumer's metrics file; None when absent, unreadable or stale."""
    try:
        doc = json.loads(Path(path).read_text())
        lag = int(doc["lag"])
        updated = datetime.fromisoformat(str(doc["updated_at"]).replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return lag if now - updated <= max_age else None
