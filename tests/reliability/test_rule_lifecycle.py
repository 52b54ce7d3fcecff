"""Live rule changes on the real broker: a set published mid-stream takes effect on every
partition within 2 s with no restart; a replay of the topic with the control log reproduces
every live decision (rule-set id and shadow columns included); kill -9 during a change and a
rebalance during a change lose, duplicate and decide differently nothing.

The consumer is the real CLI (``--rules-topic``). The expected decision of an event is the
pure-Python reference of the set its partition's switch log names for its offset.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import polars as pl

from rules.model import load_rule_set
from streaming import rules_control as rc
from streaming.shadow import compare, scan_lake
from tests.reference_rules import reference_decisions
from tests.reliability._faults import (
    ROOT,
    Offsets,
    audit,
    consume_cmd,
    drain,
    expected_rows,
    finish,
    kill9,
    lake_rows,
    mongo_flags,
    start,
    wait_for_line,
)
from tests.reliability.test_crash import produce_paced
from tests.streaming._kafka_data import make_events, read_topic

PARTITIONS = 4
A = load_rule_set()
B = A.with_overrides(["high_amount.threshold=300", "high_frequency.window_seconds=600",
                      "high_frequency.count=4"])
SHADOW = A.with_overrides(["high_amount.threshold=500", "geo_mismatch.speed_kmh=500"])


def _events(seed: int) -> pl.DataFrame:
    return make_events(6000, users=60, seed=seed)


def _cmd(bootstrap: str, topic: str, control: str, lake: Path, mongo_uri: str, group: str,
         **kw) -> list[str]:
    return [*consume_cmd(bootstrap, topic, lake, mongo_uri, group, batch_size=100, **kw),
            "--rules-topic", control]


def _wait_committed(offsets: Offsets, share: float, total: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while offsets.committed() < share * total:
        assert time.monotonic() < deadline, "the consumer made no progress"
        time.sleep(0.05)


def _publish_change(bootstrap: str, control: str) -> rc.ControlState:
    rc.publish(bootstrap, control, B, "active")
    rc.publish(bootstrap, control, SHADOW, "shadow")
    return rc.read_control(bootstrap, control)


def _positions(bootstrap: str, topic: str, n: int) -> pl.DataFrame:
    """transaction_id → partition, offset, Kafka timestamp (ms) of every produced record."""
    msgs = read_topic(bootstrap, topic, n, timeout=60)
    assert len(msgs) == n
    return pl.DataFrame({
        "transaction_id": [json.loads(m.value())["transaction_id"] for m in msgs],
        "partition": [m.partition() for m in msgs], "offset": [m.offset() for m in msgs],
        "kafka_ms": [m.timestamp()[1] for m in msgs]})


def _set_by_log(state: rc.ControlState, topic: str, positions: pl.DataFrame,
                role: str) -> pl.Series:
    return pl.Series([state.set_at(topic, p, role, o) or None for p, o in
                      positions.select("partition", "offset").iter_rows()], dtype=pl.String)


def _expected(events: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Per event: the reference decision of the set its offset was assigned."""
    parts = []
    for rs in (A, B):
        ref = expected_rows(reference_decisions(events, rs), rs.rule_ids)
        mine = ids.filter(pl.col("rule_set_id") == rs.id).select("transaction_id")
        parts.append(ref.join(mine, on="transaction_id"))
    return pl.concat(parts)


def _full_lake(lake: Path) -> pl.DataFrame:
    files = sorted(p for p in lake.rglob("*.parquet") if not p.name.startswith("."))
    return pl.read_parquet(files, hive_partitioning=False)


