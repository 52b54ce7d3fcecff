"""A broker restart and a MongoDB outage (>= 10 s) under a running consumer: it backs off with a
bounded retry, resumes by itself, loses and duplicates nothing, and says so in its log.

Each outage uses a DEDICATED server on its own port (Kafka 19592/19593, FerretDB 37517), never
the session's, since the test stops and restarts it. The scenario itself (topic, consumer
process, producer thread, audit) is ``_outages.run_outage``, shared with
``bench/fault_outages.py``. Also unit tests of the retry budgets and log redaction.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import KafkaError
from pymongo import MongoClient

from flagstore.mongo import MongoFlagStore, MongoSinkError, redact
from fraudlake import services
from fraudlake.settings import Settings, SettingsError
from rules.model import load_rule_set
from streaming.kafka_io import BrokerWatch
from tests.reference_rules import reference_decisions
from tests.reliability._faults import expected_rows
from tests.reliability._outages import run_outage
from tests.streaming._kafka_data import POISON, make_events

OUTAGE_KAFKA_PORT = 19592  # + 19593 for its controller
OUTAGE_MONGO_PORT = 37517


def _start(server: services.Server) -> Iterator[services.Server]:
    try:
        services.up(server)
    except services.ServiceError as exc:
        pytest.fail(f"could not start {server.name}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        services.down(server)


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[services.Server]:
    """A broker only this module uses (it gets stopped and started)."""
    yield from _start(services.kafka_server(OUTAGE_KAFKA_PORT))


@pytest.fixture(scope="module")
def own_mongo() -> Iterator[services.Server]:
    """A FerretDB only this module uses (it gets stopped and started)."""
    yield from _start(services.mongo_server(OUTAGE_MONGO_PORT))


def _expected(events: pl.DataFrame) -> pl.DataFrame:
    rule_set = load_rule_set()
    return expected_rows(reference_decisions(events, rule_set), rule_set.rule_ids)


@pytest.fixture
def db_name(mongo_uri: str) -> Iterator[str]:
    name = f"outage_{uuid.uuid4().hex[:10]}"
    yield name
    for uri in (mongo_uri, services.mongo_server(OUTAGE_MONGO_PORT).address):
        try:
            with MongoClient(uri, serverSelectionTimeoutMS=2_000) as client:
                client.drop_database(name)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


def test_broker_restart_mid_run_loses_nothing_and_says_so(
        own_kafka: services.Server, mongo_uri: str, db_name: str, tmp_path: Path) -> None:
    events = make_events(6000, users=150, seed=21)
    res = run_outage(own_kafka, bootstrap=own_kafka.address, mongo_uri=mongo_uri, db=db_name,
                     events=events, expected=_expected(events), workdir=tmp_path,
                     poison=POISON, down_s=5.0)
    a = res.audit
    assert res.returncode == 0, res.log[-3000:]
    assert (a.lake_lost, a.lake_duplicated, a.lake_rows) == (0, 0, 6000), a.notes()
    assert (a.flags_lost, a.flags_duplicated, a.mismatched) == (0, 0, 0), a.notes()
    assert a.flags_expected > 300
    # the consumer said what happened, and did not spin while the broker was away
    assert "kafka consumer: broker down" in res.log, res.log[-3000:]
    assert "kafka consumer: reconnected after" in res.log, res.log[-3000:]
    assert "Traceback" not in res.log
    assert res.cpu_share_down < 0.6, f"consumer busy {res.cpu_share_down:.0%} while down"
    assert res.recovery_s is not None and res.recovery_s < 120
    # the producer of the second half lost nothing (lake check above) and reported no failure
    assert res.produced_failed == 0
    assert any(line.startswith("kafka producer: broker down") for line in res.producer_log)
    # the DLQ producer survived too: every poison message is there (a replay may resend one)
    assert set(res.dlq) == set(POISON)


def test_mongo_outage_over_10s_retries_recovers_loses_nothing(
        kafka_bootstrap: str, own_mongo: services.Server, db_name: str,
        tmp_path: Path) -> None:
    events = make_events(5000, users=150, seed=22)
    res = run_outage(own_mongo, bootstrap=kafka_bootstrap, mongo_uri=own_mongo.address,
                     db=db_name, events=events, expected=_expected(events), workdir=tmp_path,
                     down_s=11.0, env={"MONGO_RETRY_SECONDS": "90"})
    a = res.audit
    assert res.returncode == 0, res.log[-3000:]
    assert res.down_s >= 10.0
    assert a.exact and a.lake_rows == 5000, a.notes()
    assert a.flags_expected > 300
    assert "mongo sink:" in res.log and "retrying" in res.log, res.log[-3000:]
    assert "recovered after" in res.log, res.log[-3000:]
    assert "Traceback" not in res.log
    assert own_mongo.address not in res.log  # never the URI
    assert res.cpu_share_down < 0.6, f"consumer busy {res.cpu_share_down:.0%} while down"
    assert res.recovery_s is not None and res.recovery_s < 60


# --- bounded budgets, messages, redaction (no servers) ---------------------------------------

def test_retry_budgets_from_settings_and_bad_values() -> None:
    assert Settings.from_env({}).mongo_retry_seconds == 120.0
    assert Settings.from_env({"MONGO_RETRY_SECONDS": "7.5"}).mongo_retry_seconds == 7.5
    for bad in ("abc", "0", "-3", "nan", "inf"):
        with pytest.raises(SettingsError, match="MONGO_RETRY_SECONDS"):
            Settings.from_env({"MONGO_RETRY_SECONDS": bad})
    assert Settings.from_env({"KAFKA_RETRY_SECONDS": "30"}).kafka_retry_seconds == 30.0
    with pytest.raises(SettingsError, match="KAFKA_RETRY_SECONDS"):
        Settings.from_env({"KAFKA_RETRY_SECONDS": "soon"})


def test_redact_hides_credentials_anywhere() -> None:
    text = "failed: mongodb://alice:s3cr%40t@db:27017/x and mongodb+srv://bob:pw@h/ ok"
    out = redact(text)
    assert "s3cr" not in out and "alice" not in out and ":pw@" not in out
    assert "mongodb://***@db:27017/x" in out and "mongodb+srv://***@h/" in out
    assert redact("mongodb://127.0.0.1:9/") == "mongodb://127.0.0.1:9/"


def test_mongo_budget_exhausted_is_a_named_error_without_secrets(caplog) -> None:
    store = MongoFlagStore("mongodb://alice:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=200",
                           retry_seconds=1.0)
    with caplog.at_level(logging.WARNING, "flagstore.mongo"), \
            pytest.raises(MongoSinkError) as info:
        store.ensure_indexes()
    lines = [r.getMessage() for r in caplog.records if r.name == "flagstore.mongo"]
    msg = str(info.value)
    assert "fraud.flags" in msg and "still failing after" in msg and "MONGO_RETRY_SECONDS" in msg
    assert all("retrying" in line for line in lines)
    assert not any("s3cret" in t or "alice" in t for t in [msg, *lines])
    assert info.value.__cause__ is None  # the driver's error (with its URI) is not chained


def test_consumer_gives_up_after_the_mongo_budget_with_a_clear_error(tmp_path: Path) -> None:
    """MongoDB never comes back: the consumer CLI stops after MONGO_RETRY_SECONDS (+ one
    attempt), non-zero, naming the collection and the budget, never the URI's password."""
    uri = "mongodb://alice:s3cret@127.0.0.1:9/"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streaming.consume", "--bootstrap", "127.0.0.1:1",
         "--mongo-uri", uri, "--lake", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "MONGO_RETRY_SECONDS": "2", "MONGO_DB": "nowhere"})
    took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m streaming.consume: error:")
    assert "nowhere.flags" in proc.stderr and "still failing after" in proc.stderr
    assert "MONGO_RETRY_SECONDS" in proc.stderr
    assert "s3cret" not in proc.stderr and "alice" not in proc.stderr
    assert took < 60  # bounded: budget + one 5 s server selection + start-up
    assert not (tmp_path / "lake").exists()


