"""The shared per-batch step and the embedded demo end to end (no services)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import streaming.produce
from fraudlake.cli import run
from fraudlake.contract import LAKE_SCHEMA, RULE_NAMES
from streaming import demo
from streaming.decode import RawRecord
from streaming.engine import RuleEngine
from streaming.pipeline import offset_span, process_batch
from tests.reference_rules import reference_flags
from tests.streaming._stream_events import random_events


def test_process_batch_decodes_decides_and_dead_letters() -> None:
    events = random_events(300, n_users=5, seed=7)
    records = next(demo.json_records(iter([events])))
    records.insert(10, RawRecord(b'{"user_id": true}', None, demo.TOPIC, 0, 10_000))
    result = process_batch(records, RuleEngine())
    assert result.events_with_rules.height == 300 and len(result.dead_letters) == 1
    assert result.flagged.height == int(result.events_with_rules["flagged"].sum())
    ref = reference_flags(events)
    got = result.events_with_rules.select(ref.columns)
    assert got.sort("transaction_id").equals(ref.sort("transaction_id"))
    assert result.counts["events"] == 300 and result.counts["dead_letters"] == 1
    assert offset_span(records) == {(demo.TOPIC, 0): (0, 10_000)}


def _fake_sim(seed: int, users: int, count: int, end=None) -> Iterator[pl.DataFrame]:
    df = random_events(count, n_users=users, seed=seed)
    for i in range(0, count, 333):
        yield df.slice(i, 333)


def test_run_demo_fills_lake_and_flag_store(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming.produce, "simulated_events", _fake_sim)
    lake, db = tmp_path / "lake", tmp_path / "flags.sqlite"
    for _ in range(2):  # a second run replaces the first run's outputs
        summary = demo.run_demo(2000, 3, 20, 500, lake, db, progress=False)
    lake_rows = pl.read_parquet(lake / "transactions", hive_partitioning=False)
    assert summary.events == 2000 and lake_rows.height == 2000 and summary.dead_letters == 0
    assert lake_rows.schema == pl.Schema(LAKE_SCHEMA)
    flags = sqlite3.connect(db).execute("SELECT transaction_id, rules_fired FROM flags").fetchall()
    assert len(flags) == summary.flags["flagged"] == int(lake_rows["flagged"].sum())
    ref = reference_flags(random_events(2000, n_users=20, seed=3))
    assert summary.flags["flagged"] == int(ref["flagged"].sum())
    assert all(set(json.loads(r)) <= set(RULE_NAMES) for _, r in flags)


def test_demo_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert run(demo.main, ["--lake", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert run(demo.main, ["--set", "x.y=1", "--lake", str(tmp_path / "l")]) == 2
    assert not (tmp_path / "l").exists()
    with pytest.raises(SystemExit) as exc:
        demo.main(["--count", "-5"])
    assert exc.value.code == 2


def test_demo_smoke_with_the_real_simulator(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--count", "3000", "--users", "500", "--lake", str(tmp_path / "lake"),
            "--flags-db", str(tmp_path / "f.sqlite"), "--quiet"]
    assert run(demo.main, argv) == 0
    out = capsys.readouterr().out
    assert "events: 3,000" in out and "flags:" in out
    assert pl.read_parquet(tmp_path / "lake" / "transactions",
                           hive_partitioning=False).height == 3000
