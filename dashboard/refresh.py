"""One refresh of the live page: every read and aggregate it needs, as one frozen value.

``load_refresh`` is what the page calls every second (and what ``bench/bench_dashboard.py``
times). Its reads are bounded: the live lake's month folders in range, the flag store's latest
``window_flags`` matching flags, bounded counts, and the cached history aggregates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import polars as pl

from dashboard import data, lake_queries
from dashboard.baseline import HistoryCache
from flagstore.protocols import FlagReader
from flagstore.query import FlagFilter
from fraudlake.settings import DashboardSettings, Settings
from lake.layout import data_files


@dataclass(frozen=True)
class DashboardConfig:
    """The page's configuration, read from the environment once."""

    settings: Settings = field(default_factory=Settings)
    cache_dir: Path = Settings.history_cache_dir
    report_path: Path = DashboardSettings.report_path
    metrics_path: Path = Settings.consumer_metrics_path
    refresh_seconds: float = DashboardSettings.refresh_seconds
    window_flags: int = DashboardSettings.window_flags  # behind top users / chart / precision
    table_rows: int = 200
    count_cap: int = 10_000  # "10,000+": counting 200k matches costs ~400 ms in SQLite
    kpi_minutes: float = 5.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DashboardConfig:
        settings, page = Settings.from_env(env), DashboardSettings.from_env(env)
        return cls(
            settings=settings,
            cache_dir=settings.history_cache_dir,
            report_path=page.report_path,
            metrics_path=settings.consumer_metrics_path,
            refresh_seconds=page.refresh_seconds,
            window_flags=page.window_flags,
        )


@dataclass(frozen=True)
class Refresh:
    now: datetime
    kpis: data.Kpis
    flags: pl.DataFrame  # latest matching flags, newest first (≤ window_flags)
    total: int  # matching flags, counted up to count_cap
    capped: bool
    top: pl.DataFrame  # top flagged users + baselines
    chart: pl.DataFrame  # bucket, all events, flagged
    unit: str


LiveBaselines = Callable[[Sequence[Path], Sequence[int]], pl.DataFrame]


def load_refresh(source: FlagReader, cfg: DashboardConfig, f: FlagFilter, now: datetime,
                 history: HistoryCache, history_files: Sequence[Path],
                 live_baselines: LiveBaselines = lake_queries.user_baselines) -> Refresh:
    """All the data of one refresh. Raises FlagReadError / duckdb.Error on read failures."""
    live_files = data_files(cfg.settings.lake_transactions_dir)
    con = lake_queries.connect()
    since_kpi = now - timedelta(minutes=cfg.kpi_minutes)
    events, flagged = lake_queries.window_counts(live_files, since_kpi, con=con)
    flags = source.recent(f, cfg.window_flags)
    total = flags.height if flags.height < cfg.window_flags else source.count(f, cfg.count_cap)
    kpis = data.kpis(cfg.kpi_minutes, events, flagged, flags,
                     data.read_lag(cfg.metrics_path, now))

    top = data.top_users(flags, 10)
    ids = top["user_id"].to_list()
    hist_b = history.baselines.filter(pl.col("user_id").is_in(ids))
    top = data.with_baselines(top, data.merge_baselines(hist_b, live_baselines(live_files, ids)))

    start = f.since or _earliest(history, live_files, flags, now, con)
    unit = data.choose_unit((f.until or now) - start)
    series = [lake_queries.amount_series(live_files, unit, f.since, f.until, con=con)]
    if unit in ("day", "month"):
        series.append(data.rebucket(history.daily, unit, f.since, f.until))
    else:
        series.append(lake_queries.amount_series(history_files, unit, f.since, f.until, con=con))
    chart = data.chart_frame(series, data.flag_series(flags, unit))
    return Refresh(now, kpis, flags, total, total >= cfg.count_cap, top, chart, unit)


def _earliest(history: HistoryCache, live_files: Sequence[Path], flags: pl.DataFrame,
              now: datetime, con) -> datetime:
    candidates = [now - timedelta(hours=1)]
    if not history.daily.is_empty():
        candidates.append(cast(datetime, history.daily["bucket"].min()))
    live_min = lake_queries.min_ts(live_files, con=con)
    if live_min is not None:
        candidates.append(live_min)
    if not flags.is_empty():
        candidates.append(cast(datetime, flags["ts"].min()))
    return min(candidates)
