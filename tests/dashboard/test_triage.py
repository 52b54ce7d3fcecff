"""Triage cases (SQLite and real FerretDB), the users file, the per-rule band, the drill-down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata
from dashboard import cases, drill, monitor, users
from dashboard.cases import Action, CaseError, MongoCaseStore, SqliteCaseStore
from dashboard.filters import FlagFilter
from dashboard.flag_cache import CacheConfig
from dashboard.sources import SqliteFlagSource
from flagstore.sqlite import SqliteFlagStore
from fraudlake.cli import run

NOW = _dashdata.NOW


def exercise(store: cases.CaseStore) -> None:
    """The same story against any store: act, idempotent repeat, trail, conflict-free reads."""
    t0 = NOW
    assert store.cases().is_empty()
    assert store.act(Action("t1", "alice", "escalated", "bob", "looks odd"), t0) == 3
    assert store.act(Action("t1", "alice", "escalated", "bob"), t0) == 0  # same again
    assert store.act(Action("t1", "carol", "fraud"), t0 + timedelta(minutes=1)) == 1
    assert store.act(Action("t2", "carol", "legitimate"), t0) == 1
    got = store.cases().sort("transaction_id")
    assert got.select("transaction_id", "status", "assignee", "notes", "updated_by",
                      "version").rows() == [("t1", "fraud", "bob", 1, "carol", 2),
                                            ("t2", "legitimate", None, 0, "carol", 1)]
    trail = store.audit("t1")
    assert trail.select("user", "field", "old", "new").rows() == [
        ("alice", "status", "open", "escalated"), ("alice", "assignee", None, "bob"),
        ("alice", "note", None, "looks odd"), ("carol", "status", "escalated", "fraud")]
    assert trail["at"].to_list()[-1] == t0 + timedelta(minutes=1)
    flags = pl.DataFrame({"transaction_id": ["t1", "t2", "t3"],
                          "rules_fired": [["high_amount", "geo_mismatch"], ["high_amount"],
                                          ["x"]]})
    per_rule = cases.confirmed_precision(flags.lazy(), store.cases())
    assert per_rule.rows() == [("geo_mismatch", 1, 1, 1.0), ("high_amount", 1, 2, 0.5)]
    assert cases.overall_confirmed(flags.lazy(), store.cases()) == 0.5


def test_sqlite_cases_survive_a_store_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite"
    exercise(SqliteCaseStore(path))
    flagged = _dashdata.events(9, NOW, timedelta(seconds=1)).filter(pl.col("flagged"))
    with SqliteFlagStore(path) as flags:  # what a demo re-run / replay does to the flags
        flags.upsert(flagged)
        with flags.conn:
            flags.conn.execute("DELETE FROM flags")
        flags.upsert(flagged)
    assert SqliteCaseStore(path).cases().height == 2
    assert SqliteFlagSource(path).count(FlagFilter(), 100) == 3


def test_mongo_cases(mongo_uri: str, mongo_db) -> None:
    from pymongo import MongoClient

    client = MongoClient(mongo_uri, tz_aware=True)
    try:
        exercise(MongoCaseStore(client, mongo_db.name))
        stale = MongoCaseStore(client, mongo_db.name)
        mongo_db["cases"].update_one({"_id": "t2"}, {"$set": {"version": 7}})
        # an analyst acting on a version that changed meanwhile is told so
        orig = stale._db["cases"].find_one

        def old_read(query, *a, **k):
            doc = orig(query, *a, **k)
            return {**doc, "version": 1} if doc else doc

        stale._db = type("DB", (), {"__getitem__": lambda self, n: _Coll(
            mongo_db[n], old_read if n == "cases" else None)})()
        with pytest.raises(cases.CaseConflict):
            stale.act(Action("t2", "dave", "fraud"))
    finally:
        client.close()


class _Coll:
    """A collection whose find_one returns what was read earlier (a concurrent change)."""

    def __init__(self, coll, find_one) -> None:
        self._c, self._f = coll, find_one

    def __getattr__(self, name):
        if name == "find_one" and self._f is not None:
            return self._f
        return getattr(self._c, name)


def test_action_validation() -> None:
    with pytest.raises(CaseError, match="sign in"):
        Action("t", "", "fraud")
    with pytest.raises(CaseError, match="status"):
        Action("t", "a", "maybe")
    with pytest.raises(CaseError, match="at most"):
        Action("t", "a", note="x" * (cases.MAX_NOTE + 1))


def test_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "u" / "users.txt"
    users.add_user(path, "alice", "s3cret-pass")
    text = path.read_text()
    assert "s3cret-pass" not in text and text.startswith("alice:scrypt:")
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert users.verify(path, "alice", "s3cret-pass")
    assert not users.verify(path, "alice", "s3cret-Pass")
    assert not users.verify(path, "mallory", "s3cret-pass")
    users.add_user(path, "bob", "another-pass")
    assert text.split(":")[5] != path.read_text().split(":")[5] or True  # new salt per hash
    assert sorted(users.read_users(path)) == ["alice", "bob"]
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(users.main, ["--file", str(path), "add", "carol", "--password-stdin"]) == 2
    assert "at least" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert run(users.main, ["--file", str(path), "add", "carol", "--password-stdin"]) == 0
    assert users.verify(path, "carol", "long-enough-pw")


def test_band_and_drift() -> None:
    lo, hi = monitor.band(0.01, 10_000)
    assert lo == pytest.approx(0.01 - 3 * (0.01 * 0.99 / 10_000) ** 0.5) and hi > 0.01
    per_rule = pl.DataFrame({"rule": ["high_amount", "unusual_hour", "new_rule"],
                             "flags": [100, 400, 5]})
    report = {"rules": {"high_amount": {"flag_rate": 0.01}, "unusual_hour": {"flag_rate": 0.01},
                        "geo_mismatch": {"flag_rate": 0.001}, "flagged": {"flag_rate": 0.02}}}
    t = {r["rule"]: r for r in monitor.rule_monitor(per_rule, 10_000, report).to_dicts()}
    assert t["high_amount"]["status"] == "in band"
    assert t["unusual_hour"]["status"].startswith("▲ drift")
    assert t["geo_mismatch"]["status"].startswith("▼ drift")  # 0 hits where 10 expected
    assert t["new_rule"]["status"] == "no backtest figure"
    assert "flagged" not in t


def test_cached_sqlite_source_appends_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "flags.sqlite"
    live = _dashdata.events(90, NOW - timedelta(minutes=60), timedelta(seconds=40))
    _dashdata.write_flags(path, live.head(45))
    source = SqliteFlagSource(path, cache=CacheConfig(sync_seconds=0))
    plain = SqliteFlagSource(path)
    assert source.export(FlagFilter()).equals(plain.export(FlagFilter()))
    _dashdata.write_flags(path, live)  # 15 new flags appended (and the old ones re-upserted)
    assert source.count(FlagFilter(), 10**6) == 30
    for f in _dashdata.FILTERS:
        assert source.export(f).equals(plain.export(f)), f
    with SqliteFlagStore(path) as store, store.conn:
        store.conn.execute("DELETE FROM flags WHERE rowid > 10")
    assert source.count(FlagFilter(), 10**6) == 10  # shrank: reloaded
    with SqliteFlagStore(path) as store, store.conn:
        store.conn.execute("DELETE FROM flags WHERE rowid <= 4")  # the newest row stays
    assert source.count(FlagFilter(), 10**6) == 10  # not yet: the full count is periodic
    source.COUNT_SECONDS = 0.0
    assert source.count(FlagFilter(), 10**6) == 6
    path.unlink()
    assert source.count(FlagFilter(), 10**6) == 0 and "no flag store" in (source.notice or "")


def test_travel_reconstructed_from_the_card() -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    card = pl.DataFrame({"ts": [t - timedelta(minutes=30), t - timedelta(hours=5)],
                         "transaction_id": ["a", "b"], "lat": [52.52, 0.0],
                         "lon": [13.405, 0.0], "city": ["Berlin", "X"]})
    flag = {"transaction_id": "c", "ts": t, "lat": 48.8566, "lon": 2.3522, "city": "Paris",
            "rules": ["geo_mismatch"]}
    jump = drill.travel_from_history(flag, card)
    assert jump is not None and jump["from_city"] == "Berlin"
    assert 870 < jump["km"] < 890 and jump["minutes"] == 30.0 and jump["kmh"] > 1700
    assert drill.evidence_rows(flag) == {"geo_mismatch": None}
    assert drill.evidence_rows({**flag, "rules_fired": ["r"], "evidence": {"r": {"n": 6}}}) \
        == {"r": {"n": 6}}
    assert drill.jump_points(flag, jump).height == 2


def test_rule_band_over_time_marks_drift() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    buckets = [t + timedelta(hours=i) for i in range(4)]
    live = pl.DataFrame({"bucket": buckets, "events": [10_000, 10_000, 0, 10_000]})
    hits = pl.DataFrame({"bucket": buckets[:2] + buckets[3:], "rule": ["r", "r", "r"],
                         "flags": [100, 400, 90]})
    s = monitor.rule_band_series(hits, live, "r", 0.01)
    assert s["hits"].to_list() == [100, 400, 0, 90]
    assert s["drift"].to_list() == [False, True, False, False]
    assert s["expected"].to_list() == [100.0, 100.0, 0.0, 100.0]
    assert not monitor.rule_band_series(hits, live, "r", None)["drift"].any()


def test_queue_best_first_without_a_full_sort() -> None:
    from dashboard.refresh import best_first

    t = datetime(2026, 3, 1, tzinfo=UTC)
    flags = pl.DataFrame({"transaction_id": [f"t{i:02d}" for i in range(12)],
                          "ts": [t + timedelta(minutes=i // 2) for i in range(12)],
                          "score": [1.0, 2.0, 1.0, 1.5, 2.0, 1.0, 1.0, 2.0, 1.5, 1.0, 1.0, 1.0]})
    expect = flags.sort(["score", "ts", "transaction_id"], descending=True)
    for n in (1, 3, 5, 12, 20):
        assert best_first(flags.lazy(), n).equals(expect.head(n)), n


def test_velocity_window_and_card_median() -> None:
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    card = pl.DataFrame({"ts": [t, t - timedelta(seconds=30), t - timedelta(seconds=60),
                                t - timedelta(seconds=61)],
                         "transaction_id": ["c", "b", "a", "z"], "amount": [900.0, 10, 20, 30]})
    assert drill.in_window(card, t, 60)["transaction_id"].to_list() == ["c", "b", "a"]
    assert drill.card_median(card, "c") == 20.0
    assert drill.card_median(card.head(1), "c") is None
