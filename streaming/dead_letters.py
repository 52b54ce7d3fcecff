"""The dead-letter queue producer: undecodable records go to the DLQ topic, with why.

Each record's value is its raw bytes, its key the original key, and headers name the reason
(``DLQ_REASON_HEADER``) and the source topic, partition and offset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import KafkaError, Message, Producer

from fraudlake.settings import DEFAULT_RETRY_SECONDS
from streaming.decode import DeadLetter
from streaming.kafka_io import (
    BrokerWatch,
    KafkaStageError,
    flush_within,
    log_warning,
    producer_config,
)

DLQ_REASON_HEADER = "fraudlake.reason"


class DeadLetterProducer:
    """Sends undecodable records to the DLQ topic: value = the raw bytes, key = the original key,
    headers = reason + source topic/partition/offset. ``send`` returns only once the broker
    holds every record (so the consumer may commit past them). While the broker is away it
    keeps waiting (logging every 10 s) up to ``retry_seconds`` (``Settings.kafka_retry_seconds``,
    env ``KAFKA_RETRY_SECONDS``, default 120), then raises ``KafkaStageError``."""

    def __init__(self, bootstrap: str, topic: str, extra: Mapping[str, str] = {}, *,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS,
                 log: Callable[[str], None] | None = None) -> None:
        self.topic = topic
        self.retry_seconds = retry_seconds
        self._log = log or log_warning
        self.watch = BrokerWatch("DLQ producer", self._log)
        self._producer = Producer(producer_config(bootstrap, extra, linger_ms=0,
                                                  watch=self.watch))
        self._failed: list[str] = []
        self.sent = 0

    def send(self, letters: Sequence[DeadLetter], timeout: float | None = None) -> int:
        if not letters:
            return 0
        for dl in letters:
            self._produce(dl)
        remaining = flush_within(self._producer, self.retry_seconds if timeout is None
                                 else timeout, f"DLQ topic {self.topic!r}", self._log)
        if remaining or self._failed:
            reason = self._failed[0] if self._failed else f"{remaining} not delivered in time"
            self._failed.clear()
            raise KafkaStageError(f"DLQ topic {self.topic!r}: {reason}")
        self.watch.mark_up()
        self.sent += len(letters)
        return len(letters)

    def _produce(self, dl: DeadLetter) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
                   (DLQ_REASON_HEADER, dl.reason.encode()),
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