def _replay(bootstrap: str, topic: str, control: str, out: Path) -> pl.DataFrame:
    """The CLI: ``streaming.replay --from-kafka`` with the control log."""
    res = subprocess.run([sys.executable, "-m", "streaming.replay", "--from-kafka", topic,
                          "--bootstrap", bootstrap, "--rules-topic", control, "--flags-out",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return pl.read_parquet(out)


COMPARED = ["transaction_id", "rule_set_id", "score", "flagged", "rules_fired",
            "shadow_rule_set_id", "shadow_score", "shadow_flagged", "shadow_rules_fired"]


def _check_all(bootstrap: str, topic: str, control: str, events: pl.DataFrame, lake: Path,
               mongo_db, tmp_path: Path) -> tuple[rc.ControlState, pl.DataFrame]:
    """Exactly once, decided by the logged set, replay ≡ live, flags carry the deciding id."""
    state = rc.read_control(bootstrap, control)
    pos = _positions(bootstrap, topic, events.height)
    ids = pos.with_columns(rule_set_id=_set_by_log(state, topic, pos, "active"),
                           shadow_id=_set_by_log(state, topic, pos, "shadow"))
    assert ids["rule_set_id"].null_count() == 0  # every offset covered by a switch
    expected = _expected(events, ids)
    result = audit(expected, lake_rows(lake), mongo_flags(mongo_db["flags"]))
    assert result.exact and result.lake_rows == events.height, result.notes()
    assert result.flags_expected > 100
    live = _full_lake(lake).select(COMPARED).sort("transaction_id")
    got = live.join(ids, on="transaction_id")
    assert (got["rule_set_id"] == got["rule_set_id_right"]).all()
    assert got["shadow_rule_set_id"].equals(got["shadow_id"].alias("shadow_rule_set_id"))
    replayed = _replay(bootstrap, topic, control, tmp_path / "replay.parquet")
    assert replayed.select(COMPARED).sort("transaction_id").equals(live)  # replay ≡ live
    docs = {d["_id"]: d["rule_set_id"] for d in mongo_db["flags"].find({}, {"rule_set_id": 1})}
    want = dict(live.filter(pl.col("flagged")).select("transaction_id", "rule_set_id").rows())
    assert docs == want
    return state, got


def _switches(state: rc.ControlState, topic: str, role: str, set_id: str) -> list[rc.Switch]:
    return [s for s in state.switches if s.topic == topic and s.role == role and s.id == set_id]


def test_a_change_mid_stream_takes_effect_within_2s_on_every_partition(
        kafka_bootstrap: str, make_topic, mongo_uri: str, mongo_db, tmp_path: Path) -> None:
    topic = make_topic(PARTITIONS, prefix="switch")
    control = f"{topic}.rules"
    events = _events(31)
    lake = tmp_path / "lake"
    producer = produce_paced(kafka_bootstrap, topic, events, chunks=40, pause=0.25)
    log = tmp_path / "consume.log"
    proc = start(_cmd(kafka_bootstrap, topic, control, lake, mongo_uri, f"g-{topic}",
                      timeout=5), mongo_db.name, log)
    offsets = Offsets(kafka_bootstrap, f"g-{topic}", topic, PARTITIONS)
    try:
        assert wait_for_line(log, "consume: assigned", proc), log.read_text()
        _wait_committed(offsets, 0.3, events.height)
        published = _publish_change(kafka_bootstrap, control)
        producer.join(timeout=120)
        finish(proc, log)  # one process from start to end: no restart
    finally:
        offsets.close()
    t_pub = datetime.fromisoformat(published.pointers["active"].published_at)
    state, got = _check_all(kafka_bootstrap, topic, control, events, lake, mongo_db, tmp_path)
    for role, set_id in (("active", B.id), ("shadow", SHADOW.id)):
        switched = {s.partition: s for s in _switches(state, topic, role, set_id)}
        assert sorted(switched) == list(range(PARTITIONS))
        for s in switched.values():
            assert s.offset > 0  # mid-stream
            assert (datetime.fromisoformat(s.at) - t_pub).total_seconds() <= 2.0, s
    # every record produced 2 s after the publication was decided by the new set
    late = got.filter(pl.col("kafka_ms") >= t_pub.timestamp() * 1000 + 2000)
    assert late.height > 500 and (late["rule_set_id"] == B.id).all()
    assert got.filter(pl.col("rule_set_id") == A.id).height > 500
    assert "state from" in log.read_text() and log.read_text().count("consume: assigned") == 4
    # the live shadow comparison sees exactly the rows the shadow set decided
    table = compare(scan_lake(lake))
    pairs = {(r["rule_set_id"], r["shadow_rule_set_id"]): r["events"]
             for r in table.iter_rows(named=True)}
    assert pairs == {(B.id, SHADOW.id): int((got["shadow_id"] == SHADOW.id).sum())}


def test_kill9_during_a_change_loses_nothing_and_decides_by_the_log(
        kafka_bootstrap: str, make_topic, mongo_uri: str, mongo_db, tmp_path: Path) -> None:
    topic = make_topic(PARTITIONS, prefix="switchkill")
    control = f"{topic}.rules"
    group = f"g-{topic}"
    events = _events(32)
    lake = tmp_path / "lake"
    cmd = _cmd(kafka_bootstrap, topic, control, lake, mongo_uri, group,
               instance_id=f"i-{topic}")
    half = events.height // 2
    producer = produce_paced(kafka_bootstrap, topic, events.head(half), chunks=20, pause=0.3)
    offsets = Offsets(kafka_bootstrap, group, topic, PARTITIONS)
    rng = random.Random(3)
    try:
        for i in range(6):
            log = tmp_path / f"run-{i}.log"
            proc = start(cmd, mongo_db.name, log)
            assert wait_for_line(log, "consume: assigned", proc), log.read_text()
            if i == 3:  # the change lands while this consumer runs; killed right after
                producer.join(timeout=120)
                _publish_change(kafka_bootstrap, control)
                producer = produce_paced(kafka_bootstrap, topic, events.slice(half),
                                         chunks=20, pause=0.3)
                time.sleep(rng.uniform(0.3, 0.8))
            else:
                time.sleep(rng.uniform(0.3, 1.5))
            assert proc.poll() is None, log.read_text()
            kill9(proc)
        producer.join(timeout=120)
        drain(cmd, mongo_db.name, tmp_path / "final.log", offsets, events.height)
    finally:
        offsets.close()
    state, got = _check_all(kafka_bootstrap, topic, control, events, lake, mongo_db, tmp_path)
    assert {s.partition for s in _switches(state, topic, "active", B.id)} == set(
        range(PARTITIONS))
    assert got.filter(pl.col("rule_set_id") == A.id).height > 300
    assert got.filter(pl.col("rule_set_id") == B.id).height > 300


def test_two_consumers_and_a_rebalance_during_a_change(
        kafka_bootstrap: str, make_topic, mongo_uri: str, mongo_db, tmp_path: Path) -> None:
    topic = make_topic(PARTITIONS, prefix="switchscale")
    control = f"{topic}.rules"
    group = f"g-{topic}"
    events = _events(33)
    lake = tmp_path / "lake"
    cmd = _cmd(kafka_bootstrap, topic, control, lake, mongo_uri, group, timeout=8)
    half = events.height // 2
    producer = produce_paced(kafka_bootstrap, topic, events.head(half), chunks=20, pause=0.3)
    offsets = Offsets(kafka_bootstrap, group, topic, PARTITIONS)
    logs = [tmp_path / "c1.log", tmp_path / "c2.log"]
    try:
        first = start(cmd, mongo_db.name, logs[0])
        assert wait_for_line(logs[0], "consume: assigned", first), logs[0].read_text()
        _wait_committed(offsets, 0.3, events.height)
        producer.join(timeout=120)
        second = start(cmd, mongo_db.name, logs[1])  # joins: the group rebalances …
        _publish_change(kafka_bootstrap, control)  # … while the change is published
        producer = produce_paced(kafka_bootstrap, topic, events.slice(half), chunks=20,
                                 pause=0.3)
        assert wait_for_line(logs[1], "consume: assigned", second, timeout=60), \
            logs[1].read_text()
        producer.join(timeout=120)
        finish(first, logs[0])
        finish(second, logs[1])
        assert offsets.committed() == offsets.end() == events.height
    finally:
        offsets.close()
    assert "revoked" in logs[0].read_text()  # partitions really moved
    state, _got = _check_all(kafka_bootstrap, topic, control, events, lake, mongo_db, tmp_path)
    assert {s.partition for s in _switches(state, topic, "active", B.id)} == set(
        range(PARTITIONS))
