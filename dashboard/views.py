"""The page's panels. Each panel reads what it needs and, when a read fails, shows ONE line
saying what is wrong (``guard``) while the other panels go on — never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import altair as alt
import polars as pl
import streamlit as st

from dashboard import cases, data, monitor
from dashboard.refresh import DashboardConfig, FlagView, Traffic
from dashboard.rule_sets import InForce
from lake.layout import data_files

log = logging.getLogger(__name__)
T = TypeVar("T")
PCT = st.column_config.NumberColumn(format="percent")
MONEY = st.column_config.NumberColumn(format="%.2f")


def one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:240]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guard(what: str, fn: Callable[[], T]) -> T | None:
    """Run one panel's read/draw; on failure one line (logged without the traceback)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a panel never takes the page down
        log.warning("dashboard panel %s failed: %s", what, one_line(exc))
        st.error(f"{what} unavailable — {one_line(exc)}")
        return None


def local_tz() -> str:
    """The browser's time zone (Streamlit tells the server), else UTC."""
    try:
        tz = st.context.timezone
    except Exception:  # noqa: BLE001 - older Streamlit / no browser (AppTest)
        tz = None
    return tz or "UTC"


def fmt_time(ts: datetime | None, tz: str) -> str:
    if ts is None:
        return "n/a"
    import zoneinfo

    try:
        return ts.astimezone(zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(delta: timedelta) -> str:
    s = max(delta.total_seconds(), 0)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def freshness(newest: datetime | None, now: datetime) -> str:
    """'last event 4 s ago' or 'no events for 4 min'."""
    if newest is None:
        return "no live events yet"
    age = now - newest
    if age <= timedelta(seconds=60):
        return f"last event {ago(age)} ago"
    return f"no events for {ago(age)}"


def status_line(cfg: DashboardConfig, t: Traffic | None, newest_flag: datetime | None,
                now: datetime, tz: str, source_label: str, mode: str) -> None:
    newest = max((x for x in (t.newest if t else None, newest_flag) if x is not None),
                 default=None)
    lag = consumer_lag(cfg, now)
    st.caption(f"{freshness(newest, now)} · consumer lag: {lag} · flags from {source_label} "
               f"· {mode} · as of {fmt_time(now, tz)} (times in {tz})")


def consumer_lag(cfg: DashboardConfig, now: datetime) -> str:
    lag = data.read_lag(cfg.metrics_path, now)
    if lag is not None:
        return f"{lag:,} events"
    if not Path(cfg.metrics_path).exists():
        return f"n/a (no consumer metrics at {cfg.metrics_path})"
    return "n/a (consumer metrics older than 5 min: is the consumer running?)"


def traffic_kpis(t: Traffic) -> None:
    st.markdown(f"**All traffic** · last {t.minutes:g} min, live lake (not filtered)")
    c = st.columns(3)
    c[0].metric("Events / min", f"{t.events / t.minutes:,.1f}")
    c[1].metric("Flags / min", f"{t.flagged / t.minutes:,.1f}")
    c[2].metric("Flag rate", f"{t.flagged / t.events:.2%}" if t.events else "n/a")
    if not t.lake_present:
        st.caption("no live lake yet: these count nothing")


def flag_kpis(v: FlagView, case_frame: pl.DataFrame | None, confirmed: float | None) -> None:
    st.markdown("**Matching the filters** · every flag in the chosen range")
    c = st.columns(4)
    c[0].metric("Flags in view", f"{v.agg.total:,}")
    c[1].metric("Live precision", "n/a" if v.agg.precision is None
                else f"{v.agg.precision:.1%}",
                help=f"simulator labels: fraud among {v.agg.labelled:,} labelled flags in view")
    c[2].metric("Confirmed precision", "n/a" if confirmed is None else f"{confirmed:.1%}",
                help="analyst verdicts: fraud / (fraud + legitimate) among decided alerts")
    decided = 0 if case_frame is None else case_frame.filter(
        pl.col("status") != "open").height
    c[3].metric("Triaged alerts", f"{decided:,}")


def chart(frame: pl.DataFrame, unit: str, lake_present: bool) -> None:
    st.subheader(f"Events over time (per {unit})")
    if frame.is_empty():
        st.info("No events in this time range yet.")
        return
    enc = alt.Chart(frame.to_pandas()).mark_line(interpolate="step-after").encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("events:Q", title="events per " + unit),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
        tooltip=["bucket:T", "series:N", alt.Tooltip("events:Q", format=",")])
    st.altair_chart(enc, width="stretch")
    notes = ["flagged = flags from the store; live events = the live lake"]
    if not lake_present:
        notes.append("the live lake is missing: no live-events line (flags alone)")
    if "history events" in frame["series"].unique().to_list():
        notes.append("history = the batch history's volume (labelled, not decided live: "
                     "its flags are in the backtest below)")
    st.caption(" · ".join(notes))


