"""Live simulator → Kafka: ``python -m streaming.produce --rate 5000 --count 100000``.

Reuses the history generator's world (same holders, merchants, fraud scenarios, labels) through
``simulator``'s ``build_world`` / ``simulate``. Each event is one JSON object (contract v1: ``ts``
ISO-8601 with offset, ``amount`` as an exact string "12.34"), keyed by ``user_id`` (the bytes of
its decimal string) so one user's events stay in one partition, in time order. The producer is
idempotent with acks=all, compressed and lightly lingering; ``--rate`` paces it (0 = as fast as
possible). Progress and throughput go to stderr.

Simulated time vs wall time (compressed time, docs/design.md "Live event time"): the ``--count``
events are the span of event time they take at the world's realistic density, ending at the
moment the producer starts; they are sent in event-time order at ``--rate`` (wall clock), so
event time never runs ahead of the wall clock and the flag rates do not depend on the rate.
Kafka's message timestamp is the wall-clock send time (what the latency measure uses).

A broker restart loses nothing: the idempotent producer keeps each undelivered message queued
and retries it (up to ``message.timeout.ms``, 5 min) without duplicating or reordering; the
final flush waits as long, saying every 10 s how many messages still wait, and every message
is confirmed by a delivery report (the exit code is 1 if any failed). The log says when the
broker went away and when the producer reconnected.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    count_arg,
    non_negative_float_arg,
    positive_count_arg,
    positive_float_arg,
    run,
    seed_arg,
)
from fraudlake.contract import EVENT_SCHEMA
from fraudlake.settings import Settings
from simulator import World, build_world, simulate
from simulator.stream import live_span, rows_per_day
from streaming.kafka_io import (
    BrokerWatch,
    check_kafka,
    ensure_topics,
    flush_within,
    producer_config,
)

MAX_UNPACED_RATE = 1_000_000  # events/s assumed to size an unpaced --duration stream
MAX_SPAN_DAYS = 5 * 365  # a --duration stream covers at most this much event time
MIN_RATE, MAX_RATE = 0.001, 10_000_000.0  # a paced --rate (events/s of wall clock)

log = logging.getLogger(__name__)

TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6f+00:00"
FLUSH_SECONDS = 330.0  # librdkafka's message.timeout.ms (300 s) and a margin


@dataclass(frozen=True)
class ProduceStats:
    events: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def encode_events(df: pl.DataFrame) -> tuple[list[bytes], list[bytes]]:
    """Contract frame → (Kafka keys, JSON values), vectorised through Polars' NDJSON writer."""
    cols = [c for c in EVENT_SCHEMA if c in df.columns]
    out = df.select(cols).with_columns(
        pl.col("ts").dt.convert_time_zone("UTC").dt.strftime(TS_FORMAT),
        pl.col("amount").cast(pl.String),
    )
    values = out.write_ndjson().encode().split(b"\n")
    if values and not values[-1]:
        values.pop()
    keys = [k.encode() for k in df.get_column("user_id").cast(pl.String).to_list()]
    return keys, values


def live_world(seed: int, users: int, end: datetime) -> World:
    """The history's world (same cards, processes and years) for a stream ending at ``end``."""
    return build_world(seed, users, 2000, max(end.year, 2001))


def simulated_events(seed: int, users: int, count: int,
                     end: datetime | None = None) -> Iterator[pl.DataFrame]:
    """``count`` contract frames of the simulated world over a past span ending at ``end``
    (default: now). Event times do not depend on the send rate (see ``simulator.stream``)."""
    end = end or datetime.now(UTC).replace(microsecond=0)
    try:
        world = live_world(seed, users, end)
        live_span(world, end, count)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    yield from simulate(world, end, count, seed)


def describe_stream(seed: int, users: int, count: int, end: datetime) -> str:
    """One line: how simulated (event) time relates to the wall clock for this stream."""
    world = live_world(seed, users, end)
    try:
        start_s, end_s = live_span(world, end, count)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_day = rows_per_day(world, end_s)
    return (f"simulated world: {users:,} cards, ~{per_day:,.0f} events per simulated day; "
            f"{count:,} events span {(end_s - start_s) / 86_400:,.1f} days of event time "
            f"ending {end:%Y-%m-%d %H:%M:%S} UTC (--rate paces the wall clock only)")


