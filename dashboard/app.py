"""fraudlake live dashboard (Streamlit): live flags joined with lake aggregates.

    .venv/bin/streamlit run dashboard/app.py            # http://localhost:8501

Configuration (environment): MONGO_URI / MONGO_DB / MONGO_COLLECTION (flags from MongoDB; unset
→ the embedded store LOCAL_FLAGS_PATH), LAKE_DIR, HISTORY_DIR, DASHBOARD_CACHE_DIR,
BACKTEST_REPORT, CONSUMER_METRICS, DASHBOARD_REFRESH_SECONDS (default 1), DASHBOARD_WINDOW.

Filters live in the sidebar (widget state survives every refresh); the live part is one
``st.fragment(run_every=…)`` that re-reads data and redraws in place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import streamlit as st

from dashboard import baseline, data, lake_queries
from dashboard.cached_reader import open_flag_reader
from dashboard.filters import DEFAULT_TIME_RANGE, TIME_RANGES, build_filter
from dashboard.refresh import DashboardConfig, Refresh, load_refresh
from flagstore.protocols import FlagReader, FlagReadError
from flagstore.query import FilterError, FlagFilter
from fraudlake.contract import RULE_NAMES

st.set_page_config(page_title="fraudlake · live fraud flags", layout="wide")


@st.cache_resource
def _source(_cfg: DashboardConfig, key: tuple[str | None, ...]) -> FlagReader:
    """One source (one MongoClient) per configuration, shared by all sessions."""
    return open_flag_reader(_cfg.settings)


def _source_key(cfg: DashboardConfig) -> tuple[str | None, ...]:
    s = cfg.settings
    return (s.mongo_uri, s.mongo_db, s.mongo_collection, str(s.local_flags_path))


@st.cache_data(ttl=30, show_spinner=False)
def _history_key(history_dir: str) -> tuple[str, list[Path]]:
    return baseline.history_key(Path(history_dir))


@st.cache_resource(show_spinner="Aggregating the history into the dashboard cache (once)…",
                   max_entries=2)
def _history(history_dir: str, cache_dir: str, key: str) -> baseline.HistoryCache:
    return baseline.load_or_build(Path(history_dir), Path(cache_dir))


@st.cache_data(ttl=30, show_spinner=False, max_entries=64)
def _live_baselines(files: tuple[Path, ...], ids: tuple[int, ...]) -> pl.DataFrame:
    return lake_queries.user_baselines(files, ids)


def _cached_live_baselines(files, ids) -> pl.DataFrame:
    return _live_baselines(tuple(files), tuple(ids))


def sidebar() -> None:
    """Filter widgets; their values persist in session_state across refreshes."""
    sb = st.sidebar
    sb.header("Filters")
    sb.selectbox("Time range", list(TIME_RANGES), key="time_range",
                 index=list(TIME_RANGES).index(DEFAULT_TIME_RANGE))
    sb.multiselect("Rules fired (any of)", list(RULE_NAMES), key="rules")
    c1, c2 = sb.columns(2)
    c1.text_input("Min amount", key="min_amount", placeholder="e.g. 100")
    c2.text_input("Max amount", key="max_amount", placeholder="e.g. 5000")
    sb.text_input("User id", key="user", placeholder="e.g. 42")
    sb.text_input("Country", key="country", placeholder="e.g. DE")


def current_filter(now: datetime) -> FlagFilter:
    ss = st.session_state
    return build_filter(time_range=ss.get("time_range", DEFAULT_TIME_RANGE), now=now,
                        rules=ss.get("rules", []), min_amount=ss.get("min_amount", ""),
                        max_amount=ss.get("max_amount", ""), user=ss.get("user", ""),
                        country=ss.get("country", ""))


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def show_kpis(r: Refresh) -> None:
    k = r.kpis
    cols = st.columns(6)
    cols[0].metric("Events / min", _fmt(k.events_per_min, ",.1f"))
    cols[1].metric("Flags / min", _fmt(k.flags_per_min, ",.1f"))
    cols[2].metric("Flag rate", _fmt(k.flag_rate, ".2%"))
    cols[3].metric("Live precision", _fmt(k.precision, ".1%"),
                   help=f"fraud among {k.labelled:,} labelled flags in view")
    cols[4].metric("Consumer lag", "n/a" if k.lag is None else f"{k.lag:,}")
    cols[5].metric("Flags in view", f"{r.total:,}{'+' if r.capped else ''}")


def show_live(source: FlagReader, cfg: DashboardConfig, f: FlagFilter,
              history: baseline.HistoryCache, history_files: list[Path]) -> None:
    now = datetime.now(UTC)
    try:
        r = load_refresh(source, cfg, f, now, history, history_files, _cached_live_baselines)
    except FlagReadError as exc:
        st.error(f"Cannot read flags — {exc}. Check that the store is running; "
                 "the page retries every refresh.")
        return
    except duckdb.Error as exc:
        st.warning(f"Lake read failed this refresh ({type(exc).__name__}); retrying. "
                   f"{str(exc).splitlines()[0][:200]}")
        return
    show_kpis(r)
    st.caption(f"as of {now:%Y-%m-%d %H:%M:%S} UTC · flags from {source.label} · "
               f"KPIs over the last {cfg.kpi_minutes:g} min")

    st.subheader(f"Amount over time (per {r.unit})")
    if r.chart.is_empty():
        st.info("No events in this time range yet.")
    else:
        st.line_chart(r.chart, x="bucket", y=["all events", "flagged"])

    left, right = st.columns([2, 3])
    with left:
        st.subheader("Top flagged users")
        if r.top.is_empty():
            st.info("No flagged users match the filters.")
        else:
            st.dataframe(r.top.select(
                "user_id", "flags", "max_amount", "median_amount", "x_usual", "usual_city",
                "txn_count", "first_seen", "rules"), hide_index=True, key="top_users")
            st.caption(f"among the latest {cfg.window_flags:,} matching flags; baseline = "
                       "history + live lake (usual amount = median)")
    with right:
        st.subheader("Latest flagged transactions")
        if r.flags.is_empty():
            st.info(f"No flags match the filters (or none yet) in {source.label}.")
        else:
            shown = r.flags.head(cfg.table_rows)
            st.dataframe(data.table_view(shown), hide_index=True, key="latest_flags")
            st.caption(f"showing {shown.height:,} of {r.total:,}{'+' if r.capped else ''} "
                       "matching flags, newest first")
        st.download_button("Download CSV", data=lambda: data.to_csv(source.export(f)),
                           file_name="fraudlake-flags.csv", mime="text/csv",
                           key="download_csv", on_click="ignore",
                           disabled=r.flags.is_empty())


def show_backtest(path: Path) -> None:
    st.subheader("Backtest: rule hit rates")
    report = data.read_report(path)
    if report is None:
        st.info(f"No backtest report at {path} yet (run batch.backtest with --report).")
        return
    density = (report.get("density") or {}).get("per_card_day")
    st.caption(f"{report.get('input', '?')} · {report.get('rows', 0):,} rows · "
               f"{report.get('fraud_rows', 0):,} fraud · generated {report.get('generated_at')}"
               + (f" · density {density:.2f} transactions per active card per day"
                  if density is not None else ""))
    c1, c2 = st.columns(2)
    c1.dataframe(data.rule_table(report), hide_index=True, key="rule_table")
    c2.dataframe(data.scenario_table(report), hide_index=True, key="scenario_table")


def main() -> None:
    st.title("fraudlake · live fraud flags")
    sidebar()
    try:
        cfg = DashboardConfig.from_env()
    except ValueError as exc:
        st.error(f"Bad dashboard configuration in the environment: {exc}")
        return
    try:
        f = current_filter(datetime.now(UTC))
    except FilterError as exc:
        st.sidebar.error(str(exc))
        st.warning(f"Fix the filter to see data: {exc}")
        show_backtest(cfg.report_path)
        return
    try:
        source = _source(cfg, _source_key(cfg))
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed MONGO_URI: a message, no trace
        st.error(f"Cannot open the flag store: {str(exc).splitlines()[0]}")
        return
    key, files = _history_key(str(cfg.settings.history_dir))
    try:
        history = (baseline.empty_cache() if not files else
                   _history(str(cfg.settings.history_dir), str(cfg.cache_dir), key))
    except (duckdb.Error, OSError) as exc:
        st.warning(f"History baselines unavailable: {str(exc).splitlines()[0][:200]}")
        history = baseline.empty_cache()

    @st.fragment(run_every=cfg.refresh_seconds)
    def live() -> None:
        try:
            live_filter = current_filter(datetime.now(UTC))
        except FilterError:
            live_filter = f
        show_live(source, cfg, live_filter, history, files)

    live()
    show_backtest(cfg.report_path)


main()
