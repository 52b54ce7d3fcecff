"""The page itself, run headless with Streamlit's AppTest over a small world in tmp_path."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import _dashdata as _data
import polars as pl
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


#: file id → the download button's deferred callable (AppTest drops its media manager after
#: each run, so we keep the callables the page registers, exactly as the server would run them)
DEFERRED: dict[str, object] = {}


@pytest.fixture(autouse=True)
def keep_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        DEFERRED[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = _data.build_world(tmp_path)
    for name in ("MONGO_URI", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def latest_table(at: AppTest) -> pl.DataFrame:
    return pl.from_pandas(table_with(at, "transaction_id"))


def table_with(at: AppTest, column: str):
    """The st.dataframe whose columns include ``column`` (as pandas)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert frames, f"no table with column {column!r}"
    return frames[0]


def csv_rows(at: AppTest) -> pl.DataFrame:
    """Run the Download CSV button's deferred callable the way the server would."""
    button = at.get("download_button")[0]
    content = DEFERRED[button.proto.deferred_file_id]()
    assert isinstance(content, bytes)
    return pl.read_csv(io.BytesIO(content), infer_schema=False)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    """Every message, caption and markdown on the page, one per line."""
    parts = [e.value for kind in ("error", "warning", "info", "success", "caption", "markdown")
             for e in getattr(at, kind)]
    parts += [e.value for kind in ("error", "warning", "info", "success", "caption", "markdown")
              for e in getattr(at.sidebar, kind)]
    return "\n".join(str(p) for p in parts)


