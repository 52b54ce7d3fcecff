"""What scripts/compose-e2e.sh asks of the running stack, answered from inside it.

Runs in a one-off container of the ``consumer`` service (its image, Kafka/MongoDB settings and
the lake volume), mounted read-only; it looks only at the stack's public surfaces: the Kafka
topic and consumer group, the lake's Parquet files, the MongoDB flag collection and the
``python -m batch.backtest`` command. Each subcommand prints one JSON object; ``verify`` exits 1
when the lake or the flags differ from what was sent.

    python compose_check.py group      # consumer group members and their partitions
    python compose_check.py lag        # end offsets vs the group's committed offsets
    python compose_check.py lake       # rows in the live lake
    python compose_check.py verify     # topic == lake (no loss, no duplicates); flags == backtest
    python compose_check.py history    # rows of generated history
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from fraudlake.logs import configure as configure_logging
from fraudlake.settings import Settings

#: The stack's settings (fraudlake.settings), with the container's paths and broker as defaults.
SETTINGS = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
                              "LAKE_DIR": "/app/storage/lake",
                              "HISTORY_DIR": "/app/storage/historical", **os.environ})
BOOTSTRAP = SETTINGS.kafka_bootstrap_servers or "kafka:9092"
TOPIC = SETTINGS.kafka_topic
GROUP = SETTINGS.kafka_group_id
STORAGE = SETTINGS.lake_dir.parent
LAKE = SETTINGS.lake_transactions_dir
HISTORY = SETTINGS.history_dir
log = logging.getLogger("compose_check")


def _partitions(client: Consumer) -> list[TopicPartition]:
    meta = client.list_topics(TOPIC, timeout=15)
    return [TopicPartition(TOPIC, p) for p in sorted(meta.topics[TOPIC].partitions)]


def group() -> dict:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 3})
    desc = admin.describe_consumer_groups([GROUP])[GROUP].result(timeout=15)
    members = [{"id": m.member_id, "host": m.host.lstrip("/"),
                "partitions": sorted(tp.partition for tp in m.assignment.topic_partitions
                                     if tp.topic == TOPIC)}
               for m in desc.members]
    return {"state": str(desc.state).rsplit(".", 1)[-1], "members": members}


def lag() -> dict:
    client = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP,
                       "enable.auto.commit": False, "log_level": 3})
    try:
        tps = _partitions(client)
        end = sum(client.get_watermark_offsets(tp, timeout=15)[1] for tp in tps)
        committed = sum(max(tp.offset, 0) for tp in client.committed(tps, timeout=15))
    finally:
        client.close()
    return {"end": end, "committed": committed, "lag": end - committed}


def _sent_ids() -> list[str]:
    """Every transaction_id in the topic: what the producer sent."""
    client = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"e2e-check-{uuid.uuid4()}",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest",
                       "log_level": 3})
    ids: list[str] = []
    try:
        tps = _partitions(client)
        ends = {tp.partition: client.get_watermark_offsets(tp, timeout=15)[1] for tp in tps}
        client.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in ends if ends[p]])
        todo = {p for p, end in ends.items() if end > 0}
        while todo:
            for msg in client.consume(1000, timeout=10):
                if msg.error():
                    raise RuntimeError(f"reading {TOPIC}: {msg.error()}")
                value, offset, part = msg.value(), msg.offset(), msg.partition()
                if value is None or offset is None or part is None:
                    raise RuntimeError(f"reading {TOPIC}: a record without value or position")
                ids.append(json.loads(value)["transaction_id"])
                if offset + 1 >= ends[part]:
                    todo.discard(part)
    finally:
        client.close()
    return ids


def _parquet_glob(root: Path) -> str:
    return str(root / "**" / "*.parquet")


def lake() -> dict:
    if not LAKE.exists():
        return {"rows": 0}
    rows = duckdb.connect().execute(
        "SELECT count(*) FROM read_parquet($glob, union_by_name=true, hive_partitioning=true)",
        {"glob": _parquet_glob(LAKE)}).fetchall()[0][0]
    return {"rows": rows}


def _lake_ids() -> list[str]:
    return [r[0] for r in duckdb.connect().execute(
        "SELECT transaction_id FROM read_parquet($glob, union_by_name=true, "
        "hive_partitioning=true)", {"glob": _parquet_glob(LAKE)}).fetchall()]


def _mongo_flag_ids() -> set[str]:
    if not SETTINGS.mongo_uri:
        raise RuntimeError("MONGO_URI is not set")
    mongo: MongoClient[dict[str, Any]] = MongoClient(SETTINGS.mongo_uri,
                                                     serverSelectionTimeoutMS=15_000)
    with mongo as client:
        coll = client[SETTINGS.mongo_db][SETTINGS.mongo_collection]
        return {doc["_id"] for doc in coll.find({}, {"_id": 1})}


def _backtest_flagged_ids() -> set[str]:
    """Flagged transaction_ids by ``python -m batch.backtest --flags-out`` over the lake."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flags.parquet"
        proc = subprocess.run([sys.executable, "-m", "batch.backtest", "--input", str(LAKE),
                               "--flags-out", str(out), "--quiet"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"batch.backtest exit {proc.returncode}: {proc.stderr[-800:]}")
        table = pq.read_table(out, columns=["transaction_id", "flagged"])
    return {tid for tid, flagged in zip(table["transaction_id"].to_pylist(),
                                        table["flagged"].to_pylist(), strict=True) if flagged}


def verify() -> dict:
    sent, stored = _sent_ids(), _lake_ids()
    sent_set, stored_set = set(sent), set(stored)
    flags, backtest = _mongo_flag_ids(), _backtest_flagged_ids()
    result = {
        "sent": len(sent), "sent_distinct": len(sent_set),
        "lake_rows": len(stored), "lake_distinct": len(stored_set),
        "lost": len(sent_set - stored_set), "unexpected": len(stored_set - sent_set),
        "duplicated": len(stored) - len(stored_set),
        "mongo_flags": len(flags), "backtest_flagged": len(backtest),
        "flags_missing": len(backtest - flags), "flags_extra": len(flags - backtest),
    }
    result["ok"] = bool(
        sent and len(sent) == len(sent_set) and sent_set == stored_set
        and result["duplicated"] == 0 and backtest and flags == backtest)
    return result


def history() -> dict:
    files = sorted(HISTORY.rglob("*.parquet")) if HISTORY.exists() else []
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {"files": len(files), "rows": rows}


COMMANDS = {"group": group, "lag": lag, "lake": lake, "verify": verify, "history": history}


def main(argv: list[str] | None = None) -> int:
    configure_logging("INFO")
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        log.error("usage: compose_check.py %s", "|".join(COMMANDS))
        return 2
    try:
        result = COMMANDS[args[0]]()
    except Exception as exc:  # one line for the calling script, which shows it and fails
        log.error("compose_check %s: %s: %s", args[0], type(exc).__name__, exc)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
