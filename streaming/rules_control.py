"""The rule control topic (``rules.control``): which rule sets exist, which is active, which
shadows it, and where each consumer partition switched.

One compacted, single-partition topic (created here, never auto-created). Records are JSON,
keyed so that compaction keeps exactly what is needed:

* ``set:<rule-set id>`` → the resolved set (list files inlined; ``RuleSet.to_dict``);
* ``role:active`` / ``role:shadow`` → the id in force for that role (``null`` = no shadow) and
  when it was published;
* ``switch:<topic>:<partition>:<role>:<offset>`` → written by a consumer BEFORE it decides
  ``offset`` of that partition with a newly published set: the first offset the set decided.
  A restarted consumer and ``streaming.replay`` read these, so every event is decided by the
  same set whoever decides it.

Pure record building/reading here; the Kafka I/O is the thin ``publish`` / ``read_control``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fraudlake.settings import DEFAULT_RULES_TOPIC
from rules.model import RuleSet, RuleSetError

ROLES = ("active", "shadow")
DEFAULT_TOPIC = DEFAULT_RULES_TOPIC
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


@dataclass(frozen=True)
class Pointer:
    role: str
    id: str | None
    published_at: str


@dataclass(frozen=True)
class Switch:
    """``id`` decides ``role`` for ``topic``/``partition`` from ``offset`` on."""

    topic: str
    partition: int
    role: str
    offset: int
    id: str | None
    at: str
    cause: str = ""  # published_at of the pointer record that caused it (one switch per cause)

    @property
    def key(self) -> tuple:
        """Switches with the same key are one decision: the first recorded wins."""
        return (self.topic, self.partition, self.role, self.id, self.cause)


@dataclass
class ControlState:
    """Everything the control topic says, read from its beginning."""

    sets: dict[str, RuleSet] = field(default_factory=dict)
    pointers: dict[str, Pointer] = field(default_factory=dict)
    switches: list[Switch] = field(default_factory=list)
    history: list[Pointer] = field(default_factory=list)  # every pointer record still kept
    _switch_keys: set[tuple] = field(default_factory=set, repr=False)

    def add_switch(self, s: Switch) -> bool:
        """Record ``s`` unless a switch with its key is known (first writer wins); True if new."""
        if s.key in self._switch_keys:
            return False
        self._switch_keys.add(s.key)
        self.switches.append(s)
        return True

    def role_switches(self, topic: str, partition: int, role: str) -> list[Switch]:
        """The partition's switches of ``role``, by offset (the later record at one offset)."""
        at: dict[int, Switch] = {}
        for s in self.switches:
            if (s.topic, s.partition, s.role) == (topic, partition, role):
                at[s.offset] = s
        return [at[o] for o in sorted(at)]

    def current(self, role: str) -> RuleSet | None:
        p = self.pointers.get(role)
        return self.sets.get(p.id) if p and p.id else None

    def set_at(self, topic: str, partition: int, role: str, offset: int) -> str | None | bool:
        """The id a recorded switch assigns to ``offset`` (the latest switch at or before it);
        False when no switch of this partition covers it."""
        best: Switch | None = None
        for s in self.switches:
            if (s.topic, s.partition, s.role) == (topic, partition, role) and s.offset <= offset:
                if best is None or s.offset >= best.offset:
                    best = s
        return best.id if best is not None else False

    def partition_switches(self, topic: str, partition: int) -> list[Switch]:
        return sorted((s for s in self.switches if (s.topic, s.partition) == (topic, partition)),
                      key=lambda s: (s.offset, s.role))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- records ------------------------------------------------------------------------------------

def set_record(rule_set: RuleSet) -> tuple[bytes, bytes]:
    value = {"type": "rule_set", "id": rule_set.id, "rule_set": rule_set.to_dict(),
             "published_at": now_iso()}
    return f"set:{rule_set.id}".encode(), _dumps(value)


def pointer_record(role: str, rule_set_id: str | None) -> tuple[bytes, bytes]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    value = {"type": "pointer", "role": role, "id": rule_set_id, "published_at": now_iso()}
    return f"role:{role}".encode(), _dumps(value)


def switch_record(s: Switch) -> tuple[bytes, bytes]:
    value = {"type": "switch", "topic": s.topic, "partition": s.partition, "role": s.role,
             "offset": s.offset, "id": s.id, "at": s.at, "cause": s.cause}
    return f"switch:{s.topic}:{s.partition}:{s.role}:{s.offset}".encode(), _dumps(value)


