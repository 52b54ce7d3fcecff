"""Issue 14 on the page: the active and shadow rule sets, and the live shadow comparison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import _dashdata
import polars as pl
import pytest
from test_app import run_app, table_with, texts

from dashboard import rule_sets
from rules.model import load_rule_set


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = _dashdata.build_world(tmp_path)
    for name in ("MONGO_URI", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_RULES_TOPIC"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def with_shadow(events: pl.DataFrame, shadow_id: str) -> pl.DataFrame:
    """Lake rows as a consumer with a shadow set writes them: the shadow set alerts on every
    amount over 40 (and nothing else)."""
    fired = pl.col("amount") > 40
    return events.with_columns(
        shadow_rule_set_id=pl.lit(shadow_id), shadow_score=fired.cast(pl.Float64),
        shadow_flagged=fired,
        shadow_rules_fired=pl.when(fired).then(pl.lit(["big"])).otherwise(pl.lit([], pl.List(
            pl.String))))


def test_without_kafka_the_newest_flag_says_which_set(world: dict[str, str]) -> None:
    at = run_app()
    page = texts(at)
    assert f"active **{_dashdata.RULE_SET_ID}** · shadow **none**" in page
    assert "newest flag (no Kafka control topic here)" in page
    assert "no shadow set: no live event in this range was decided by a shadow set" in page
    assert f"Active rule set: **{_dashdata.RULE_SET_ID}**" in page  # the what-if panel agrees


def test_active_and_shadow_from_the_control_topic(world: dict[str, str], kafka_bootstrap: str,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from streaming import rules_control as rc

    topic = f"rules-dash-{tmp_path.name[-12:]}".replace("_", "-")
    active = load_rule_set()
    shadow = load_rule_set(overrides=["high_amount.threshold=2500"])
    rc.publish(kafka_bootstrap, topic, active)
    rc.publish(kafka_bootstrap, topic, shadow, role="shadow")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("KAFKA_RULES_TOPIC", topic)
    try:
        page = texts(run_app())
        assert f"active **{active.id}** (since " in page
        assert f"shadow **{shadow.id}** (since " in page
        assert f"from the control topic {topic}" in page
    finally:
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": kafka_bootstrap}).delete_topics([topic])


def test_unreachable_control_topic_is_one_line(world: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("KAFKA_RULES_TOPIC", "rules-unreachable")
    at = run_app()
    errors = [e.value for e in at.error if e.value.startswith("Rule sets in force unavailable")]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "Latest flagged transactions" in [s.value for s in at.subheader]  # the rest stands


def test_shadow_comparison_over_the_lake(world: dict[str, str]) -> None:
    pytest.importorskip("streaming.shadow", reason="the shadow comparison lands with issue 14")
    now = datetime.now(UTC)
    live = _dashdata.events(40, now - timedelta(minutes=30), timedelta(seconds=30), seed=3)
    shadow_id = "strict-1@0123456789ab"
    _dashdata.write_lake(Path(world["LAKE_DIR"]) / "transactions", with_shadow(live, shadow_id),
                         name="part-shadow.parquet")
    at = run_app()
    table = table_with(at, "shadow_rule_set_id")
    assert table["shadow_rule_set_id"].tolist() == [shadow_id]
    assert table["rule_set_id"].tolist() == [_dashdata.RULE_SET_ID]
    act, sh = live["flagged"], live["amount"] > 40
    assert int(table["events"].iloc[0]) == live.height
    assert int(table["added"].iloc[0]) == int((sh & ~act).sum())
    assert int(table["removed"].iloc[0]) == int((act & ~sh).sum())
    assert int(table["both"].iloc[0]) == int((act & sh).sum())
    assert "no shadow set" not in texts(at)


def test_shadow_rows_none_without_shadow_columns(tmp_path: Path) -> None:
    live = _dashdata.events(10, datetime(2026, 3, 1, tzinfo=UTC), timedelta(minutes=1))
    _dashdata.write_lake(tmp_path / "t", live)
    files = sorted((tmp_path / "t").rglob("*.parquet"))
    assert rule_sets.shadow_rows(files, None, None) is None
    _dashdata.write_lake(tmp_path / "t", with_shadow(live, "s@1"), name="part-1.parquet")
    files = sorted((tmp_path / "t").rglob("*.parquet"))
    rows = rule_sets.shadow_rows(files, None, None)
    assert rows is not None and rows.height == 10  # only the rows with a shadow decision
    assert rule_sets.shadow_rows(files, datetime(2026, 3, 1, 0, 5, tzinfo=UTC),
                                 None).height == 5  # type: ignore[union-attr]


def test_control_watch_reports_the_last_error_and_recovers() -> None:
    calls = {"n": 0}

    def reader(*_args, **_kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("broker away\nsecond line")
        return "state"

    watch = rule_sets.ControlWatch("b", "t", every=0.05, reader=reader).start(first_wait=1.0)
    assert watch.latest() in ((None, "broker away"), ("state", None))
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while watch.latest()[0] is None and datetime.now(UTC) < deadline:
        pass
    assert watch.latest() == ("state", None)