def test_page_shows_kpis_table_and_csv(world: dict[str, str]) -> None:
    at = run_app()
    assert metric(at, "Events / min") == "1.0"  # 60 events over the last hour, 5 in 5 min
    assert metric(at, "Flags in view") == "20"
    assert metric(at, "Live precision") == "50.0%"
    assert "consumer lag: n/a (no consumer metrics" in texts(at)
    assert "All traffic" in texts(at) and "Matching the filters" in texts(at)
    table = latest_table(at)
    assert table.height == 20
    ts = table["ts"].to_list()
    assert ts == sorted(ts, reverse=True)  # newest first
    csv = csv_rows(at)
    assert csv["transaction_id"].to_list() == table["transaction_id"].to_list()
    assert len(at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")) >= 1
    assert table.schema["amount"] == pl.Float64  # a number: sorts as one


def test_lag_and_freshness_from_the_metrics_file(world: dict[str, str]) -> None:
    from datetime import UTC, datetime

    Path(world["CONSUMER_METRICS"]).write_text(json.dumps(
        {"lag": 1234, "updated_at": datetime.now(UTC).isoformat()}))
    at = run_app()
    assert "consumer lag: 1,234 events" in texts(at)
    assert "last event" in texts(at)


def test_filters_change_table_and_csv(world: dict[str, str]) -> None:
    at = run_app()
    at.sidebar.multiselect(key="rules").set_value(["high_amount"]).run()
    table = latest_table(at)
    assert table.height == 5
    assert set(table["rules"]) == {"high_amount"}
    csv = csv_rows(at)
    assert sorted(csv["transaction_id"]) == sorted(table["transaction_id"])
    assert all(float(a) > 1000 for a in csv["amount"])

    at.sidebar.text_input(key="user").set_value("2").run()
    table = latest_table(at)
    assert set(table["user_id"]) == {2} and table.height == 1
    assert csv_rows(at)["transaction_id"].to_list() == table["transaction_id"].to_list()

    at.run()  # a refresh keeps the filters
    assert at.sidebar.multiselect(key="rules").value == ["high_amount"]
    assert latest_table(at).height == 1


def test_amount_and_country_filters(world: dict[str, str]) -> None:
    at = run_app()
    at.sidebar.text_input(key="min_amount").set_value("20").run()
    at.sidebar.text_input(key="max_amount").set_value("1000").run()
    table = latest_table(at)
    assert table.height > 0
    assert all(20 <= float(a) <= 1000 for a in table["amount"])
    at.sidebar.text_input(key="country").set_value("fr").run()
    table = latest_table(at)
    assert set(table["country"]) == {"FR"}
    assert sorted(csv_rows(at)["transaction_id"]) == sorted(table["transaction_id"])


def test_bad_filter_input_shows_message_not_traceback(world: dict[str, str]) -> None:
    at = run_app()
    at.sidebar.text_input(key="user").set_value("robert'); drop table flags;--").run()
    assert not at.exception
    assert any("user id" in e.value for e in at.sidebar.error)


def test_time_range_all_time_includes_history_in_chart(world: dict[str, str]) -> None:
    at = run_app()
    at.sidebar.selectbox(key="time_range").set_value("All time").run()
    assert any("per month" in s.value for s in at.subheader)  # history from last March
    assert "history = the batch history's volume" in texts(at)
    assert latest_table(at).height == 20
    at.sidebar.selectbox(key="time_range").set_value("Last 7 days").run()
    assert any("per hour" in s.value for s in at.subheader)


def test_empty_store_shows_info(world: dict[str, str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_FLAGS_PATH", str(tmp_path / "none" / "flags.sqlite"))
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "nolake"))
    at = run_app()
    assert metric(at, "Flags in view") == "0"
    assert "no flag store at" in texts(at)  # says why, not "no flags match"
    assert not at.error


def test_unreachable_mongo_shows_error(world: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
    at = run_app()
    assert any("Flags unavailable" in e.value and "MongoDB" in e.value for e in at.error)


def test_backtest_report_tables(world: dict[str, str]) -> None:
    report = {
        "input": "storage/historical", "rows": 1000, "fraud_rows": 10, "params": {},
        "generated_at": "2026-01-01T00:00:00Z", "seconds": 1.0,
        "rules": {r: {"flagged": 5, "flag_rate": 0.005, "precision": 0.4, "recall": 0.2,
                      "recall_by_scenario": {"card_testing": 0.3, "account_takeover": 0.1}}
                  for r in ("high_amount", "geo_mismatch", "flagged")},
        "by_year": {}, "density": {"per_card_day": 1.654},
    }
    Path(world["BACKTEST_REPORT"]).write_text(json.dumps(report))
    at = run_app()
    assert any("density 1.65 transactions per active card per day" in c.value
               for c in at.caption)
    rules = table_with(at, "rows flagged")
    assert list(rules["rule"]) == ["high_amount", "geo_mismatch", "flagged"]
    assert "Recall per fraud scenario" in texts(at)
    scen = table_with(at, "scenario")
    assert list(scen["scenario"]) == ["account_takeover", "card_testing"]


def test_page_with_mongodb_source(world: dict[str, str], mongo_uri: str, mongo_db,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Same page, flags from the real FerretDB (written by the real sink), filters and CSV."""
    from flagstore.mongo import MongoFlagStore

    live = pl.read_parquet(Path(world["LAKE_DIR"]) / "transactions", hive_partitioning=False)
    sink = MongoFlagStore(mongo_uri, mongo_db.name, "flags", retry_seconds=10)
    sink.upsert(live.filter(pl.col("flagged")))
    sink.close()
    monkeypatch.setenv("MONGO_URI", mongo_uri)
    monkeypatch.setenv("MONGO_DB", mongo_db.name)
    at = run_app()
    assert not at.error
    assert metric(at, "Flags in view") == "20"
    assert any("MongoDB" in c.value for c in at.caption)
    at.sidebar.multiselect(key="rules").set_value(["geo_mismatch"]).run()
    table = latest_table(at)
    assert table.height == 5 and set(table["rules"]) == {"geo_mismatch"}
    assert csv_rows(at)["transaction_id"].to_list() == table["transaction_id"].to_list()

    # a verdict lands in <db>.cases / <db>.case_audit beside the flags, and a replay of the
    # flags (the sink upserting them again) leaves it alone
    txid = table["transaction_id"][0]
    at.session_state["signed_in"] = "alice"
    at = inspect(at, txid)
    at.selectbox(key="triage_status").set_value("legitimate")
    at.button(key=f"FormSubmitter:triage_{txid}-Save").click().run()
    assert "Saved (1 change)." in texts(at)
    sink = MongoFlagStore(mongo_uri, mongo_db.name, "flags", retry_seconds=10,
                          rewrite_replays=True)
    sink.upsert(live.filter(pl.col("flagged")))
    sink.close()
    case = mongo_db["cases"].find_one({"_id": txid})
    assert case["status"] == "legitimate" and case["updated_by"] == "alice"
    assert [d["user"] for d in mongo_db["case_audit"].find({"transaction_id": txid})] == ["alice"]
    fresh = run_app()
    assert metric(fresh, "Triaged alerts") == "1"


# --- failure modes: one line each, the other panels intact ----------------------------------


def test_store_that_is_not_sqlite(world: dict[str, str]) -> None:
    Path(world["LOCAL_FLAGS_PATH"]).unlink()
    Path(world["LOCAL_FLAGS_PATH"]).write_bytes(b"this is not a database " * 100)
    at = run_app()
    errors = [e.value for e in at.error]
    assert any("is not a SQLite flag store" in e for e in errors), errors
    assert all("\n" not in e and "Traceback" not in e for e in errors)
    assert metric(at, "Events / min") == "1.0"  # the lake panel goes on


def test_malformed_backtest_report(world: dict[str, str]) -> None:
    Path(world["BACKTEST_REPORT"]).write_text('{"rules": {"high_amount": 0.5')
    at = run_app()
    assert any(e.value.startswith("Backtest unavailable") and "not valid JSON" in e.value
               for e in at.error)
    assert latest_table(at).height == 20


def test_corrupt_lake_file(world: dict[str, str]) -> None:
    files = sorted((Path(world["LAKE_DIR"]) / "transactions").rglob("*.parquet"))
    files[0].write_bytes(b"PAR1 garbage")
    at = run_app()
    assert any(e.value.startswith("Live lake") for e in at.error), [e.value for e in at.error]
    assert metric(at, "Flags in view") == "20"  # flags come from the store
    assert latest_table(at).height == 20
    assert not at.exception


# --- triage, sign-in, drill-down ------------------------------------------------------------


def make_v1(world: dict[str, str], rule: str) -> str:
    """Turn the newest stored flag of ``rule`` into a v1 flag (no evidence, no rule set id,
    no score); return its id."""
    import sqlite3

    with sqlite3.connect(world["LOCAL_FLAGS_PATH"]) as conn:
        txid = conn.execute("SELECT transaction_id FROM flags WHERE instr(rules_fired, ?) > 0 "
                            "ORDER BY ts DESC LIMIT 1", [f'"{rule}"']).fetchone()[0]
        conn.execute("UPDATE flags SET evidence = NULL, rule_set_id = NULL, score = NULL "
                     "WHERE transaction_id = ?", [txid])
    return txid


def inspect(at: AppTest, txid: str) -> AppTest:
    at.text_input(key="inspect_id").set_value(txid).run()
    assert not at.exception, at.exception
    return at


def test_drill_down_shows_evidence_map_and_card(world: dict[str, str]) -> None:
    at = run_app()
    table = latest_table(at)
    txid = table.filter(pl.col("rules") == "geo_mismatch")["transaction_id"][0]
    at = inspect(at, txid)
    assert f"rule set {_data.RULE_SET_ID}" in texts(at) and "score 1" in texts(at)
    city = table.filter(pl.col("transaction_id") == txid)["city"][0]
    assert f"Lisbon → {city}: 2,312 km in 12.0 min = 11,560 km/h" in texts(at)
    ev = at.table[0].value
    assert ev.loc["from_city", "value"] == "Lisbon" and ev.loc["km", "value"] == "2311.9"
    assert len(at.get("deck_gl_json_chart")) == 1  # the map of the jump
    card = table_with(at, "source")
    assert txid in set(card["transaction_id"]) and set(card["source"]) <= {"live", "history"}
    assert card[card["transaction_id"] == txid]["rules_fired"].iloc[0] == "geo_mismatch"
    fast = table.filter(pl.col("rules") == "high_frequency")["transaction_id"][0]
    at = inspect(at, fast)
    assert "5 in 60 s" in texts(at)
    assert "the card's events in the 60 s up to this one: 1" in texts(at)
    big = table.filter(pl.col("rules") == "high_amount")["transaction_id"][0]
    at = inspect(at, big)
    assert "1500.25 > 1000.00" in texts(at) and "× the card's recent median" in texts(at)


def test_drill_down_of_a_v1_flag_reconstructs_the_jump(world: dict[str, str]) -> None:
    txid = make_v1(world, "geo_mismatch")
    at = inspect(run_app(), txid)
    assert "no evidence recorded" in texts(at) and "rule set v1" in texts(at)
    assert "reconstructed from the card's previous transaction" in texts(at)
    assert len(at.get("deck_gl_json_chart")) == 1


def test_anonymous_session_is_read_only(world: dict[str, str]) -> None:
    txid = latest_table(run_app())["transaction_id"][0]
    at = inspect(run_app(), txid)
    assert "Read-only: sign in" in texts(at)
    assert at.selectbox(key="triage_status").disabled
    assert at.button(key="FormSubmitter:triage_" + txid + "-Save").disabled
    from dashboard.cases import Action, CaseError

    with pytest.raises(CaseError, match="sign in"):
        Action(txid, "", "fraud")


def test_sign_in_with_the_users_file(world: dict[str, str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboard.users import add_user

    users = tmp_path / "users.txt"
    add_user(users, "alice", "correct horse battery")
    monkeypatch.setenv("DASHBOARD_USERS_FILE", str(users))
    monkeypatch.setattr("dashboard.access.FAILED_LOGIN_DELAY_S", 0.0)
    at = run_app()
    at.sidebar.text_input(key="login_name").set_value("alice")
    at.sidebar.text_input(key="login_password").set_value("wrong password")
    at.sidebar.button(key="FormSubmitter:sign_in-Sign in").click().run()
    assert "wrong password" in texts(at) and at.session_state["signed_in"] is None \
        if "signed_in" in at.session_state else True
    at.sidebar.text_input(key="login_name").set_value("alice")
    at.sidebar.text_input(key="login_password").set_value("correct horse battery")
    at.sidebar.button(key="FormSubmitter:sign_in-Sign in").click().run()
    assert at.session_state["signed_in"] == "alice"
    assert "Signed in as **alice**" in texts(at)
    assert "correct horse battery" not in str(at._tree)  # never echoed back
    assert "correct horse battery" not in users.read_text()


def test_triage_action_is_stored_audited_and_survives_reload(world: dict[str, str]) -> None:
    at = run_app()
    txid = latest_table(at)["transaction_id"][0]
    at.session_state["signed_in"] = "alice"
    at = inspect(at, txid)
    at.selectbox(key="triage_status").set_value("fraud")
    at.text_input(key="triage_assignee").set_value("bob")
    at.text_area(key="triage_note").set_value("card holder confirmed: not them")
    at.button(key=f"FormSubmitter:triage_{txid}-Save").click().run()
    assert "Saved (3 changes)" in texts(at)
    trail = table_with(at, "field")
    assert list(trail["field"]) == ["status", "assignee", "note"]
    assert set(trail["user"]) == {"alice"}
    at.button(key=f"FormSubmitter:triage_{txid}-Save").click().run()  # same again: no change
    assert len(table_with(at, "field")) == 3

    fresh = run_app()  # a reload: a new session, read-only
    assert metric(fresh, "Triaged alerts") == "1"
    assert metric(fresh, "Confirmed precision") == "100.0%"
    row = latest_table(fresh).filter(pl.col("transaction_id") == txid)
    assert row["status"].to_list() == ["fraud"]
    queue = [d.value for d in fresh.dataframe if "status" in d.value.columns][1]
    assert list(queue.columns[:3]) == ["ts", "status", "score"]
    assert txid not in set(queue["transaction_id"])  # decided: out of the queue
    scores = queue["score"].to_list()
    assert scores == sorted(scores, reverse=True)


def test_what_if_report_as_charts(world: dict[str, str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    report = {"input": "h", "a": {"rule_set_id": "default-1@aaaaaaaaaaaa"},
              "b": {"rule_set_id": "strict@bbbbbbbbbbbb"},
              "flips": {"high_amount": {"gained": 120, "lost": 30}},
              "sweep": {"parameters": ["high_amount.threshold"], "frontier": ["p1"],
                        "points": [{"point": f"p{i}", "rule_set_id": f"s@{i}",
                                    "precision": 0.1 * i, "recall": 0.5,
                                    "alerts_per_day": 10.0 / i} for i in (1, 2, 3)]}}
    path = tmp_path / "whatif.json"
    path.write_text(json.dumps(report))
    monkeypatch.setenv("WHATIF_REPORT", str(path))
    at = run_app()
    assert "A default-1@aaaaaaaaaaaa vs B strict@bbbbbbbbbbbb" in texts(at)
    points = table_with(at, "frontier")
    assert list(points["point"]) == ["p1", "p2", "p3"] and list(points["frontier"]) == [
        True, False, False]
    path.write_text("{}")
    at = run_app()
    assert any(e.value.startswith("What-if unavailable") for e in at.error)
    assert latest_table(at).height == 20


def test_what_if_and_params_from_real_backtest_reports(world: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """main's ``batch.backtest --report`` and ``--sweep … --report`` JSON, as the page shows it."""
    from batch.backtest import main as backtest

    sweep = Path(world["WHATIF_REPORT"])
    assert backtest(["--input", world["HISTORY_DIR"], "--report", world["BACKTEST_REPORT"]]) == 0
    assert backtest(["--input", world["HISTORY_DIR"], "--sweep",
                     "high_amount.threshold=500:1500:500", "--report", str(sweep)]) == 0
    at = run_app()
    params = table_with(at, "parameter")
    got = dict(zip(params["parameter"], params["value"], strict=True))
    assert got["high_amount.threshold"] == "1000" and got["rule_set_id"].startswith("default-1@")
    points = table_with(at, "frontier")
    assert list(points["point"]) == [f"high_amount.threshold={v}" for v in (500, 1000, 1500)]
    variants = table_with(at, "variant")
    assert list(variants["variant"]) == ["A"] and variants["rule_set_id"][0] == got["rule_set_id"]


def test_drift_chart_from_a_real_backtest_drift_report(world: dict[str, str]) -> None:
    """``batch.backtest --drift --report`` as the what-if panel shows it: per rule and year,
    the months summed; every rule's alerts over the years add up to its backtest total."""
    from batch.backtest import main as backtest

    path = Path(world["WHATIF_REPORT"])
    assert backtest(["--input", world["HISTORY_DIR"], "--drift", "--report", str(path)]) == 0
    report = json.loads(path.read_text())
    at = run_app()
    drift = pl.from_pandas(table_with(at, "true_pos"))
    rules = report["a"]["rules"]
    assert set(drift["rule"]) == set(rules)  # every rule id and "flagged"
    fired = dict(drift.group_by("rule").agg(pl.col("fired").sum()).iter_rows())
    assert fired == {r: v["flagged"] for r, v in rules.items()}
    assert drift.filter(pl.col("fired") > 0)["precision"].is_between(0, 1).all()
    assert drift.group_by("rule").agg(pl.col("year").is_sorted().alias("s"))["s"].all()


def test_rule_over_time_against_the_backtest_band(world: dict[str, str]) -> None:
    report = {"rules": {r: {"flagged": 1, "flag_rate": 0.0001} for r in
                        ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")}}
    Path(world["BACKTEST_REPORT"]).write_text(json.dumps(report))
    at = run_app()
    monitor_table = table_with(at, "band high")
    assert set(monitor_table["status"]) == {"▲ drift: above band"}  # 5 hits in 60 events
    assert at.selectbox(key="monitor_rule").value == "geo_mismatch"  # first drifting rule
    assert any("outside the band" in c.value for c in at.caption)
    before = table_with(at, "band high")
    at.sidebar.text_input(key="user").set_value("2").run()  # the band is about all traffic
    after = table_with(at, "band high")
    assert after["live hits"].tolist() == before["live hits"].tolist()
    assert any("the lake's rules_fired" in c.value for c in at.caption)


def test_rule_hits_count_rules_below_the_alert_threshold(world: dict[str, str]) -> None:
    """With a rule set whose alert needs two rules, a rule fires without an alert: the live
    lake's rules_fired counts it, the flag store never sees it."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    quiet = _data.events(12, now - timedelta(minutes=20), timedelta(minutes=1), seed=7)
    quiet = quiet.with_columns(  # every event fires "soft" (weight 1 of a threshold of 2)
        rules_fired=pl.lit(["soft"]), flagged=pl.lit(False), score=pl.lit(1.0),
        rule_set_id=pl.lit("two-needed@aaaaaaaaaaaa"))
    _data.write_lake(Path(world["LAKE_DIR"]) / "transactions", quiet, name="part-soft.parquet")
    report = {"rule_set_id": "two-needed@aaaaaaaaaaaa",
              "rules": {"soft": {"flagged": 10, "flag_rate": 0.2}}}
    Path(world["BACKTEST_REPORT"]).write_text(json.dumps(report))
    table = table_with(run_app(), "band high")
    soft = table[table["rule"] == "soft"]
    assert int(soft["live hits"].iloc[0]) == 12
    with sqlite3.connect(world["LOCAL_FLAGS_PATH"]) as conn:
        assert conn.execute("SELECT count(*) FROM flags WHERE rules_fired LIKE '%soft%'"
                            ).fetchone()[0] == 0


def test_oidc_configured_uses_st_login(world: dict[str, str]) -> None:
    """With an [auth] section in the secrets the page offers st.login instead of the users
    file; this machine has no Authlib / provider, so signing in fails in one line, read-only."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "not-a-real-secret", "client_id": "x",
                          "client_secret": "y", "server_metadata_url":
                          "http://127.0.0.1:1/.well-known/openid-configuration"}
    at.run()
    assert not at.exception
    assert not [t for t in at.sidebar.text_input if t.key == "login_password"]
    at.sidebar.button(key="sign_in_oidc").click().run()
    assert not at.exception
    assert "Read-only until you sign in." in texts(at)
    assert "not-a-real-secret" not in str(at._tree)


def test_rule_hits_from_the_flags_without_a_live_lake(world: dict[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "nolake"))
    report = {"rules": {r: {"flagged": 1, "flag_rate": 0.0001} for r in
                        ("high_amount", "high_frequency", "unusual_hour", "geo_mismatch")}}
    Path(world["BACKTEST_REPORT"]).write_text(json.dumps(report))
    at = run_app()
    table = table_with(at, "band high")
    assert int(table["live hits"].sum()) == 20  # the 20 stored flags, one rule each
    assert any("hits counted from the stored flags (no live lake)" in c.value
               for c in at.caption)
