"""One refresh of the live page: every read and aggregate it needs, panel by panel.

The page calls the pieces separately (``traffic``, ``flag_view``, ``volume``, ``top_users``) so
one failing read costs one panel a one-line message, never the page; ``load_refresh`` runs them
all (what ``bench/bench_dashboard.py`` times). Flag aggregates cover every matching flag of the
chosen range (held in the page process, see ``dashboard.sources``); lake reads are bounded to the
month folders in range; the history comes from its cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from dashboard import aggregates, cases, data, lake_queries, monitor
from dashboard.aggregates import FlagAggregates
from dashboard.baseline import HistoryCache
from dashboard.filters import FlagFilter
from dashboard.sources import FlagSource
from fraudlake.settings import DashboardSettings, Settings
from lake.layout import data_files


@dataclass(frozen=True)
class DashboardConfig:
    """The page's configuration, read from the environment once."""

    settings: Settings = field(default_factory=Settings)
    cache_dir: Path = Settings.history_cache_dir
    report_path: Path = DashboardSettings.report_path
    metrics_path: Path = Settings.consumer_metrics_path
    whatif_path: Path = DashboardSettings.whatif_path
    refresh_seconds: float = DashboardSettings.refresh_seconds
    table_rows: int = 200
    kpi_minutes: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DashboardConfig:
        settings, page = Settings.from_env(env), DashboardSettings.from_env(env)
        return cls(settings=settings, cache_dir=settings.history_cache_dir,
                   report_path=page.report_path, metrics_path=settings.consumer_metrics_path,
                   whatif_path=page.whatif_path, refresh_seconds=page.refresh_seconds)


@dataclass(frozen=True)
class Traffic:
    """All traffic in the live lake over the last ``minutes`` (not filtered)."""

    events: int
    flagged: int
    minutes: float
    newest: datetime | None  # the newest event time in the live lake (freshness)
    lake_present: bool


@dataclass(frozen=True)
class FlagView:
    recent: pl.DataFrame  # the latest matching flags, newest first (the table)
    agg: FlagAggregates  # over EVERY matching flag
    unit: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Triage:
    queue: pl.DataFrame  # open/escalated alerts among the matching flags, by score
    confirmed_rules: pl.DataFrame  # per rule: analyst-confirmed precision
    confirmed: float | None  # overall, among the matching flags


@dataclass(frozen=True)
class Refresh:
    now: datetime
    traffic: Traffic
    view: FlagView
    top: pl.DataFrame
    chart: pl.DataFrame
    triage: Triage
    rules: pl.DataFrame  # per-rule monitor (monitor.SCHEMA)


LiveBaselines = Callable[[Sequence[Path], Sequence[int]], pl.DataFrame]


def traffic(cfg: DashboardConfig, now: datetime,
            con: duckdb.DuckDBPyConnection | None = None) -> Traffic:
    """Events and flagged events in the live lake over the last ``kpi_minutes``."""
    files = data_files(cfg.settings.lake_transactions_dir)
    con = con or lake_queries.connect()
    since = now - timedelta(minutes=cfg.kpi_minutes)
    recent = lake_queries.files_since(files, since, con)
    events, flagged = lake_queries.window_counts(recent, since, con=con)
    newest = lake_queries.ts_bounds(files, con=con)[1]
    return Traffic(events, flagged, cfg.kpi_minutes, newest, bool(files))


def range_start(f: FlagFilter, source: FlagSource, history: HistoryCache, now: datetime,
                con: duckdb.DuckDBPyConnection | None = None, live_files=None) -> datetime:
    """Where the time axis starts: the filter's ``since``, else the oldest data anywhere."""
    if f.since is not None:
        return f.since
    candidates = [now - timedelta(hours=1)]
    if not history.daily.is_empty():
        candidates.append(history.daily["bucket"].min())  # type: ignore[arg-type]
    if live_files:
        live_min = lake_queries.ts_bounds(live_files, con=con)[0]
        if live_min is not None:
            candidates.append(live_min)
    oldest = source.matching(FlagFilter()).select(pl.col("ts").min()).collect().item()
    if oldest is not None:
        candidates.append(oldest)
    return min(candidates)