def top_users(top: pl.DataFrame) -> None:
    st.subheader("Top flagged users")
    if top.is_empty():
        st.info("No flagged users match the filters.")
        return
    cols = [c for c in ("user_id", "flags", "max_amount", "median_amount", "x_usual",
                        "usual_city", "txn_count", "first_seen", "rules") if c in top.columns]
    st.dataframe(top.select(cols), hide_index=True, key="top_users",
                 column_config={"max_amount": MONEY, "median_amount": MONEY})
    st.caption("over every matching flag in range; usual = history + live lake (median amount)")


def latest(flags: pl.DataFrame, total: int, tz: str, label: str, notice: str | None,
           case_frame: pl.DataFrame | None) -> None:
    st.subheader("Latest flagged transactions")
    if notice:
        st.warning(notice)
    if flags.is_empty():
        if not notice:
            st.info(f"No flags match the filters (or none yet) in {label}.")
        return
    shown = flags if case_frame is None else cases.with_status(flags, case_frame)
    st.dataframe(data.table_view(shown, tz), hide_index=True, key="latest_flags",
                 column_config={"amount": MONEY, "score": st.column_config.NumberColumn(
                     format="%.2f")})
    st.caption(f"showing {flags.height:,} of {total:,} matching flags, newest first")


def queue(q: pl.DataFrame, tz: str) -> None:
    st.subheader("Triage queue (open and escalated, highest score first)")
    if q.is_empty():
        st.info("Nothing to triage in this view.")
        return
    st.dataframe(data.table_view(q, tz).select(
        "ts", "status", "score", "transaction_id", "user_id", "amount", "rules", "city"),
        hide_index=True, key="queue", column_config={"amount": MONEY})


def rule_monitoring(table: pl.DataFrame, confirmed: pl.DataFrame, origin: str = "lake"
                    ) -> None:
    st.subheader("Per-rule monitoring: live vs backtest band")
    if table.is_empty():
        st.info("No rule hits and no backtest figures yet.")
        return
    out = table.join(confirmed.select("rule", "confirmed_precision", "decided"), on="rule",
                     how="left") if not confirmed.is_empty() else table
    st.dataframe(out, hide_index=True, key="rule_monitor", column_config={
        "live rate": PCT, "backtest rate": PCT, "band low": PCT, "band high": PCT,
        "confirmed_precision": PCT})
    drift = table.filter(pl.col("status").str.contains("drift"))
    if not drift.is_empty():
        st.warning("Drift: " + ", ".join(f"{r} {s.split(': ')[1]}" for r, s in zip(
            drift["rule"], drift["status"], strict=True)))
    counted = ("hits = every live event each rule fired on in range (the lake's rules_fired, "
               "all traffic: the time filter only)" if origin == "lake" else
               "hits counted from the stored flags (no live lake): a rule that fires below the "
               "alert threshold is missed")
    st.caption(f"{counted}; band = backtest rate ± {monitor.BAND_SIGMAS:g}σ over the live "
               "events in range (binomial); confirmed precision = analyst verdicts")