def test_bad_retry_budget_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streaming.consume", "--bootstrap", "127.0.0.1:1",
         "--mongo-uri", "mongodb://127.0.0.1:9/", "--lake", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "MONGO_RETRY_SECONDS": "forever"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "MONGO_RETRY_SECONDS" in proc.stderr
    assert not (tmp_path / "lake").exists()


def _stats(ts_s: float, *states: str) -> str:
    brokers = {f"127.0.0.1:{i}/{i}": {"nodeid": i, "state": st} for i, st in enumerate(states)}
    brokers["GroupCoordinator"] = {"nodeid": -1, "state": "UP"}  # logical: never counts
    return json.dumps({"ts": int(ts_s * 1e6), "brokers": brokers})


def test_broker_watch_times_the_outage_from_queued_statistics() -> None:
    lines: list[str] = []
    watch = BrokerWatch("consumer", lines.append)
    watch.on_stats(json.dumps({"ts": 1, "brokers": {"b/bootstrap": {"nodeid": -1,
                                                                     "state": "INIT"}}}))
    watch.on_stats(_stats(10.0, "UP"))
    assert lines == []  # nothing was down: nothing to say
    # reports queued while the application was blocked arrive late, in order
    watch.on_stats(_stats(11.0, "CONNECT"))
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    watch.on_stats(_stats(12.0, "TRY_CONNECT"))
    assert len(lines) == 1 and lines[0].startswith("kafka consumer: broker down")
    assert "retrying" in lines[0]
    watch.on_stats(_stats(25.5, "UP"))
    assert lines[1] == "kafka consumer: reconnected after 14.5s"
    assert not watch.down and watch.outages == 1
    # an error first (statistics not yet showing it), then back up
    watch.on_error(KafkaError(KafkaError._TRANSPORT, "Disconnected"))
    watch.on_stats(_stats(30.0, "UP"))
    assert lines[2].startswith("kafka consumer: broker down (") and "Disconnected" in lines[2]
    assert lines[3] == "kafka consumer: reconnected" and watch.outages == 2
    watch.on_error(KafkaError(KafkaError._MSG_TIMED_OUT, "x"))
    watch.on_error(KafkaError(KafkaError._MSG_TIMED_OUT, "x"))  # repeats are said once
    assert len(lines) == 5
