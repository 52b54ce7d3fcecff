"""The embedded SQLite flag store: idempotent upserts, typed columns, WAL, indexes, the reader."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from flagstore.query import FlagFilter
from flagstore.schema import FLAG_SCHEMA, flag_frame, ts_text
from flagstore.sqlite import COLUMNS, FlagStoreSchemaError, SqliteFlagReader, SqliteFlagStore
from fraudlake.contract import RULE_NAMES
from streaming.engine import RuleEngine
from tests.streaming._stream_events import random_events


def _flagged(n: int = 500) -> pl.DataFrame:
    df = RuleEngine().process(random_events(n, n_users=8, seed=2)).with_columns(
        _topic=pl.lit("tx"), _partition=pl.lit(1, pl.Int32),
        _offset=pl.int_range(0, n, dtype=pl.Int64))
    return df.filter("flagged")


def test_replay_never_duplicates_and_keeps_first_flagged_at(tmp_path: Path) -> None:
    flagged = _flagged()
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        assert store.upsert(flagged) == flagged.height
        first = dict(store.conn.execute("SELECT transaction_id, flagged_at FROM flags"))
        store.upsert(flagged)
        store.upsert(flagged.head(10))
        assert store.count() == flagged.height
        again = dict(store.conn.execute("SELECT transaction_id, flagged_at FROM flags"))
        assert again == first


def test_columns_hold_exact_values(tmp_path: Path) -> None:
    flagged = _flagged()
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        store.upsert(flagged)
        store.conn.row_factory = sqlite3.Row
        rows = {r["transaction_id"]: r for r in store.conn.execute("SELECT * FROM flags")}
    assert list(rows[next(iter(rows))].keys()) == list(COLUMNS) == list(FLAG_SCHEMA)
    for src in flagged.head(50).iter_rows(named=True):
        row = rows[src["transaction_id"]]
        assert row["amount"] == str(src["amount"]) and row["amount_cents"] == int(
            src["amount"] * 100)
        assert row["ts"] == src["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ") == ts_text(src["ts"])
        fired = [r for r in RULE_NAMES if src[r]]
        assert json.loads(row["rules_fired"]) == fired and fired
        assert row["source"] == f"tx:1:{src['_offset']}"


def test_wal_mode_and_indexes_let_a_reader_query(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    with SqliteFlagStore(path) as store:
        store.upsert(_flagged())
        reader = sqlite3.connect(path)
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"flags_ts", "flags_user_ts", "flags_amount_cents"} <= names
        newest = reader.execute("SELECT ts FROM flags ORDER BY ts DESC LIMIT 3").fetchall()
        assert newest == sorted(newest, reverse=True) and len(newest) == 3


def test_minimal_columns_and_empty_input(tmp_path: Path) -> None:
    core = _flagged().select("transaction_id", "user_id", "ts", "amount", *RULE_NAMES)
    frame = flag_frame(core)
    assert frame.schema == pl.Schema(FLAG_SCHEMA) and frame["source"].null_count() == frame.height
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        assert store.upsert(core.head(0)) == 0
        assert store.upsert(core) == core.height


def test_reader_returns_what_the_store_wrote(tmp_path: Path) -> None:
    flagged = _flagged()
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        store.upsert(flagged)
    reader = SqliteFlagReader(tmp_path / "f.sqlite")
    got = reader.export(FlagFilter())
    assert got.schema == pl.Schema(FLAG_SCHEMA)
    want = flag_frame(flagged).sort("transaction_id")
    assert got.drop("flagged_at").sort("transaction_id").equals(want.drop("flagged_at"))
    geo = FlagFilter(rules=("geo_mismatch", "unusual_hour"))
    expected = flagged.filter(pl.col("geo_mismatch") | pl.col("unusual_hour")).height
    assert reader.count(geo, 10_000) == expected and reader.count(geo, 3) == min(3, expected)
    assert reader.recent(FlagFilter(), 5)["ts"].to_list() == sorted(got["ts"])[::-1][:5]
    chunks = list(reader.read_since(None, 40))
    assert sum(c.height for c in chunks) == flagged.height and chunks[0].height == 40
    later = datetime.now(UTC) + timedelta(hours=1)
    assert list(reader.read_since(later, 40)) == []


def test_v2_fields_round_trip(tmp_path: Path) -> None:
    flagged = _flagged().head(3).drop(*RULE_NAMES).with_columns(
        rule_set_id=pl.lit("x@1"), rules_fired=pl.lit(["a_rule"], pl.List(pl.String)),
        score=pl.lit(2.5), evidence=pl.lit('{"a_rule": {"n": 5}}'))
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        store.upsert(flagged)
    got = SqliteFlagReader(tmp_path / "f.sqlite").export(FlagFilter(rules=("a_rule",)))
    assert got.height == 3 and set(got["rule_set_id"]) == {"x@1"}
    assert set(got["score"]) == {2.5} and json.loads(got["evidence"][0]) == {"a_rule": {"n": 5}}


def test_missing_store_reads_as_empty_and_an_old_layout_is_refused(tmp_path: Path) -> None:
    reader = SqliteFlagReader(tmp_path / "none.sqlite")
    assert reader.export(FlagFilter()).is_empty() and reader.count(FlagFilter(), 5) == 0
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE flags (transaction_id TEXT PRIMARY KEY, rules TEXT)")
    with pytest.raises(FlagStoreSchemaError, match="older layout"):
        SqliteFlagStore(old)