def _dumps(value: Mapping) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def fold(records: Iterable[tuple[bytes | None, bytes | None]],
         state: ControlState | None = None) -> ControlState:
    """The control state from the topic's records in offset order (later keys win; of two
    switches with one key, the first). Folds into ``state`` when given (incremental reads)."""
    state = state if state is not None else ControlState()
    for _key, value in records:
        if value is not None:  # None: a tombstone
            apply_record(state, value)
    return state


def apply_record(state: ControlState, value: bytes) -> None:
    """Fold one record's value into ``state``; what is not a control record is ignored."""
    try:
        doc = json.loads(value)
    except ValueError:
        return  # not ours; never fatal
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "rule_set":
        try:
            rs = RuleSet.from_dict(doc["rule_set"], f"control:{doc.get('id')}")
        except (RuleSetError, KeyError, TypeError):
            return
        state.sets[rs.id] = rs
    elif kind == "pointer" and doc.get("role") in ROLES:
        p = Pointer(doc["role"], doc.get("id"), str(doc.get("published_at", "")))
        state.pointers[p.role] = p
        state.history.append(p)
    elif kind == "switch":
        try:
            state.add_switch(Switch(str(doc["topic"]), int(doc["partition"]), str(doc["role"]),
                                    int(doc["offset"]), doc.get("id"), str(doc.get("at", "")),
                                    str(doc.get("cause", ""))))
        except (KeyError, TypeError, ValueError):
            return


# --- Kafka I/O ----------------------------------------------------------------------------------

def ensure_control_topic(bootstrap: str, topic: str, extra: Mapping[str, str] = {},
                         timeout: float = 30.0) -> bool:
    """Create the compacted single-partition control topic if missing; True when created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from streaming.kafka_io import client_config

    admin = AdminClient(client_config(bootstrap, extra=extra))
    if topic in admin.list_topics(timeout=timeout).topics:
        return False
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                        config=dict(TOPIC_CONFIG))],
                              operation_timeout=timeout)[topic]
    try:
        fut.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        return False
    return True


def send(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]],
         extra: Mapping[str, str] = {}, timeout: float = 30.0) -> None:
    """Produce ``records`` in order (idempotent, acks=all) and wait until all are acknowledged."""
    from confluent_kafka import Producer

    from streaming.kafka_io import client_config

    errors: list[str] = []
    producer = Producer(client_config(bootstrap, {"enable.idempotence": True, "acks": "all"},
                                      extra))

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(err.str())

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    left = producer.flush(timeout)
    if left or errors:
        raise RuntimeError(f"control topic {topic!r}: "
                           + (errors[0] if errors else f"{left} record(s) not acknowledged "
                              f"within {timeout:g} s"))


def publish(bootstrap: str, topic: str, rule_set: RuleSet, role: str = "active",
            extra: Mapping[str, str] = {}) -> None:
    """Store the set and point ``role`` at it (the set record first, so a reader that sees the
    pointer always has the set)."""
    ensure_control_topic(bootstrap, topic, extra)
    send(bootstrap, topic, [set_record(rule_set), pointer_record(role, rule_set.id)], extra)


def clear(bootstrap: str, topic: str, role: str, extra: Mapping[str, str] = {}) -> None:
    ensure_control_topic(bootstrap, topic, extra)
    send(bootstrap, topic, [pointer_record(role, None)], extra)


def read_records(bootstrap: str, topic: str, extra: Mapping[str, str] = {},
                 timeout: float = 15.0) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of the control topic from its beginning up to its end now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streaming.kafka_io import client_config

    consumer = Consumer(client_config(bootstrap, {
        "group.id": "fraudlake-rules-reader", "enable.auto.commit": False,
        "enable.partition.eof": True}, extra))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        if high <= low:
            return []
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return out
                    raise RuntimeError(f"control topic {topic!r}: {err.str()}")
                out.append((m.key(), m.value()))
                if (m.offset() or 0) >= high - 1:
                    return out
        raise TimeoutError(f"control topic {topic!r}: not read to its end within {timeout:g} s")
    finally:
        consumer.close()


def read_control(bootstrap: str, topic: str, extra: Mapping[str, str] = {},
                 timeout: float = 15.0) -> ControlState:
    """The control state (an absent topic reads as empty)."""
    from confluent_kafka.admin import AdminClient

    from streaming.kafka_io import client_config

    admin = AdminClient(client_config(bootstrap, extra=extra))
    if topic not in admin.list_topics(timeout=timeout).topics:
        return ControlState()
    return fold(read_records(bootstrap, topic, extra, timeout))
