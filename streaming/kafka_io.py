"""Kafka edges of the live pipeline: client configs, topic creation, raw records, the DLQ producer.

Thin I/O shell over confluent-kafka; the pipeline core (decode → rules → sinks) never sees a
Kafka object, only ``RawRecord``s. SASL/TLS settings from the environment
(``Settings.kafka_extra``) are passed through to every client and never printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streaming.decode import DeadLetter, RawRecord

DLQ_REASON_HEADER = "fraudlake.reason"


class KafkaStageError(RuntimeError):
    """A Kafka operation failed terminally; the message names the topic/operation."""


def producer_config(bootstrap: str, extra: Mapping[str, str] = {}, *,
                    compression: str = "lz4", linger_ms: float = 5.0) -> dict[str, object]:
    """Idempotent, acks=all, compressed, lightly lingering producer."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        **extra,
    }


def consumer_config(bootstrap: str, group: str, extra: Mapping[str, str] = {}, *,
                    from_beginning: bool = True) -> dict[str, object]:
    """Manual commits only; large fetches so a poll returns a whole micro-batch."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.min.bytes": 1,
        "fetch.wait.max.ms": 50,
        "queued.min.messages": 200_000,
        "max.poll.interval.ms": 300_000,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        **extra,
    }


def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int,
                  extra: Mapping[str, str] = {}, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (the broker does not auto-create); return them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **extra})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing],
        operation_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaStageError(f"create topic {name!r}: {exc.args[0].str()}") from None
    return missing


def unpack(messages: list[Message]) -> tuple[list[RawRecord], list[int], list[KafkaError]]:
    """One pass over a polled batch: RawRecords, their Kafka CreateTimes (ms; 0 = unknown),
    and the error events (partition EOF dropped)."""
    records: list[RawRecord] = []
    created: list[int] = []
    errors: list[KafkaError] = []
    eof = KafkaError._PARTITION_EOF
    for m in messages:
        err = m.error()
        if err is None:
            records.append(RawRecord(m.value() or b"", m.key(), m.topic(), m.partition(),
                                     m.offset()))
            created.append(m.timestamp()[1])
        elif err.code() != eof:
            errors.append(err)
    return records, created, errors


def next_offsets(records: Sequence[RawRecord]) -> list[TopicPartition]:
    """The offsets to commit after these records: per (topic, partition), last offset + 1."""
    top: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= top.get(key, -1):
            top[key] = r.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(top.items())]


class DeadLetterProducer:
    """Sends undecodable records to the DLQ topic: value = the raw bytes, key = the original key,
    headers = reason + source topic/partition/offset. ``send`` returns only once the broker
    holds every record (so the consumer may commit past them)."""

    def __init__(self, bootstrap: str, topic: str, extra: Mapping[str, str] = {}) -> None:
        self.topic = topic
        self._producer = Producer(producer_config(bootstrap, extra, linger_ms=0))
        self._failed: list[str] = []
        self.sent = 0

    def send(self, letters: Sequence[DeadLetter], timeout: float = 60.0) -> int:
        if not letters:
            return 0
        for dl in letters:
            self._produce(dl)
        remaining = self._producer.flush(timeout)
        if remaining or self._failed:
            reason = self._failed[0] if self._failed else f"{remaining} not delivered in time"
            self._failed.clear()
            raise KafkaStageError(f"DLQ topic {self.topic!r}: {reason}")
        self.sent += len(letters)
        return len(letters)

    def _produce(self, dl: DeadLetter) -> None:
        headers = [(DLQ_REASON_HEADER, dl.reason.encode()),
                   ("fraudlake.topic", dl.topic.encode()),
                   ("fraudlake.partition", str(dl.partition).encode()),
                   ("fraudlake.offset", str(dl.offset).encode())]
        while True:
            try:
                self._producer.produce(self.topic, value=dl.raw, key=getattr(dl, "key", None),
                                       headers=headers, on_delivery=self._delivered)
                return
            except BufferError:
                self._producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed.append(err.str())

    def close(self) -> None:
        self._producer.flush(10)


def retry_commit(consumer, offsets: list[TopicPartition], attempts: int = 5) -> None:
    """Synchronous commit of explicit offsets, retried on transient broker errors."""
    for attempt in range(attempts):
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError._NO_OFFSET:
                return
            if not err.retriable() or attempt == attempts - 1:
                raise KafkaStageError(f"offset commit failed: {err.str()}") from None
            print(f"consume: commit failed ({err.str()}); retrying", file=sys.stderr)
            time.sleep(min(0.2 * 2 ** attempt, 5.0))