def rule_over_time(table: pl.DataFrame, hits: pl.DataFrame, chart_frame: pl.DataFrame,
                   unit: str) -> None:
    """One rule's hits per bucket against the band the backtest predicts; drift marked."""
    if table.is_empty():
        return
    rules = table["rule"].to_list()
    drifting = table.filter(pl.col("status").str.contains("drift"))["rule"].to_list()
    rule = st.selectbox("Rule over time", rules, key="monitor_rule",
                        index=rules.index(drifting[0]) if drifting else 0)
    live = chart_frame.filter(pl.col("series") == "live events").select("bucket", "events")
    if live.is_empty():
        st.caption("No live events in range: no band to draw.")
        return
    p = table.filter(pl.col("rule") == rule)["backtest rate"][0]
    s = monitor.rule_band_series(hits, live, rule, p).to_pandas()
    base = alt.Chart(s).encode(x=alt.X("bucket:T", title=None))
    layers = [base.mark_line(color="#1f77b4").encode(y=alt.Y("hits:Q", title=f"hits per {unit}"))]
    if p is not None:
        layers.insert(0, base.mark_area(opacity=0.25, color="#7f7f7f").encode(
            y="band low:Q", y2="band high:Q"))
        layers.append(base.transform_filter("datum.drift").mark_point(
            color="#d62728", size=70, filled=True).encode(y="hits:Q"))
    st.altair_chart(alt.layer(*layers), width="stretch")
    st.caption(f"{rule}: live hits (line) vs the backtest band (grey); red = outside the band")


def backtest(path: Path) -> None:
    st.subheader("Backtest: rule hit rates over the history")
    report = data.read_report(path)
    if report is None:
        st.info(f"No backtest report at {path} yet (run batch.backtest with --report).")
        return
    density = (report.get("density") or {}).get("per_card_day")
    st.caption(f"input {report.get('input', '?')} · {int(report.get('rows') or 0):,} rows · "
               f"{int(report.get('fraud_rows') or 0):,} fraud · generated "
               f"{report.get('generated_at', '?')}"
               + (f" · density {density:.2f} transactions per active card per day"
                  if density is not None else ""))
    c1, c2, c3 = st.columns([3, 3, 2])
    with c1:
        st.markdown("**Per rule** (share of all rows flagged; fraud among flagged; fraud caught)")
        st.dataframe(data.rule_table(report).rename({
            "flagged": "rows flagged", "flag_rate": "flag rate", "precision": "precision",
            "recall": "recall"}), hide_index=True, key="rule_table",
            column_config={"flag rate": PCT, "precision": PCT, "recall": PCT})
    with c2:
        st.markdown("**Recall per fraud scenario** (share of each scenario's fraud a rule "
                    "catches)")
        scen = data.scenario_table(report)
        st.dataframe(scen, hide_index=True, key="scenario_table",
                     column_config={c: PCT for c in scen.columns if c != "scenario"})
    with c3:
        st.markdown("**Parameters of this backtest**")
        params = data.report_params(report)
        if params.is_empty():
            st.caption("the report records no parameters")
        else:
            st.dataframe(params, hide_index=True, key="backtest_params")


def rule_sets(forced: InForce, shadow: pl.DataFrame | None) -> None:
    """Active and shadow set ids, and the live shadow comparison over the chosen range
    (``shadow`` None: its read failed and said so already; empty: no shadow decisions)."""
    st.subheader("Rule sets in force")
    since = {"active": forced.active_since, "shadow": forced.shadow_since}
    parts = [f"{role} **{rid or 'none'}**" + (f" (since {since[role]})" if since[role] else "")
             for role, rid in (("active", forced.active), ("shadow", forced.shadow))]
    st.markdown(" · ".join(parts) + f"  \n*from the {forced.origin}*")
    if shadow is None:
        return
    if shadow.is_empty():
        st.caption("no shadow set: no live event in this range was decided by a shadow set")
        return
    st.markdown("**Live shadow comparison** (events in range; alerts the shadow set would add "
                "or remove; precision and recall where the simulator's labels exist)")
    st.dataframe(shadow, hide_index=True, key="shadow_comparison", column_config={
        c: PCT for c in ("active_precision", "shadow_precision", "active_recall",
                         "shadow_recall")})


