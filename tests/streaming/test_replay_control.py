"""Replay with the control log, without a broker: offsets no switch covers are decided by the
fallback set exactly as one engine would; a recorded switch splits the stream; bad CLI input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rules.model import load_rule_set
from streaming.decode import RawRecord
from streaming.engine import RuleEngine
from streaming.produce import encode_events
from streaming.replay_control import OUTPUT_SCHEMA, replay_topic
from streaming.rules_control import ControlState, Switch
from tests.streaming._kafka_data import make_events

ROOT = Path(__file__).resolve().parents[2]
A = load_rule_set()
B = A.with_overrides(["high_amount.threshold=150", "high_frequency.count=3"])


def _records(events: pl.DataFrame, partitions: int = 2) -> dict[int, list[RawRecord]]:
    keys, values = encode_events(events)
    out: dict[int, list[RawRecord]] = {p: [] for p in range(partitions)}
    for uid, key, value in zip(events["user_id"].to_list(), keys, values, strict=True):
        p = uid % partitions
        out[p].append(RawRecord(value, key, "t", p, len(out[p])))
    return out


def test_without_switches_the_fallback_decides_like_one_engine() -> None:
    events = make_events(1500, users=20, seed=12)
    out = replay_topic("t", _records(events), ControlState(), A, batch_size=200)
    assert out.schema == pl.Schema(OUTPUT_SCHEMA)
    want = RuleEngine(A).process(events).select("transaction_id", "flagged", "rules_fired")
    got = out.sort("transaction_id").select(want.columns)
    assert got.equals(want.sort("transaction_id"))
    assert out["rule_set_id"].unique().to_list() == [A.id]
    assert out["shadow_rule_set_id"].null_count() == out.height


def test_a_recorded_switch_splits_each_partition_at_its_offset() -> None:
    events = make_events(1500, users=20, seed=13)
    records = _records(events)
    state = ControlState(sets={A.id: A, B.id: B})
    for p in (0, 1):
        state.add_switch(Switch("t", p, "active", 0, A.id, ""))
        state.add_switch(Switch("t", p, "active", 300 + p, B.id, ""))
    out = replay_topic("t", records, state, A, batch_size=128)
    in_b = pl.col("_offset") >= 300 + pl.col("_partition")
    assert (out.filter(in_b)["rule_set_id"] == B.id).all()
    assert (out.filter(~in_b)["rule_set_id"] == A.id).all()
    full_b = RuleEngine(B).process(events).select("transaction_id", "flagged", "score")
    got = out.filter(in_b).select("transaction_id", "flagged", "score").join(
        full_b, on="transaction_id", suffix="_b")
    assert got.height == out.filter(in_b).height
    assert (got["flagged"] == got["flagged_b"]).all() and (got["score"] == got["score_b"]).all()


@pytest.mark.parametrize("args, fragment", [
    (["--from-kafka", "t", "--flags-out", "x.parquet"], "no Kafka"),
    (["--from-kafka", "t", "--input", "a", "--flags-out", "x.parquet"], "not allowed with"),
    (["--from-kafka", "t", "--flags-out", "x.txt", "--bootstrap", "127.0.0.1:1"], ".parquet"),
])
def test_bad_replay_input_is_one_line_exit_2(args, fragment, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "streaming.replay", *args], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and fragment in lines[0], out.stderr
