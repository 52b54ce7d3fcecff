"""streaming.produce: JSON encoding per the contract, and the CLI on the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from streaming.decode import RawRecord, decode_batch
from streaming.produce import Pacer, encode_events
from tests.streaming._kafka_data import make_events, read_topic


def test_encode_is_contract_json_keyed_by_user() -> None:
    events = make_events(200, seed=4)
    keys, values = encode_events(events)
    assert len(keys) == len(values) == 200
    first = json.loads(values[0])
    assert keys[0] == str(first["user_id"]).encode()
    assert isinstance(first["amount"], str) and Decimal(first["amount"]) == events["amount"][0]
    assert first["ts"].endswith("+00:00")
    decoded, dead = decode_batch([RawRecord(v, k, "t", 0, i)
                                  for i, (k, v) in enumerate(zip(keys, values, strict=True))])
    assert dead == []
    assert decoded.select(events.columns).equals(events)  # lossless round trip


def test_pacer_holds_the_rate() -> None:
    import time

    pacer = Pacer(2000)
    for sent in range(0, 401, 50):
        pacer.wait(sent)
    assert time.monotonic() - pacer.t0 >= 0.19


def test_produce_cli_sends_simulated_events(kafka_bootstrap: str, make_topic) -> None:
    topic = make_topic(2)
    proc = subprocess.run(
        [sys.executable, "-m", "streaming.produce", "--bootstrap", kafka_bootstrap, "--topic",
         topic, "--count", "500", "--users", "200", "--seed", "3", "--no-progress"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "500 events" in proc.stderr and "0 failed" in proc.stderr
    got = read_topic(kafka_bootstrap, topic, 500)
    assert len(got) == 500
    records = [RawRecord(m.value(), m.key(), m.topic(), m.partition(), m.offset()) for m in got]
    decoded, dead = decode_batch(records)
    assert dead == [] and decoded.height == 500
    assert decoded["transaction_id"].n_unique() == 500
    for m in got:  # keyed by user: the key is the user_id of the value
        assert m.key() == str(json.loads(m.value())["user_id"]).encode()
    # per user, time order is kept within the user's partition
    by_user = decoded.sort("_partition", "_offset").group_by("user_id", maintain_order=True)
    assert all(g["ts"].is_sorted() for _, g in by_user)


@pytest.mark.parametrize("args, needle", [
    (["--count", "-5"], "count"),
    (["--count", "10", "--duration", "5"], "duration"),
    (["--rate", "-1"], "rate"),
    (["--users", "0"], "users"),
    (["--compression", "brotli"], "compression"),
])
def test_produce_cli_bad_input(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "streaming.produce", "--bootstrap",
                           "127.0.0.1:1", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr


def test_produce_cli_needs_a_broker() -> None:
    proc = subprocess.run([sys.executable, "-m", "streaming.produce"], capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in proc.stderr
