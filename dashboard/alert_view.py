"""The alert inspector: one flag's evidence, the card's transactions, and the verdict form."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import polars as pl
import streamlit as st

from dashboard import cases, drill
from dashboard.views import MONEY, fmt_time, guard, local_tz

log = logging.getLogger(__name__)


def card_and_evidence(flag: dict, live_files: list[Path], history_files: list[Path],
                      tz: str) -> None:
    ts = flag.get("ts")
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if not isinstance(ts, datetime):
        st.error(f"flag {flag.get('transaction_id')} has no event time")
        return
    fired = flag.get("rules_fired") or flag.get("rules") or []
    flag = {**flag, "ts": ts, "score": flag.get("score") if flag.get("score") is not None
            else float(len(fired))}
    st.markdown(f"**{flag['transaction_id']}** · user {flag.get('user_id')} · "
                f"{flag.get('amount')} {flag.get('currency') or ''} at "
                f"{flag.get('merchant_name') or '?'}, {flag.get('city') or '?'} "
                f"({flag.get('country') or '?'}) · {fmt_time(ts, tz)} · score "
                f"{flag.get('score', 'n/a')} · rule set {flag.get('rule_set_id') or 'v1'}")
    card = guard("Card history", lambda: drill.card_transactions(
        int(flag["user_id"]), ts, live_files, history_files))
    st.markdown("**Evidence per fired rule**")
    for rule, ev in drill.evidence_rows(flag).items():
        with st.container(border=True):
            st.markdown(f"`{rule}`")
            travel = ev if ev and "from_lat" in ev else None
            if ev is None:
                st.caption("no evidence recorded for this flag (v1 flag, before rule sets)")
                if rule == "geo_mismatch" and card is not None:
                    travel = drill.travel_from_history(flag, card)
                    if travel:
                        st.caption("reconstructed from the card's previous transaction:")
            if ev:
                if ev.get("text"):
                    st.markdown(f"{ev['text']}")
                st.table(drill.evidence_table(ev).to_pandas().set_index("field"))
            if travel:
                if ev is None:
                    st.write({k: travel[k] for k in ("from_city", "km", "minutes", "kmh")})
                st.map(drill.jump_points(flag, travel).to_pandas(), size=20000)
            if card is not None and not card.is_empty():
                context(rule, ev, flag, card, tz)
    st.markdown("**The card's recent transactions** (live lake + history, flagged or not)")
    if card is not None:
        if card.is_empty():
            st.info("No other transactions of this card in the lake.")
        else:
            view = card.with_columns(pl.col("ts").dt.convert_time_zone(tz)) \
                if "ts" in card.columns and card.schema["ts"] != pl.String() else card
            st.dataframe(view.drop("lat", "lon", strict=False), hide_index=True,
                         key="card_history", column_config={"amount": MONEY})


def context(rule: str, ev: dict | None, flag: dict, card: pl.DataFrame, tz: str) -> None:
    """What the card's own transactions say next to the evidence: the events inside a
    velocity window; the amount against the card's recent median."""
    window = (ev or {}).get("window_seconds") or (60 if rule == "high_frequency" else None)
    if window is not None:
        inside = drill.in_window(card, flag["ts"], int(window))
        st.caption(f"the card's events in the {int(window)} s up to this one: {inside.height}")
        st.dataframe(inside.with_columns(pl.col("ts").dt.convert_time_zone(tz)).select(
            "ts", "transaction_id", "amount", "merchant_name", "city"), hide_index=True,
            key=f"window_{rule}", column_config={"amount": MONEY})
    if "threshold" in (ev or {}) or "median" in (ev or {}) or rule == "high_amount":
        median = drill.card_median(card, flag["transaction_id"])
        if median is not None and flag.get("amount") is not None:
            amount = float(flag["amount"])
            st.caption(f"amount {amount:,.2f} = {amount / median:,.1f} × the card's recent "
                       f"median ({median:,.2f}, {card.height} transactions)"
                       if median > 0 else "the card's recent median is 0")


UNCHANGED = "(unchanged)"


def triage_form(store: cases.CaseStore, txid: str, user: str | None,
                current: dict | None) -> None:
    """Status / assignee / note for one alert. The form's fields start EMPTY ("unchanged"):
    sending it again, or sending it untouched, changes nothing (idempotent)."""
    status = (current or {}).get("status") or "open"
    assignee_now = (current or {}).get("assignee") or "nobody"
    st.markdown(f"**Verdict** · status **{status}** · assignee **{assignee_now}**")
    flash = st.session_state.pop("triage_flash", None)
    if flash:
        st.success(flash)
    if user is None:
        st.info("Read-only: sign in (sidebar) to change this alert.")
    with st.form(f"triage_{txid}", clear_on_submit=True):
        c1, c2 = st.columns(2)
        new_status = c1.selectbox("Status", (UNCHANGED, *cases.STATUSES), key="triage_status",
                                  disabled=user is None)
        assignee = c2.text_input("Assignee", key="triage_assignee", disabled=user is None,
                                 placeholder="unchanged")
        note = st.text_area("Note", key="triage_note", disabled=user is None,
                            max_chars=cases.MAX_NOTE)
        saved = st.form_submit_button("Save", disabled=user is None)
    if saved and user is not None:
        action = cases.Action(txid, user, None if new_status == UNCHANGED else new_status,
                              assignee.strip() or None, note)
        try:
            n = store.act(action)
        except cases.CaseError as exc:
            st.error(str(exc))
        else:
            log.info("dashboard: %s changed %d field(s) of case %s", user, n, txid)
            st.session_state["triage_flash"] = (
                f"Saved ({n} change{'s' if n != 1 else ''})." if n else "No change.")
            st.rerun()
    trail = store.audit(txid)
    if not trail.is_empty():
        st.dataframe(trail.with_columns(pl.col("at").dt.convert_time_zone(local_tz())),
                     hide_index=True, key="audit_trail")
