"""The page itself, run headless with Streamlit's AppTest over a small world in tmp_path."""

from __future__ import annotations

import io
import json
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


def test_page_shows_kpis_table_and_csv(world: dict[str, str]) -> None:
    at = run_app()
    assert metric(at, "Events / min") == "1.0"  # 60 events over the last hour, 5 in 5 min
    assert metric(at, "Flags in view") == "20"
    assert metric(at, "Live precision") == "50.0%"
    assert metric(at, "Consumer lag") == "n/a"
    table = latest_table(at)
    assert table.height == 20
    ts = table["ts"].to_list()
    assert ts == sorted(ts, reverse=True)  # newest first
    csv = csv_rows(at)
    assert csv["transaction_id"].to_list() == table["transaction_id"].to_list()
    assert len(at.get("vega_lite_chart")) == 1


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
    assert any("per month" in s.value for s in at.subheader)
    assert latest_table(at).height == 20


def test_empty_store_shows_info(world: dict[str, str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_FLAGS_PATH", str(tmp_path / "none" / "flags.sqlite"))
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "nolake"))
    at = run_app()
    assert metric(at, "Flags in view") == "0"
    assert any("No flags" in i.value for i in at.info)
    assert not at.error


def test_unreachable_mongo_shows_error(world: dict[str, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300")
    at = run_app()
    assert any("Cannot read flags" in e.value for e in at.error)


def test_backtest_report_tables(world: dict[str, str]) -> None:
    report = {
        "input": "storage/historical", "rows": 1000, "fraud_rows": 10, "params": {},
        "generated_at": "2026-01-01T00:00:00Z", "seconds": 1.0,
        "rules": {r: {"flagged": 5, "flag_rate": 0.005, "precision": 0.4, "recall": 0.2,
                      "recall_by_scenario": {"card_testing": 0.3, "account_takeover": 0.1}}
                  for r in ("high_amount", "geo_mismatch", "flagged")},
        "by_year": {},
    }
    Path(world["BACKTEST_REPORT"]).write_text(json.dumps(report))
    at = run_app()
    rules = table_with(at, "rule")
    assert list(rules["rule"]) == ["high_amount", "geo_mismatch", "flagged"]
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