def what_if(rule_set_id: str | None, report: dict | None, whatif_path: Path) -> None:
    st.subheader("What-if")
    backtest_id = ("no report" if report is None
                   else report.get("rule_set_id") or "v1 rules (no id)")
    st.markdown(f"Active rule set: **{rule_set_id or 'v1 rules (no id)'}** · "
                f"last backtest: **{backtest_id}**")
    w = data.read_whatif(whatif_path)
    if w is None and report is not None and any(k in report for k in data.WHATIF_PARTS):
        w = report  # a backtest run with --compare / --sweep saved its what-if in the report
    if w is None:
        st.caption(f"No what-if report at {whatif_path} (save a `batch.backtest --compare / "
                   "--sweep` report there, or set WHATIF_REPORT).")
        return
    a, b = (w.get("a") or {}), (w.get("b") or {})
    st.caption(f"what-if over {w.get('input', '?')}: A {a.get('rule_set_id', '?')}"
               + (f" vs B {b.get('rule_set_id')}" if b else ""))
    ab = data.variants(w)
    if not ab.is_empty():
        st.dataframe(ab, hide_index=True, key="whatif_variants", column_config={
            "precision": PCT, "recall": PCT,
            "alerts_per_day": st.column_config.NumberColumn("alerts / day", format="%.1f")})
    fl = data.flips(w)
    if not fl.is_empty():
        st.markdown("**A/B: decisions B gains and loses, per rule**")
        long = fl.unpivot(index="rule", variable_name="change", value_name="decisions")
        st.altair_chart(alt.Chart(long.to_pandas()).mark_bar().encode(
            x=alt.X("decisions:Q"), y=alt.Y("rule:N", title=None),
            color=alt.Color("change:N", title=None), yOffset="change:N"), width="stretch")
    pts = data.sweep_points(w)
    if not pts.is_empty():
        st.markdown("**Sweep: alerts per day vs precision** (frontier marked)")
        st.altair_chart(alt.Chart(pts.to_pandas()).mark_point(filled=True, size=80).encode(
            x=alt.X("alerts_per_day:Q", title="alerts per day"),
            y=alt.Y("precision:Q", axis=alt.Axis(format="%")),
            shape="frontier:N", tooltip=["point", "rule_set_id", "alerts_per_day",
                                         alt.Tooltip("precision:Q", format=".1%"),
                                         alt.Tooltip("recall:Q", format=".1%")]),
            width="stretch")
        st.dataframe(pts, hide_index=True, key="sweep_points",
                     column_config={"precision": PCT, "recall": PCT})
    drift = data.drift_by_year(w)
    if not drift.is_empty():
        st.markdown("**Drift: precision of each rule per year** (A's rule set; a decaying rule "
                    "falls)")
        st.altair_chart(alt.Chart(drift.to_pandas()).mark_line(point=True).encode(
            x=alt.X("year:O", title=None), y=alt.Y("precision:Q", axis=alt.Axis(format="%")),
            color=alt.Color("rule:N", title=None),
            tooltip=["rule", "year", "fired", alt.Tooltip("precision:Q", format=".1%"),
                     alt.Tooltip("recall:Q", format=".1%"),
                     alt.Tooltip("flag_rate:Q", format=".3%")]), width="stretch")
        st.dataframe(drift, hide_index=True, key="drift_table",
                     column_config={"flag_rate": PCT, "precision": PCT, "recall": PCT})


def lake_files(cfg: DashboardConfig) -> list[Path]:
    return data_files(cfg.settings.lake_transactions_dir)
