"""fraudlake dashboard for fraud analysts (Streamlit): alerts → evidence → verdict.

    .venv/bin/streamlit run dashboard/app.py            # http://localhost:8501

Configuration (environment): MONGO_URI / MONGO_DB / MONGO_COLLECTION (flags and cases from
MongoDB; unset → the embedded store LOCAL_FLAGS_PATH), LAKE_DIR, HISTORY_DIR,
DASHBOARD_CACHE_DIR, BACKTEST_REPORT, CONSUMER_METRICS, DASHBOARD_REFRESH_SECONDS (default 1),
DASHBOARD_USERS_FILE (local sign-in; ``st.login`` is used instead when secrets configure it).

Filters and sign-in live in the sidebar; the live part is one ``st.fragment(run_every=…)`` that
re-reads and redraws in place; the alert inspector (drill-down + verdict) reruns only when used.
Every panel survives another panel's failure with a one-line message (``views.guard``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ first on sys.path, where a module of this
# folder could shadow a top-level package: import from the repository root instead.
_HERE, _ROOT = Path(__file__).resolve().parent, str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT, *(p for p in sys.path if Path(p or ".").resolve() != _HERE and p != _ROOT)]

import duckdb  # noqa: E402
import polars as pl  # noqa: E402
import streamlit as st  # noqa: E402

from dashboard import (  # noqa: E402
    access,
    aggregates,
    alert_view,
    baseline,
    cases,
    data,
    lake_queries,
    rule_sets,
    views,
)
from dashboard.filters import (  # noqa: E402
    DEFAULT_TIME_RANGE,
    TIME_RANGES,
    FilterError,
    FlagFilter,
    build_filter,
    ordered_rules,
)
from dashboard.refresh import (  # noqa: E402
    DashboardConfig,
    FlagView,
    flag_view,
    range_start,
    rule_band,
    rule_hits,
    top_users,
    traffic,
    triage,
)
from dashboard.refresh import volume as volume_chart  # noqa: E402
from dashboard.sources import FlagSource, open_source  # noqa: E402
from fraudlake.contract import RULE_NAMES  # noqa: E402

st.set_page_config(page_title="fraudlake · fraud alerts", layout="wide")
st.markdown("<style>[data-testid='stAppDeployButton'], .stAppDeployButton {display: none;}"
            "</style>", unsafe_allow_html=True)


@st.cache_resource
def _source(_cfg: DashboardConfig, key: tuple[str | None, ...]) -> FlagSource:
    """One source (one MongoClient, one held snapshot) per configuration, for all sessions."""
    return open_source(_cfg.settings)


def _source_key(cfg: DashboardConfig) -> tuple[str | None, ...]:
    s = cfg.settings
    return (s.mongo_uri, s.mongo_db, s.mongo_collection, str(s.local_flags_path))


def _cases(cfg: DashboardConfig, source: FlagSource) -> cases.CaseStore:
    if cfg.settings.mongo_uri:  # the cases live beside the flags, on the source's client
        from dashboard.cached_reader import MongoFlagSource

        assert isinstance(source, MongoFlagSource)
        return cases.MongoCaseStore(source.reader.client, cfg.settings.mongo_db)
    return cases.SqliteCaseStore(cfg.settings.local_flags_path)


@st.cache_resource
def _control(bootstrap: str, topic: str, _extra: dict[str, str]) -> rule_sets.ControlWatch:
    """One control-topic watcher per broker and topic, for all sessions."""
    return rule_sets.ControlWatch(bootstrap, topic, _extra).start()


def in_force(cfg: DashboardConfig, source: FlagSource) -> rule_sets.InForce:
    """Active/shadow ids from the control topic with Kafka, else the newest flag's set."""
    s = cfg.settings
    if not s.kafka_bootstrap_servers:
        return rule_sets.from_flags(_rule_set_in_force(source))
    topic = s.rules_topic
    state, error = _control(s.kafka_bootstrap_servers, topic, dict(s.kafka_extra)).latest()
    if state is None:
        raise RuntimeError(error or f"control topic {topic} not read yet")
    return rule_sets.from_control(state, topic)


