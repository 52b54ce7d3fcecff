"""End to end on the real broker and FerretDB: produce → consume → lake + MongoDB + DLQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Consumer, TopicPartition

from flagstore.mongo import MongoFlagStore
from fraudlake.contract import RULE_NAMES
from rules.model import load_rule_set
from streaming.consume_loop import ConsumeConfig
from streaming.dead_letters import DLQ_REASON_HEADER
from tests.reference_rules import reference_decisions
from tests.streaming._kafka_data import (
    POISON,
    consume_config,
    lake_events,
    make_events,
    read_topic,
    run_consumer,
    send,
)


def _expected_flags(events: pl.DataFrame) -> dict[str, list[str]]:
    ref = reference_decisions(events, load_rule_set())
    ref = ref.filter(pl.col("flagged"))
    return {row["transaction_id"]: [r for r in RULE_NAMES if row[r]]
            for row in ref.iter_rows(named=True)}


def _mongo_flags(store: MongoFlagStore) -> dict[str, list[str]]:
    return {d["_id"]: d["rules_fired"] for d in store.collection.find({}, {"rules_fired": 1})}


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps}


@pytest.fixture
def store(mongo_uri: str, mongo_db):
    s = MongoFlagStore(mongo_uri, mongo_db.name, "flags")
    yield s
    s.close()


def test_n_produced_exactly_n_in_lake_flags_match_reference_dlq_gets_poison(
        kafka_bootstrap: str, make_topic, store, tmp_path: Path) -> None:
    topic = make_topic(4)
    events = make_events(3000)
    send(kafka_bootstrap, topic, events, POISON)

    consumer = run_consumer(consume_config(kafka_bootstrap, topic, tmp_path, batch_size=700), store)

    assert consumer.stats.events == 3000 and consumer.stats.dead_letters == len(POISON)
    lake = lake_events(tmp_path)
    assert lake.height == 3000
    assert lake["transaction_id"].n_unique() == 3000
    assert set(lake["transaction_id"]) == set(events["transaction_id"])
    expected = _expected_flags(events)
    assert len(expected) > 100  # every rule fires on this data
    assert _mongo_flags(store) == expected
    lake_flagged = lake.filter(pl.col("flagged"))
    assert set(lake_flagged["transaction_id"]) == set(expected)
    assert {r["transaction_id"]: r["rules_fired"] for r in lake_flagged.iter_rows(named=True)
            } == expected
    assert lake["rule_set_id"].unique().to_list() == [load_rule_set().id]
    # the batch backtest (DuckDB SQL) over the live lake flags exactly what the stream flagged
    from batch.backtest import BacktestConfig, run_backtest

    flags_out = tmp_path / "backtest_flags.parquet"
    run_backtest(BacktestConfig(str(tmp_path / "transactions"), flags_out=flags_out,
                                progress=False))
    backtest = pl.read_parquet(flags_out).filter(pl.col("flagged"))
    assert {row["transaction_id"]: [r for r in RULE_NAMES if row[r]]
            for row in backtest.iter_rows(named=True)} == expected

    dlq = read_topic(kafka_bootstrap, f"{topic}.dlq", len(POISON))
    assert sorted(m.value() for m in dlq) == sorted(POISON)
    for m in dlq:
        headers = dict(m.headers())
        assert headers[DLQ_REASON_HEADER]
        assert headers["fraudlake.topic"].decode() == topic
        assert int(headers["fraudlake.offset"]) >= 0
    # every message, poison included, is committed
    committed = _committed(kafka_bootstrap, f"g-{topic}", topic, 4)
    assert sum(committed.values()) == 3000 + len(POISON)


class FailingStore:
    """Wraps a real store; the n-th upsert raises (a sink outage mid-run). A FlagWriter."""

    thread_safe = True

    def __init__(self, inner: MongoFlagStore, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    def prepare(self) -> None:
        self.inner.prepare()

    def close(self) -> None:
        self.inner.close()

    def upsert(self, df: pl.DataFrame) -> int:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("flag sink down")
        return self.inner.upsert(df)


def test_offsets_committed_only_after_sinks_and_restart_decides_the_same(
        kafka_bootstrap: str, make_topic, store, tmp_path: Path) -> None:
    topic = make_topic(2)
    events = make_events(2000, users=12, seed=5)
    send(kafka_bootstrap, topic, events)
    cfg = consume_config(kafka_bootstrap, topic, tmp_path, batch_size=300)

    with pytest.raises(RuntimeError, match="flag sink down"):
        run_consumer(cfg, FailingStore(store, fail_on=3))
    committed = _committed(kafka_bootstrap, cfg.group, topic, 2)
    in_lake_before = lake_events(tmp_path).height
    assert 0 < sum(max(o, 0) for o in committed.values()) < 2000
    assert sum(max(o, 0) for o in committed.values()) <= in_lake_before

    run_consumer(cfg, store)  # restart: replays the uncommitted batch, state rebuilt from the lake
    lake = lake_events(tmp_path)
    assert lake.height == 2000 and lake["transaction_id"].n_unique() == 2000
    assert _mongo_flags(store) == _expected_flags(events)
    assert sum(_committed(kafka_bootstrap, cfg.group, topic, 2).values()) == 2000


def test_stop_and_resume_in_pieces_gives_the_uninterrupted_result(
        kafka_bootstrap: str, make_topic, store, tmp_path: Path) -> None:
    topic = make_topic(3)
    events = make_events(1500, users=8, seed=9)
    send(kafka_bootstrap, topic, events)
    cfg = consume_config(kafka_bootstrap, topic, tmp_path, batch_size=100)
    for _ in range(3):
        run_consumer(ConsumeConfig(**{**cfg.__dict__, "max_messages": 400}), store)
    run_consumer(cfg, store)
    lake = lake_events(tmp_path)
    assert lake.height == 1500 and lake["transaction_id"].n_unique() == 1500
    assert _mongo_flags(store) == _expected_flags(events)


def test_consume_cli_smoke(kafka_bootstrap: str, make_topic, mongo_uri: str, mongo_db,
                           tmp_path: Path) -> None:
    topic = make_topic(2)
    send(kafka_bootstrap, topic, make_events(300, seed=3), POISON[:2])
    proc = subprocess.run(
        [sys.executable, "-m", "streaming.consume", "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--dlq-topic", f"{topic}.dlq", "--group", f"cli-{topic}",
         "--mongo-uri", mongo_uri, "--lake", str(tmp_path), "--timeout", "3"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "MONGO_DB": mongo_db.name})
    assert proc.returncode == 0, proc.stderr
    assert "302 messages, 300 events" in proc.stderr
    assert lake_events(tmp_path).height == 300
    assert mongo_db["flags"].count_documents({}) > 0


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "batch-size"),
    (["--set", "nope.x=1"], "nope.x"),
    (["--timeout", "-1"], "timeout"),
    (["--max-messages", "abc"], "max-messages"),
])
def test_consume_cli_bad_input(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "streaming.consume", "--bootstrap",
                           "127.0.0.1:1", "--lake", str(tmp_path / "lake"), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert not (tmp_path / "lake").exists()


def test_sigterm_drains_flushes_and_commits(kafka_bootstrap: str, make_topic, mongo_uri: str,
                                            mongo_db, tmp_path: Path) -> None:
    topic = make_topic(2)
    send(kafka_bootstrap, topic, make_events(20_000, users=500, seed=11))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streaming.consume", "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--group", f"term-{topic}", "--mongo-uri", mongo_uri,
         "--lake", str(tmp_path), "--batch-size", "500", "--metrics-interval", "0.2"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "MONGO_DB": mongo_db.name})
    assert proc.stderr is not None
    for line in proc.stderr:  # wait until it is busy, then ask it to stop
        if "consume: events=" in line and "events=0 " not in line:
            break
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    committed = sum(max(o, 0) for o in _committed(kafka_bootstrap, f"term-{topic}", topic,
                                                  2).values())
    assert 0 < committed <= 20_000
    assert lake_events(tmp_path).height == committed  # everything committed is in the lake


def test_consume_cli_without_mongo_uses_the_local_flag_store(kafka_bootstrap: str, make_topic,
                                                             tmp_path: Path) -> None:
    import sqlite3

    topic = make_topic(2)
    events = make_events(400, seed=6)
    send(kafka_bootstrap, topic, events)
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URI"}
    env["LOCAL_FLAGS_PATH"] = str(tmp_path / "flags.sqlite")
    proc = subprocess.run(
        [sys.executable, "-m", "streaming.consume", "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--group", f"local-{topic}", "--lake", str(tmp_path / "lake"),
         "--timeout", "3"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(tmp_path / "flags.sqlite") as conn:
        stored = {row[0] for row in conn.execute("select transaction_id from flags")}
    assert stored == set(_expected_flags(events))
