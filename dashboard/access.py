"""Sign-in for the page: Streamlit's ``st.login`` (OIDC from secrets) where configured, else
the local users file (``dashboard.users``). Without a signed-in user the page is read-only.

The signed-in name lives in ``st.session_state["signed_in"]`` (server side, per session); the
password field is cleared on submit and never stored, logged or shown.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

from dashboard import users

log = logging.getLogger(__name__)
FAILED_LOGIN_DELAY_S = 1.0


def oidc_configured() -> bool:
    """True when ``.streamlit/secrets.toml`` has an ``[auth]`` section for ``st.login``."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file (or a broken one): not configured
        return False


def current_user() -> str | None:
    """Who is signed in, or None (read-only)."""
    if oidc_configured():
        try:
            if st.user.is_logged_in:
                return str(st.user.get("email") or st.user.get("name") or "oidc-user")
        except Exception:  # noqa: BLE001 - auth misconfigured: read-only
            return None
        return None
    return st.session_state.get("signed_in")


def sign_in_box() -> str | None:
    """The sidebar's sign-in / sign-out controls; returns the signed-in user."""
    sb = st.sidebar
    sb.header("Analyst")
    user = current_user()
    if user is not None:
        sb.success(f"Signed in as **{user}**")
        if sb.button("Sign out", key="sign_out"):
            if oidc_configured():
                st.logout()
            st.session_state.pop("signed_in", None)
            log.info("dashboard: %s signed out", user)
            st.rerun()
        return user
    if oidc_configured():
        sb.caption("Read-only until you sign in.")
        if sb.button("Sign in", key="sign_in_oidc"):
            try:
                st.login()
            except Exception as exc:  # noqa: BLE001 - e.g. Authlib missing: one line
                sb.error(f"Sign-in unavailable: {str(exc).splitlines()[0][:160]}")
        return None
    path = users.users_path()
    with sb.form("sign_in", clear_on_submit=True):
        name = st.text_input("User", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if users.verify(path, name, password):
            st.session_state["signed_in"] = name.strip()
            log.info("dashboard: %s signed in", name.strip())
            st.rerun()
        time.sleep(FAILED_LOGIN_DELAY_S)
        log.info("dashboard: failed sign-in")
        sb.error("Unknown user or wrong password.")
    if not users.read_users(path):
        sb.caption(f"No users yet in {path}: add one with `python -m dashboard.users add NAME`.")
    sb.caption("Read-only until you sign in.")
    return None
