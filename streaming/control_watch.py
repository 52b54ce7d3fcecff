"""A consumer's live view of the rule control topic, and its switch-record writer.

``ControlWatcher(bootstrap, topic)``: ``start(seed)`` creates the topic if missing, reads it to
its end (blocking) and, when no active set was ever published, publishes ``seed`` as active
(DESIGN.md: a consumer started with ``--rules`` seeds an empty control topic; otherwise the
topic wins). ``poll()`` folds whatever arrived since (never blocks; called once per loop
iteration, so a published set is seen within one poll timeout). ``record(switch)`` produces a
switch record and waits for the broker's acknowledgement. The topic is read by ``assign``
(no consumer group: every consumer reads all of it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from rules.model import RuleSet
from streaming import rules_control as rc
from streaming.kafka_io import KafkaStageError, client_config


class ControlWatcher:
    def __init__(self, bootstrap: str, topic: str, extra: Mapping[str, str] = {}) -> None:
        self.bootstrap, self.topic, self.extra = bootstrap, topic, dict(extra)
        self.state = rc.ControlState()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    def start(self, seed: RuleSet | None, timeout: float = 30.0) -> rc.ControlState:
        """Read the topic to its end (seeding it first if it has no active set); a broker
        that fails is a ``KafkaStageError`` naming the topic."""
        try:
            return self._start(seed, timeout)
        except KafkaStageError:
            raise
        except Exception as exc:  # librdkafka / broker errors: the environment failed
            raise KafkaStageError(f"rule control topic {self.topic!r}: {exc}") from None

    def _start(self, seed: RuleSet | None, timeout: float) -> rc.ControlState:
        rc.ensure_control_topic(self.bootstrap, self.topic, self.extra, timeout)
        self._consumer = Consumer(client_config(self.bootstrap, {
            "group.id": f"rules-watch-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "enable.partition.eof": False}, self.extra))
        self._consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self.catch_up(timeout)
        if seed is not None and "active" not in self.state.pointers:
            rc.send(self.bootstrap, self.topic,
                    [rc.set_record(seed), rc.pointer_record("active", seed.id)], self.extra)
            self.catch_up(timeout)
        return self.state

    def catch_up(self, timeout: float = 30.0) -> None:
        """Read until the end of the topic as it is now."""
        assert self._consumer is not None
        _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0),
                                                          timeout=timeout)
        deadline = time.monotonic() + timeout
        while self._position() < high:
            if time.monotonic() > deadline:
                raise KafkaStageError(f"control topic {self.topic!r}: not read to its end "
                                      f"within {timeout:g} s")
            self._fold(self._consumer.consume(500, timeout=0.2))

    def _position(self) -> int:
        assert self._consumer is not None
        pos = self._consumer.position([TopicPartition(self.topic, 0)])[0].offset
        return pos if pos >= 0 else 0

    def poll(self) -> None:
        """Fold what arrived (non-blocking)."""
        if self._consumer is not None:
            self._fold(self._consumer.consume(500, timeout=0))

    def _fold(self, messages) -> None:
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF and err.fatal():
                    raise KafkaStageError(f"control topic {self.topic!r}: {err.str()}")
                continue
            if m.value() is not None:
                rc.apply_record(self.state, m.value())

    def record(self, switch: rc.Switch, timeout: float = 30.0) -> None:
        """Write ``switch`` and wait until the broker holds it."""
        if self._producer is None:
            self._producer = Producer(client_config(self.bootstrap, {
                "enable.idempotence": True, "acks": "all", "linger.ms": 0}, self.extra))
        errors: list[str] = []

        def delivered(err, _msg) -> None:
            if err is not None:
                errors.append(err.str())

        key, value = rc.switch_record(switch)
        self._producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
        if self._producer.flush(timeout) or errors:
            raise KafkaStageError(f"control topic {self.topic!r}: switch record not acknowledged"
                               + (f": {errors[0]}" if errors else f" within {timeout:g} s"))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