def _shadow(cfg: DashboardConfig, f: FlagFilter, con) -> pl.DataFrame:
    """The shadow comparison over the range (empty: no shadow decisions in range)."""
    rows = rule_sets.shadow_rows(views.lake_files(cfg), f.since, f.until, con)
    return pl.DataFrame() if rows is None or rows.is_empty() else rule_sets.comparison(rows)


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


def rule_options(source: FlagSource | None) -> list[str]:
    """v1 rules, then every other rule id seen in the held flags (rule sets), then any
    still selected."""
    seen: list[str] = []
    if source is not None:
        try:
            seen = aggregates.per_rule_counts(source.matching(FlagFilter()))["rule"].to_list()
        except Exception:  # noqa: BLE001 - the Flags panel reports the store's problem
            seen = []
    chosen = st.session_state.get("rules", [])
    return list(ordered_rules([*RULE_NAMES, *seen, *chosen]))


def sidebar(rules: list[str]) -> None:
    """Filter widgets; their values persist in session_state across refreshes."""
    sb = st.sidebar
    sb.header("Filters")
    sb.selectbox("Time range", list(TIME_RANGES), key="time_range",
                 index=list(TIME_RANGES).index(DEFAULT_TIME_RANGE))
    sb.multiselect("Rules fired (any of)", rules, key="rules")
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


def show_live(source: FlagSource, store: cases.CaseStore, cfg: DashboardConfig,
              f: FlagFilter, history: baseline.HistoryCache, history_files: list[Path]) -> None:
    """Everything that refreshes every second, panel by panel (``refresh.load_refresh``'s
    steps, each behind its own guard)."""
    now = datetime.now(UTC)
    tz = views.local_tz()
    con = lake_queries.connect()
    t = views.guard("Live lake (all-traffic KPIs)", lambda: traffic(cfg, now, con))
    case_frame = views.guard("Cases", store.cases)
    view: FlagView | None = views.guard("Flags", lambda: flag_view(
        source, cfg, f, range_start(f, source, history, now, con, views.lake_files(cfg)), now))
    tri = None
    if view is not None and case_frame is not None:
        tri = views.guard("Triage", lambda: triage(source, f, case_frame))
    newest = view.agg.newest if view is not None else None
    views.status_line(cfg, t, newest, now, tz, source.label,
                      "MongoDB mode" if cfg.settings.mongo_uri else "embedded mode")
    left, right = st.columns(2)
    with left:
        if t is not None:
            views.traffic_kpis(t)
    with right:
        if view is not None:
            views.flag_kpis(view, case_frame, None if tri is None else tri.confirmed)
    chart = None
    if view is not None:
        chart = views.guard("Chart", lambda: volume_chart(cfg, f, view, history, history_files,
                                                          con))
        if chart is not None:
            views.chart(chart, view.unit, t is not None and t.lake_present)
    c1, c2 = st.columns([2, 3])
    with c1:
        if view is not None:
            top = views.guard("Usual behaviour of top users", lambda: top_users(
                cfg, view, history, _cached_live_baselines))
            views.top_users(top if top is not None else view.agg.top)
    with c2:
        if view is not None:
            views.latest(view.recent, view.agg.total, tz, source.label, source.notice,
                         case_frame)
            st.download_button("Download CSV", data=lambda: data.to_csv(source.export(f)),
                               file_name="fraudlake-flags.csv", mime="text/csv",
                               key="download_csv", on_click="ignore",
                               disabled=view.recent.is_empty())
        else:
            notice = getattr(source, "notice", None)
            if notice:
                st.warning(notice)
    if tri is not None:
        views.queue(tri.queue, tz)
    report = _report_or_none(cfg.report_path)
    if view is not None and chart is not None:
        hits = views.guard("Per-rule monitoring", lambda: rule_hits(cfg, source, f, view, con))
        table = None if hits is None else rule_band(hits, chart, report)
        if hits is not None and table is not None:
            views.rule_monitoring(table, tri.confirmed_rules if tri is not None
                                  else pl.DataFrame(), hits.origin)
            views.guard("Per-rule hits over time", lambda: views.rule_over_time(
                table, hits.series, chart, view.unit))
    forced = views.guard("Rule sets in force", lambda: in_force(cfg, source))
    if forced is not None:
        views.rule_sets(forced, views.guard("Shadow comparison", lambda: _shadow(cfg, f, con)))
    views.guard("What-if", lambda: views.what_if(forced.active if forced else None, report,
                                                 cfg.whatif_path))


