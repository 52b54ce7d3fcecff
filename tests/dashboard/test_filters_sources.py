"""Filters bound into SQLite, MongoDB and Polars agree; the sources return the same frame."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata
from dashboard.cached_reader import MongoFlagSource
from dashboard.filters import FilterError, FlagFilter, build_filter, parse_amount_cents
from dashboard.page_flags import PAGE_COLUMNS
from dashboard.sources import SqliteFlagSource
from flagstore.protocols import FlagReadError
from flagstore.query import apply, mongo_filter, sql_where
from flagstore.schema import FLAG_SCHEMA

PAGE_SCHEMA = pl.Schema({c: FLAG_SCHEMA[c] for c in PAGE_COLUMNS})

NOW = _dashdata.NOW

FILTERS = _dashdata.FILTERS


@pytest.fixture
def store(tmp_path: Path) -> tuple[SqliteFlagSource, pl.DataFrame]:
    live = _dashdata.events(90, NOW - timedelta(minutes=60), timedelta(seconds=40))
    _dashdata.write_flags(tmp_path / "flags.sqlite", live)
    source = SqliteFlagSource(tmp_path / "flags.sqlite")
    return source, source.export(FlagFilter())


def test_build_filter_parses_and_rejects() -> None:
    f = build_filter(time_range="Last hour", now=NOW, rules=["geo_mismatch", "high_amount"],
                     min_amount="1,000.5", max_amount="2000", user=" 42 ", country="de")
    assert f == FlagFilter(since=NOW - timedelta(hours=1), rules=("high_amount", "geo_mismatch"),
                           min_cents=100_050, max_cents=200_000, user_id=42, country="DE")
    assert build_filter(time_range="All time", now=NOW, rules=[]) == FlagFilter()
    for kwargs, word in [({"user": "4x"}, "user id"), ({"min_amount": "abc"}, "min amount"),
                         ({"min_amount": "5", "max_amount": "4"}, "above"),
                         ({"country": "D3"}, "country"), ({"rules": ["No pe"]}, "rule"),
                         ({"max_amount": "1.234"}, "2 decimals")]:
        with pytest.raises(FilterError, match=word):
            build_filter(time_range="Last hour", now=NOW, **{"rules": [], **kwargs})
    assert parse_amount_cents("", "x") is None


def test_user_input_is_bound_never_formatted() -> None:
    evil = "X'; DROP TABLE flags;--"
    where, params = sql_where(FlagFilter(country=evil, user_id=7))
    assert where == " WHERE user_id = ? AND country = ?" and params == [7, evil]
    assert mongo_filter(FlagFilter(user_id=7, rules=("high_amount",))) == {
        "$or": [{"rules_fired": {"$in": ["high_amount"]}},
                {"rules_fired": {"$exists": False}, "rules": {"$in": ["high_amount"]}}],
        "user_id": 7}


@pytest.mark.parametrize("f", FILTERS)
def test_sqlite_matches_polars_filter(store, f: FlagFilter) -> None:
    source, everything = store
    expected = apply(f, everything).sort(["ts", "transaction_id"], descending=True)
    got = source.recent(f, 1000)
    assert got.schema == PAGE_SCHEMA
    assert got["transaction_id"].to_list() == expected["transaction_id"].to_list()
    assert source.count(f, 1000) == expected.height
    assert source.export(f).equals(got)


def test_sqlite_count_is_capped_and_recent_limited(store) -> None:
    source, everything = store
    assert everything.height == 30
    assert source.count(FlagFilter(), cap=7) == 7
    newest = source.recent(FlagFilter(), 3)
    assert newest["ts"].to_list() == sorted(everything["ts"].to_list(), reverse=True)[:3]


def test_sqlite_missing_store_reads_empty(tmp_path: Path) -> None:
    source = SqliteFlagSource(tmp_path / "nope.sqlite")
    assert source.recent(FlagFilter(), 10).is_empty()
    assert source.count(FlagFilter(), 10) == 0
    assert not (tmp_path / "nope.sqlite").exists()  # read-only: nothing created


def test_unreachable_mongo_raises_one_line_error() -> None:
    source = MongoFlagSource("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
                             timeout_ms=300)
    with pytest.raises(FlagReadError, match="MongoDB fraud.flags: find failed") as info:
        source.recent(FlagFilter(), 10)
    assert "\n" not in str(info.value)


def test_mongo_source_matches_sqlite(mongo_uri: str, mongo_db, store) -> None:
    """Against the real FerretDB: same flags written by the real sink, same answers."""
    from flagstore.mongo import MongoFlagStore

    source, everything = store
    live = _dashdata.events(90, NOW - timedelta(minutes=60), timedelta(seconds=40))
    sink = MongoFlagStore(mongo_uri, mongo_db.name, "flags", retry_seconds=10)
    sink.upsert(live.filter(pl.col("flagged")))
    sink.close()
    mongo = MongoFlagSource(mongo_uri, mongo_db.name, "flags")
    try:
        for f in FILTERS:
            want = source.recent(f, 1000)
            got = mongo.recent(f, 1000)
            assert got.schema == PAGE_SCHEMA
            assert got["transaction_id"].to_list() == want["transaction_id"].to_list(), f
            assert got.drop("flagged_at").equals(want.drop("flagged_at")), f
            assert mongo.count(f, 1000) == want.height
        assert mongo.count(FlagFilter(), 5) == 5
    finally:
        mongo.close()


def test_rule_set_ids_beyond_v1_filter_alike(tmp_path: Path) -> None:
    """A rule-set rule id that is no v1 column: bound into SQLite, looked up in the list in
    the page's cache, and the same rows either way."""
    from dashboard.flag_cache import CacheConfig

    live = _dashdata.events(30, NOW - timedelta(minutes=30), timedelta(minutes=1))
    _dashdata.write_flags(tmp_path / "f.sqlite", live)
    import sqlite3

    with sqlite3.connect(tmp_path / "f.sqlite") as conn:  # two flags also fired a v2 rule
        conn.execute("""UPDATE flags SET rules_fired = '["high_amount","new_device"]'
                        WHERE rowid IN (1, 3)""")
    f = build_filter(time_range="All time", now=NOW, rules=["new_device"])
    assert f.rules == ("new_device",)
    where, params = sql_where(f)
    assert where == " WHERE (instr(rules_fired, ?) > 0)" and params == ['"new_device"']
    plain = SqliteFlagSource(tmp_path / "f.sqlite").export(f)
    held = SqliteFlagSource(tmp_path / "f.sqlite", cache=CacheConfig()).export(f)
    assert plain.height == 2 and held.equals(plain)
    assert apply(f, SqliteFlagSource(tmp_path / "f.sqlite").export(FlagFilter())).height == 2