def flag_view(source: FlagSource, cfg: DashboardConfig, f: FlagFilter, start: datetime,
              now: datetime) -> FlagView:
    """The table (latest matching flags) and the aggregates over every matching flag."""
    end = f.until or now
    unit = aggregates.choose_unit(end - start)
    agg = aggregates.flag_aggregates(source.matching(f), unit)
    return FlagView(source.recent(f, cfg.table_rows), agg, unit, start, end)


def volume(cfg: DashboardConfig, f: FlagFilter, view: FlagView, history: HistoryCache,
           history_files: Sequence[Path], con: duckdb.DuckDBPyConnection | None = None
           ) -> pl.DataFrame:
    """The chart: flagged (store) + live events (lake) + history events, zero-filled."""
    con = con or lake_queries.connect()
    live_files = data_files(cfg.settings.lake_transactions_dir)
    unit = view.unit
    live = live_series(live_files, unit, f.since, f.until, con) if live_files else None
    if unit in ("day", "month"):
        hist = data.rebucket(history.daily, unit, f.since, f.until)
    else:
        hist = lake_queries.amount_series(history_files, unit, f.since, f.until, con=con)
    axis = aggregates.bucket_range(view.start, view.end, unit)
    return aggregates.chart_frame(axis, live, view.agg.series, hist)


def live_series(files: Sequence[Path], unit: str, since: datetime | None,
                until: datetime | None, con: duckdb.DuckDBPyConnection | None = None
                ) -> pl.DataFrame:
    """Live events per ``unit`` bucket from the per-file minute counts
    (``lake_queries.live_minutes``): the buckets that overlap [since, until) — whole minutes at
    the edges."""
    minutes = lake_queries.live_minutes(files, con)
    out = to_unit(minutes, unit, since, until, [], ["events", "amount"])
    schema = lake_queries.SERIES_SCHEMA
    return out.cast(schema).select(list(schema))