def _rule_set_in_force(source: FlagSource) -> str | None:
    newest = source.recent(FlagFilter(), 1)
    return newest["rule_set_id"][0] if newest.height else None


def _report_or_none(path: Path) -> dict | None:
    try:
        return data.read_report(path)
    except data.ReportError:
        return None


def show_inspector(source: FlagSource, store: cases.CaseStore, cfg: DashboardConfig,
                   f: FlagFilter, user: str | None, history_files: list[Path]) -> None:
    """Drill-down + verdict for one alert (reruns only when used)."""
    st.header("Inspect an alert")
    case_frame = views.guard("Cases", store.cases)
    options: list[str] = []
    if case_frame is not None:
        q = views.guard("Triage queue", lambda: triage(source, f, case_frame, 200).queue)
        options = [] if q is None else q["transaction_id"].to_list()
    c1, c2 = st.columns(2)
    picked = c1.selectbox("From the queue (highest score first)", options, index=None,
                          key="inspect_pick", placeholder="choose an alert")
    typed = c2.text_input("…or a transaction id", key="inspect_id").strip()
    txid = typed or picked
    if not txid:
        st.caption("Choose an alert to see its evidence, the card's transactions and its "
                   "verdict.")
        return
    flag = views.guard("Flag", lambda: source.detail(txid))
    if flag is None:
        st.info(f"No flag {txid!r} in {source.label}.")
        return
    tz = views.local_tz()
    alert_view.card_and_evidence(flag, views.lake_files(cfg), history_files, tz)
    current = None
    if case_frame is not None:
        row = case_frame.filter(pl.col("transaction_id") == txid)
        current = row.row(0, named=True) if row.height else None
    views.guard("Verdict", lambda: alert_view.triage_form(store, txid, user, current))


def main() -> None:
    st.title("fraudlake · fraud alerts")
    try:
        cfg = DashboardConfig.from_env()
    except ValueError as exc:
        sidebar(list(RULE_NAMES))
        st.error(f"Bad dashboard configuration in the environment: {views.one_line(exc)}")
        return
    try:
        source: FlagSource | None = _source(cfg, _source_key(cfg))
        open_error = None
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed MONGO_URI: a message, no trace
        source, open_error = None, exc
    sidebar(rule_options(source))
    user = access.sign_in_box()
    try:
        f = current_filter(datetime.now(UTC))
    except FilterError as exc:
        st.sidebar.error(str(exc))
        st.warning(f"Fix the filter to see data: {exc}")
        views.guard("Backtest", lambda: views.backtest(cfg.report_path))
        return
    if source is None:
        st.error(f"Cannot open the flag store: {views.one_line(open_error or Exception())}")
        views.guard("Backtest", lambda: views.backtest(cfg.report_path))
        return
    store = _cases(cfg, source)
    key, files = _history_key(str(cfg.settings.history_dir))
    try:
        history = (baseline.empty_cache() if not files else
                   _history(str(cfg.settings.history_dir), str(cfg.cache_dir), key))
    except (duckdb.Error, OSError) as exc:
        st.warning(f"History baselines unavailable — {views.one_line(exc)}")
        history = baseline.empty_cache()

    @st.fragment(run_every=cfg.refresh_seconds)
    def live() -> None:
        try:
            live_filter = current_filter(datetime.now(UTC))
        except FilterError:
            live_filter = f
        show_live(source, store, cfg, live_filter, history, files)

    live()
    show_inspector(source, store, cfg, f, user, files)
    views.guard("Backtest", lambda: views.backtest(cfg.report_path))


main()