class Pacer:
    """Sleeps so that ``n`` events have taken at least ``n / rate`` seconds (0 = no limit)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.t0 = time.monotonic()

    def wait(self, sent: int) -> None:
        if self.rate > 0:
            ahead = self.t0 + sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def produce(producer: Producer, topic: str, frames: Iterable[pl.DataFrame], *,
            rate: float = 0.0, count: int | None = None, duration: float | None = None,
            progress: bool = True, flush_seconds: float = FLUSH_SECONDS) -> ProduceStats:
    """Send every event of ``frames`` (up to ``count`` / ``duration``); flush (waiting up to
    ``flush_seconds`` for a broker that is away); return stats counted from delivery reports."""
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    pacer = Pacer(rate)
    step = max(1, int(rate / 200)) if rate > 0 else 10_000  # 5 ms of events per pacing step
    deadline = time.monotonic() + duration if duration else None
    sent = 0
    bar = tqdm(total=count, unit="ev", disable=None if progress else True, file=sys.stderr,
               mininterval=1.0)
    try:
        for frame in frames:
            keys, values = encode_events(frame)
            for i in range(0, len(values), step):
                if (count is not None and sent >= count) or (
                        deadline is not None and time.monotonic() >= deadline):
                    break
                end = min(i + step, len(values), i + (count - sent if count is not None else step))
                for key, value in zip(keys[i:end], values[i:end], strict=True):
                    _produce_one(producer, topic, key, value, delivered)
                sent += end - i
                bar.update(end - i)
                producer.poll(0)
                pacer.wait(sent)
            else:
                continue
            break
        remaining = flush_within(producer, flush_seconds, f"produce to {topic!r}")
    finally:
        bar.close()
    seconds = time.monotonic() - pacer.t0
    return ProduceStats(sent - remaining - len(failed), remaining + len(failed), seconds)


def _produce_one(producer: Producer, topic: str, key: bytes, value: bytes, cb) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=cb)
            return
        except BufferError:  # local queue full: let deliveries drain
            producer.poll(0.05)


def build_parser(settings: Settings | None = None) -> ArgumentParser:
    s = settings or Settings.from_env()
    p = ArgumentParser(prog="python -m streaming.produce",
                       description="Simulated card transactions → Kafka (JSON, keyed by user).")
    p.add_argument("--bootstrap", default=s.kafka_bootstrap_servers,
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS); SASL/TLS "
                        "settings from env KAFKA_SASL_*, KAFKA_SSL_*, KAFKA_SECURITY_*")
    p.add_argument("--topic", default=s.kafka_topic,
                   help=f"topic to write (env KAFKA_TOPIC; default {Settings.kafka_topic})")
    p.add_argument("--partitions", type=positive_count_arg, default=4,
                   help="partitions if the topic has to be created (default 4)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--count", type=count_arg, help="events to send (default 100000)")
    amount.add_argument("--duration", type=positive_float_arg, help="seconds to keep sending")
    p.add_argument("--rate", type=non_negative_float_arg, default=0.0,
                   help="events per second of wall clock (default 0 = as fast as possible); "
                        "event time does not depend on it: the events cover the past span "
                        "they take at a realistic density (~1.6 a day per open card), ending "
                        "now, and are sent in event-time order; Kafka's message timestamp is "
                        "the wall-clock send time")
    p.add_argument("--seed", type=seed_arg, default=7, help="simulator seed (default 7)")
    p.add_argument("--users", type=positive_count_arg, default=10_000,
                   help="cards in the simulated world, open or not (default 10000); more "
                        "cards = a shorter span of event time for the same --count")
    p.add_argument("--compression", default="lz4", choices=("lz4", "zstd", "snappy", "none"),
                   help="compression codec (default lz4)")
    p.add_argument("--linger-ms", type=non_negative_float_arg, default=5.0,
                   help="producer linger (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.bootstrap:
        raise UsageError("no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    if args.rate < 0 or (args.duration is not None and args.duration <= 0):
        raise UsageError("--rate must be >= 0 and --duration > 0")
    if args.users <= 0 or args.partitions <= 0:
        raise UsageError("--users and --partitions must be > 0")
    if 0 < args.rate < MIN_RATE or args.rate > MAX_RATE:
        raise UsageError(f"--rate must be 0 (unpaced) or within {MIN_RATE:g}..{MAX_RATE:g} "
                         f"events/s, got {args.rate:g}")
    settings = Settings.from_env()
    count = args.count if args.count is not None else (None if args.duration else 100_000)
    end = datetime.now(UTC).replace(microsecond=0)
    if count is None:  # --duration: sized for the rate (unpaced: MAX_UNPACED_RATE), capped
        per_day = rows_per_day(live_world(args.seed, args.users, end), int(end.timestamp()))
        total = max(1, min(int((args.rate or MAX_UNPACED_RATE) * args.duration),
                           int(per_day * MAX_SPAN_DAYS)))
    else:
        total = count
    settings = Settings.from_env()
    stream = describe_stream(args.seed, args.users, total, end)  # checks the world holds it
    check_kafka(args.bootstrap, settings.kafka_extra, min(30.0, settings.kafka_retry_seconds))
    log.info("%s", stream)
    ensure_topics(args.bootstrap, [args.topic], args.partitions, settings.kafka_extra)
    producer = Producer(producer_config(args.bootstrap, settings.kafka_extra,
                                        compression=args.compression, linger_ms=args.linger_ms,
                                        watch=BrokerWatch("producer")))
    frames = simulated_events(args.seed, args.users, total, end)
    stats = produce(producer, args.topic, frames, rate=args.rate, count=count,
                    duration=args.duration, progress=not args.no_progress)
    log.info("produce: %d events to %s in %.1fs (%s ev/s), %d failed", stats.events,
             args.topic, stats.seconds, f"{stats.rate:,.0f}", stats.failed)
    return 1 if stats.failed else 0


if __name__ == "__main__":
    raise SystemExit(run(main))