def to_unit(minutes: pl.DataFrame, unit: str, since: datetime | None, until: datetime | None,
            keys: list[str], sums: list[str]) -> pl.DataFrame:
    """Per-minute rows → per ``unit`` bucket (and ``keys``), the buckets overlapping
    [since, until) — whole minutes at the edges."""
    if since is not None:
        minutes = minutes.filter(pl.col("bucket") >= since.replace(second=0, microsecond=0))
    if until is not None:
        minutes = minutes.filter(pl.col("bucket") < until)
    step = aggregates.STEP_US[unit]
    out = (minutes.group_by(((pl.col("bucket").dt.epoch("us") // step) * step)
                            .cast(pl.Datetime("us", "UTC")).alias("bucket"), *keys)
           .agg(pl.col(sums).sum()).sort(*keys, "bucket"))
    if unit == "month":
        out = (out.group_by(pl.col("bucket").dt.truncate("1mo"), *keys)
               .agg(pl.col(sums).sum()).sort(*keys, "bucket"))
    return out


@dataclass(frozen=True)
class RuleHits:
    """Per-rule hits over the range: ``totals`` (rule, flags), ``series`` (bucket, rule,
    flags); ``origin`` "lake" (every event a rule fired on, all traffic) or "flags" (no live
    lake: the stored flags, which miss a rule firing below the alert threshold)."""

    totals: pl.DataFrame
    series: pl.DataFrame
    origin: str


def rule_hits(cfg: DashboardConfig, source: FlagSource, f: FlagFilter, view: FlagView,
              con: duckdb.DuckDBPyConnection | None = None) -> RuleHits:
    """What the per-rule monitor counts: the live lake's ``rules_fired`` over the range (the
    band is about all traffic, so only the time filter applies), else the stored flags."""
    files = data_files(cfg.settings.lake_transactions_dir)
    if files:
        in_range = lake_queries.files_in_range(files, f.since, f.until)
        minutes = lake_queries.live_rule_minutes(in_range, con)
        series = to_unit(minutes, view.unit, f.since, f.until, ["rule"], ["hits"]).rename(
            {"hits": "flags"}).select("bucket", "rule", "flags")
        totals = series.group_by("rule").agg(pl.col("flags").sum()).sort("rule")
        return RuleHits(totals, series, "lake")
    time_only = FlagFilter(since=f.since, until=f.until)
    agg = view.agg if f == time_only else aggregates.flag_aggregates(
        source.matching(time_only), view.unit)
    return RuleHits(agg.per_rule.select("rule", "flags"), agg.rule_series, "flags")


def top_users(cfg: DashboardConfig, view: FlagView, history: HistoryCache,
              live_baselines: LiveBaselines = lake_queries.user_baselines) -> pl.DataFrame:
    """Top flagged users (over every matching flag) + their usual behaviour."""
    top = view.agg.top
    ids = top["user_id"].to_list()
    live_files = data_files(cfg.settings.lake_transactions_dir)
    hist_b = history.baselines.filter(pl.col("user_id").is_in(ids))
    return data.with_baselines(top, data.merge_baselines(hist_b, live_baselines(live_files, ids)))


def triage(source: FlagSource, f: FlagFilter, case_frame: pl.DataFrame, n: int = 50) -> Triage:
    """The queue (open/escalated among the matching flags, by score then newest) and the
    analysts' confirmed precision."""
    matching = source.matching(f)
    decided = case_frame.filter(pl.col("status").is_in(["fraud", "legitimate"])).select(
        "transaction_id")
    queue = cases.with_status(
        best_first(matching, n + decided.height).join(decided, on="transaction_id", how="anti")
        .head(n), case_frame)
    return Triage(queue, cases.confirmed_precision(matching, case_frame),
                  cases.overall_confirmed(matching, case_frame))


def best_first(flags: pl.LazyFrame, n: int) -> pl.DataFrame:
    """The ``n`` highest-scored flags, newest first within a score. ``flags`` is ascending by
    (ts, transaction_id), so within one score the newest are its tail: no sort of the whole
    range (a full two-key sort of 1M held flags costs ~300 ms; this ~10 ms a score level)."""
    scores = flags.select(pl.col("score").unique()).collect()["score"].sort(descending=True)
    parts: list[pl.DataFrame] = []
    got = 0
    for score in scores:
        part = flags.filter(pl.col("score") == score).tail(n - got).collect().reverse()
        parts.append(part)
        got += part.height
        if got >= n:
            break
    return pl.concat(parts) if parts else flags.head(0).collect()


def rule_band(hits: RuleHits, chart: pl.DataFrame, report: dict | None) -> pl.DataFrame:
    """Per-rule live hits over the range (all traffic: time filter only) vs the backtest."""
    live = chart.filter(pl.col("series") == "live events")["events"].sum()
    return monitor.rule_monitor(hits.totals, int(live or 0), report)


def load_refresh(source: FlagSource, cfg: DashboardConfig, f: FlagFilter, now: datetime,
                 history: HistoryCache, history_files: Sequence[Path],
                 live_baselines: LiveBaselines = lake_queries.user_baselines,
                 case_frame: pl.DataFrame | None = None, report: dict | None = None) -> Refresh:
    """All the data of one refresh (what the page computes every second, panel by panel).
    Raises FlagReadError / duckdb.Error on read failures."""
    con = lake_queries.connect()
    t = traffic(cfg, now, con)
    live_files = data_files(cfg.settings.lake_transactions_dir)
    start = range_start(f, source, history, now, con, live_files)
    view = flag_view(source, cfg, f, start, now)
    chart = volume(cfg, f, view, history, history_files, con)
    case_frame = pl.DataFrame(schema=cases.CASE_COLUMNS) if case_frame is None else case_frame
    return Refresh(now, t, view, top_users(cfg, view, history, live_baselines), chart,
                   triage(source, f, case_frame),
                   rule_band(rule_hits(cfg, source, f, view, con), chart, report))
