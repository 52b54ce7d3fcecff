"""Kafka → rules → lake + flags: ``python -m streaming.consume``.

The command-line shell over ``streaming.consumer.StreamConsumer`` (see there for the loop, the
commit-after-sinks order and how rule state is rebuilt on partition assignment). Flags go to
MongoDB when ``--mongo-uri`` / ``MONGO_URI`` is set, else to the local SQLite store.
SIGTERM/SIGINT: the current batch is finished, flushed and committed, then the consumer leaves
the group. ``--max-messages`` / ``--timeout`` bound a run (tests, benchmarks). A metrics line
(events/s, flags/s, lag, DLQ count, latency) goes to stderr every ``--metrics-interval`` s.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fraudlake.cli import ArgumentParser, UsageError, count_arg, env_default, run
from fraudlake.settings import Settings
from queries.params import DEFAULT_PARAMS
from streaming.consumer import ConsumeConfig, ConsumeStats, StreamConsumer

__all__ = ["ConsumeConfig", "ConsumeStats", "StreamConsumer", "main", "open_flag_store"]


def open_flag_store(settings: Settings, mongo_uri: str | None):
    """MongoDB when a URI is given, else the local SQLite store (embedded mode)."""
    if mongo_uri:
        from streaming.mongo_sink import MongoFlagStore

        return MongoFlagStore(mongo_uri, settings.mongo_db, settings.mongo_collection)
    from streaming.flag_store import SqliteFlagStore

    return SqliteFlagStore(settings.local_flags_path)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m streaming.consume",
                       description="Kafka transactions → rules → lake + flags (+ DLQ).")
    p.add_argument("--bootstrap", default=env_default("KAFKA_BOOTSTRAP_SERVERS"),
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--topic", default=env_default("KAFKA_TOPIC", "transactions"),
                   help="input topic (env KAFKA_TOPIC; default transactions)")
    p.add_argument("--dlq-topic", default=env_default("KAFKA_DLQ_TOPIC", "transactions.dlq"),
                   help="dead-letter topic (env KAFKA_DLQ_TOPIC; default transactions.dlq)")
    p.add_argument("--group", default=env_default("KAFKA_GROUP_ID", "fraudlake-consumer"),
                   help="consumer group (env KAFKA_GROUP_ID; default fraudlake-consumer)")
    p.add_argument("--mongo-uri", default=env_default("MONGO_URI"),
                   help="MongoDB URI for flags (env MONGO_URI; unset = local SQLite store at "
                        "env LOCAL_FLAGS_PATH); db/collection from env MONGO_DB/MONGO_COLLECTION")
    p.add_argument("--lake", type=Path, default=Path(env_default("LAKE_DIR", "storage/lake")),
                   help="lake root (env LAKE_DIR; default storage/lake)")
    p.add_argument("--batch-size", type=count_arg, default=20_000,
                   help="max messages per micro-batch (default 20000)")
    p.add_argument("--poll-timeout", type=float, default=0.1,
                   help="seconds a poll waits to fill a batch (default 0.1)")
    p.add_argument("--max-messages", type=count_arg, help="stop after this many messages")
    p.add_argument("--timeout", type=float, help="stop after this many seconds without input")
    p.add_argument("--metrics-interval", type=float, default=5.0,
                   help="seconds between metrics lines on stderr (default 5)")
    p.add_argument("--metrics-file", type=Path,
                   default=Path(env_default("CONSUMER_METRICS", "storage/metrics/consumer.json")),
                   help="JSON with the latest lag and counts, rewritten with each metrics line "
                        "(env CONSUMER_METRICS; default storage/metrics/consumer.json)")
    p.add_argument("--set", action="append", default=[], metavar="RULE.PARAM=VALUE",
                   help="override a rule parameter, e.g. high_amount.threshold=2500")
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[ConsumeConfig, str | None]:
    args = build_parser().parse_args(argv)
    if not args.bootstrap:
        raise UsageError("no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    if args.batch_size <= 0 or args.poll_timeout <= 0 or args.metrics_interval <= 0:
        raise UsageError("--batch-size, --poll-timeout and --metrics-interval must be > 0")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be > 0")
    try:
        params = DEFAULT_PARAMS.with_overrides(args.set)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = Settings.from_env()
    cfg = ConsumeConfig(args.bootstrap, args.topic, args.dlq_topic, args.group, args.lake,
                        params, args.batch_size, args.poll_timeout, args.max_messages,
                        args.timeout, args.metrics_interval, args.metrics_file,
                        dict(settings.kafka_extra))
    return cfg, args.mongo_uri


def main(argv: Sequence[str] | None = None) -> int:
    cfg, mongo_uri = config_from_args(argv)
    store = open_flag_store(Settings.from_env(), mongo_uri)
    consumer = StreamConsumer(cfg, store)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    try:
        stats = consumer.run()
    finally:
        getattr(store, "close", lambda: None)()
    secs = time.monotonic() - stats.started
    p50, p99 = consumer.latency_ms()
    print(f"consume: {stats.messages} messages, {stats.events} events, {stats.flags} flags, "
          f"{stats.dead_letters} dead letters in {secs:.1f}s; latency produce→in sinks "
          f"p50={p50:.0f}ms p99={p99:.0f}ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
