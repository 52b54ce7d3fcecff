"""The embedded SQLite flag store: idempotent upserts, typed columns, WAL, indexes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
from _stream_events import random_events

from flagstore.sqlite import COLUMNS, SqliteFlagStore, flag_rows
from fraudlake.contract import RULE_NAMES
from streaming.engine import RuleEngine


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
    assert list(rows[next(iter(rows))].keys()) == list(COLUMNS)
    for src in flagged.head(50).iter_rows(named=True):
        row = rows[src["transaction_id"]]
        assert row["amount"] == str(src["amount"]) and row["amount_cents"] == int(
            src["amount"] * 100)
        assert row["ts"] == src["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        fired = [r for r in RULE_NAMES if src[r]]
        assert json.loads(row["rules"]) == fired and fired
        assert [row[r] for r in RULE_NAMES] == [int(src[r]) for r in RULE_NAMES]
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
    rows = flag_rows(core, __import__("datetime").datetime.now())
    assert rows.columns == list(COLUMNS) and rows["source"].null_count() == rows.height
    with SqliteFlagStore(tmp_path / "f.sqlite") as store:
        assert store.upsert(core.head(0)) == 0
        assert store.upsert(core) == core.height


def test_flag_documents_match_the_sqlite_rows() -> None:
    from flagstore.sqlite import flag_documents

    flagged = _flagged().head(20)
    docs = flag_documents(flagged)
    rows = flag_rows(flagged, __import__("datetime").datetime.now())
    assert [d["_id"] for d in docs] == rows["transaction_id"].to_list()
    assert [json.dumps(d["rules"], separators=(",", ":")) for d in docs] == rows["rules"].to_list()
    assert [d["amount_cents"] for d in docs] == rows["amount_cents"].to_list()
