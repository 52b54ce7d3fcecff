"""The per-batch step shared by the embedded demo and the Kafka consumer.

``process_batch(records, engine)``: raw records → ``decode_batch`` → ``RuleEngine.process`` →
``BatchResult`` (every valid event with its decision columns and provenance, the flagged
subset with its evidence, the dead letters). Pure apart from the engine's state; the callers
own the sinks and commit offsets only after the sinks hold the result. ``add_rule_arguments``
is the ``--rules`` / ``--set`` pair of every live command (consume, replay, demo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from fraudlake.contract import FLAGGED
from streaming.decode import DeadLetter, RawRecord, decode_batch
from streaming.engine import RuleEngine


@dataclass(frozen=True)
class BatchResult:
    events_with_rules: pl.DataFrame  # contract + rule columns + _topic/_partition/_offset
    flagged: pl.DataFrame  # the rows of events_with_rules with flagged = true
    dead_letters: list[DeadLetter]

    @property
    def counts(self) -> dict[str, int]:
        """events, dead letters, one count per rule id and flagged (for metrics lines)."""
        df = self.events_with_rules
        rules = {c: int(df[c].sum()) for c in df.columns if df.schema[c] == pl.Boolean()
                 and c != "is_fraud"}
        return {"events": df.height, "dead_letters": len(self.dead_letters), **rules}


def process_batch(records: Sequence[RawRecord], engine: RuleEngine,
                  now: datetime | None = None) -> BatchResult:
    """Decode, validate and decide one micro-batch of raw records."""
    events, dead = decode_batch(records, now=now)
    decided = engine.process(events)
    return BatchResult(decided, decided.filter(pl.col(FLAGGED)), dead)


def offset_span(records: Sequence[RawRecord]) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) → (first, last) offset of the records, for lake file names."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for r in records:
        key = (r.topic, r.partition)
        lo, hi = spans.get(key, (r.offset, r.offset))
        spans[key] = (min(lo, r.offset), max(hi, r.offset))
    return spans
