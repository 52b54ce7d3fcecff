"""Kafka → rules → lake + flags: ``python -m streaming.consume``.

The command-line shell over ``streaming.consume_loop.StreamConsumer`` (see there for the loop, the
commit-after-sinks order and how rule state is rebuilt on partition assignment). Flags go to
MongoDB when ``--mongo-uri`` / ``MONGO_URI`` is set, else to the local SQLite store.
SIGTERM/SIGINT: the current batch is finished, flushed and committed, then the consumer leaves
the group. ``--max-messages`` / ``--timeout`` bound a run (tests, benchmarks). A metrics line
(events/s, flags/s, lag, DLQ count, latency) goes to stderr every ``--metrics-interval`` s.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from flagstore.protocols import FlagWriter
from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    check_output_dir,
    check_output_file,
    count_arg,
    positive_count_arg,
    positive_float_arg,
    run,
)
from fraudlake.settings import Settings, mongo_uri_from_env
from rules.arguments import add_rule_arguments, rule_set_from_args
from streaming.consume_loop import BATCH_SIZE, ConsumeConfig, ConsumeStats, StreamConsumer
from streaming.kafka_io import check_kafka

log = logging.getLogger(__name__)

__all__ = ["ConsumeConfig", "ConsumeStats", "StreamConsumer", "main", "open_flag_store"]


def open_flag_store(settings: Settings, mongo_uri: str | None) -> FlagWriter:
    """MongoDB when a URI is given, else the local SQLite store (embedded mode)."""
    if mongo_uri:
        from flagstore.mongo import MongoFlagStore

        return MongoFlagStore(mongo_uri, settings.mongo_db, settings.mongo_collection,
                              retry_seconds=settings.mongo_retry_seconds)
    from flagstore.sqlite import SqliteFlagStore

    return SqliteFlagStore(settings.local_flags_path)


def build_parser(settings: Settings | None = None) -> ArgumentParser:
    s = settings or Settings.from_env()
    p = ArgumentParser(prog="python -m streaming.consume",
                       description="Kafka transactions → rules → lake + flags (+ DLQ).")
    p.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--topic", default=s.kafka_topic,
                   help=f"input topic (env KAFKA_TOPIC; default {Settings.kafka_topic})")
    p.add_argument("--dlq-topic", default=s.kafka_dlq_topic,
                   help="dead-letter topic (env KAFKA_DLQ_TOPIC; "
                        f"default {Settings.kafka_dlq_topic})")
    p.add_argument("--group", default=s.kafka_group_id,
                   help=f"consumer group (env KAFKA_GROUP_ID; default {Settings.kafka_group_id})")
    p.add_argument("--group-instance-id", default=s.kafka_group_instance_id,
                   help="static group membership (env KAFKA_GROUP_INSTANCE_ID; unset = dynamic): "
                        "a consumer restarted with the same id gets its partitions back at once "
                        "instead of after the old session times out (10 s); one id per process")
    p.add_argument("--mongo-uri", default=s.mongo_uri,
                   help="MongoDB URI for flags (env MONGO_URI; unset = local SQLite store at "
                        "env LOCAL_FLAGS_PATH); db/collection from env MONGO_DB/MONGO_COLLECTION; "
                        "credentials/TLS also from env MONGO_USERNAME, MONGO_PASSWORD, "
                        "MONGO_AUTH_SOURCE, MONGO_AUTH_MECHANISM, MONGO_TLS, MONGO_TLS_CA_FILE, "
                        "MONGO_TLS_CERT_KEY_FILE, MONGO_TLS_CERT_KEY_PASSWORD, MONGO_TLS_INSECURE; "
                        "Kafka SASL/TLS from env KAFKA_SASL_*, KAFKA_SSL_*, KAFKA_SECURITY_* "
                        "(e.g. KAFKA_SASL_PASSWORD → sasl.password); transient MongoDB errors are "
                        "retried for env MONGO_RETRY_SECONDS (default 120), Kafka commits and "
                        "DLQ flushes for env KAFKA_RETRY_SECONDS (default 120)")
    p.add_argument("--lake", type=Path, default=s.lake_dir,
                   help=f"lake root (env LAKE_DIR; default {Settings.lake_dir})")
    p.add_argument("--batch-size", type=positive_count_arg, default=BATCH_SIZE,
                   help=f"max messages per micro-batch (default {BATCH_SIZE}; a poll returns "
                        "fewer when the topic has less waiting)")
    p.add_argument("--poll-timeout", type=positive_float_arg, default=0.1,
                   help="seconds a poll waits to fill a batch (default 0.1)")
    p.add_argument("--max-messages", type=count_arg, help="stop after this many messages")
    p.add_argument("--timeout", type=positive_float_arg,
                   help="stop after this many seconds without input")
    p.add_argument("--metrics-interval", type=positive_float_arg, default=5.0,
                   help="seconds between metrics lines on stderr (default 5)")
    p.add_argument("--metrics-file", type=Path,
                   default=s.consumer_metrics_path,
                   help="JSON with the latest lag and counts, rewritten with each metrics line "
                        "(env CONSUMER_METRICS; default storage/metrics/consumer.json)")
    add_rule_arguments(p)
    p.add_argument("--rules-topic", default=s.kafka_rules_topic,
                   help="follow this rule control topic (env KAFKA_RULES_TOPIC; unset = the "
                        "--rules set is fixed for the run): its active set decides, a newly "
                        "published one from the next micro-batch, its shadow set runs beside; "
                        "--rules seeds an empty topic")
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[ConsumeConfig, str | None]:
    args = build_parser().parse_args(argv)
    if not args.bootstrap:
        raise UsageError("no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    rule_set = rule_set_from_args(args)
    check_output_dir(args.lake, "--lake")
    check_output_file(args.metrics_file, "--metrics-file")
    settings = Settings.from_env()
    if not args.mongo_uri:
        check_output_file(settings.local_flags_path, "LOCAL_FLAGS_PATH")
    try:  # MONGO_USERNAME/PASSWORD, MONGO_AUTH_*, MONGO_TLS_* from the environment
        mongo_uri = mongo_uri_from_env(args.mongo_uri)
    except ValueError as exc:
        raise UsageError(f"--mongo-uri/MONGO_URI: {exc}") from None
    cfg = ConsumeConfig(args.bootstrap, args.topic, args.dlq_topic, args.group, args.lake,
                        rule_set, args.batch_size, args.poll_timeout, args.max_messages,
                        args.timeout, args.metrics_interval, args.metrics_file,
                        dict(settings.kafka_extra), args.group_instance_id or None,
                        settings.kafka_retry_seconds, args.rules_topic or None)
    return cfg, mongo_uri


def main(argv: Sequence[str] | None = None) -> int:
    cfg, mongo_uri = config_from_args(argv)
    # MongoDB first (it has its own retry budget), then Kafka, then the local store: a failed
    # start leaves no SQLite file behind
    store = open_flag_store(Settings.from_env(), mongo_uri) if mongo_uri else None
    if store is not None:
        store.prepare()  # an unreachable flag store fails here, after its retry budget
    try:
        check_kafka(cfg.bootstrap, cfg.kafka_extra,
                    min(30.0, Settings.from_env().kafka_retry_seconds))
    except BaseException:
        getattr(store, "close", lambda: None)()
        raise
    if store is None:
        store = open_flag_store(Settings.from_env(), None)
        store.prepare()
    consumer = StreamConsumer(cfg, store)
    if cfg.rules_topic is None:
        log.info("consume: rule set %s (%s, %d rules)", cfg.rule_set.id, cfg.rule_set.source,
                 len(cfg.rule_set.rules))
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    try:
        stats = consumer.run()
    finally:
        store.close()
    secs = time.monotonic() - stats.started
    p50, p99 = consumer.latency_ms()
    log.info(f"consume: {stats.messages} messages, {stats.events} events, {stats.flags} flags, "
          f"{stats.dead_letters} dead letters in {secs:.1f}s; latency produce→in sinks "
          f"p50={p50:.0f}ms p99={p99:.0f}ms")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``main`` under the one handler: a server that stayed away past its retry budget (the log
    above says what was retried) is an ``EnvironmentFailure`` — one line and exit code 1; a
    supervisor restarts the consumer, which resumes from the last commit."""
    return run(main, argv)


if __name__ == "__main__":
    raise SystemExit(cli())