def test_mongo_rule_filter_reads_rules_fired(mongo_uri: str, mongo_db) -> None:
    """On the real FerretDB the rule filter matches a rule set's ``rules_fired`` (whatever an
    older ``rules`` field says) and, for a v1 document without ``rules_fired``, its ``rules``."""
    from datetime import UTC, datetime

    base = {"ts": datetime(2026, 1, 1, tzinfo=UTC), "user_id": 1, "amount": "5.00",
            "amount_cents": 500, "score": 1.0}
    mongo_db["flags"].insert_many([
        {"_id": "v2-hit", **base, "rules_fired": ["new_device"], "rules": []},
        {"_id": "v2-miss", **base, "rules_fired": ["high_amount"], "rules": ["new_device"]},
        {"_id": "v1-hit", **base, "rules": ["new_device"]},
        {"_id": "v1-miss", **base, "rules": ["high_amount"]},
    ])
    mongo = MongoFlagSource(mongo_uri, mongo_db.name, "flags", cache=None)
    try:
        got = mongo.recent(FlagFilter(rules=("new_device",)), 10)
        assert sorted(got["transaction_id"]) == ["v1-hit", "v2-hit"]
        assert mongo.count(FlagFilter(rules=("new_device",)), 10) == 2
    finally:
        mongo.close()
