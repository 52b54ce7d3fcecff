"""Decide one Kafka partition with the rule sets the control log assigns to its offsets.

``PartitionRules`` holds a partition's engines: the active set's and, while one runs, the
shadow set's. Which set decides an offset is what the partition's ``switch`` records on the
control topic say (``streaming.rules_control``): the latest switch of the role at or before
that offset. The log is the truth, so a consumer after a crash or rebalance, and
``streaming.replay --control``, decide every offset with the set that decided it before.

At the live edge (no switch recorded at or after the batch's first offset ``a``), when the
control topic's pointer for a role names another set than the one in force at ``a``, a
``switch:<topic>:<p>:<role>:<a>`` record is written (and acknowledged) BEFORE ``a`` is decided.
Two writers for one pointer publication: the first record wins (``ControlState.add_switch``).

A new set's engine starts from the running engine's state when that holds all it needs
(``covers``: same or fewer columns, horizon, history length); otherwise (a new kind, column or
a longer horizon) it is warmed up with every earlier event of the partition (``history``: the
lake below the batch in the consumer, the events seen so far in a replay) plus the batch's rows
before the switch. Either way per-user state carries over the change (a velocity window does
not reset) and the decisions equal those of one engine of the new set over the whole stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from fraudlake.contract import SHADOW_SCHEMA
from fraudlake.errors import EnvironmentFailure
from rules.model import RuleSet
from streaming.decode import RawRecord, decode_batch
from streaming.engine import RuleEngine
from streaming.pipeline import BatchResult
from streaming.rules_control import ControlState, Switch, now_iso

#: ``history(first_offset, columns)``: the partition's events below ``first_offset``, or None.
History = Callable[[int, Sequence[str]], pl.DataFrame | None]
#: Writes a switch record and returns once the broker has acknowledged it.
Recorder = Callable[[Switch], None]

#: The active decision columns renamed for the shadow set.
SHADOW_RENAME = {c.removeprefix("shadow_"): c for c in SHADOW_SCHEMA}


class RuleSwitchError(EnvironmentFailure, RuntimeError):
    """The control log names a rule set it does not hold."""


class PartitionRules:
    """The engines of one partition and the switch points that decide which one runs."""

    def __init__(self, topic: str, partition: int, control: Callable[[], ControlState],
                 history: History, fallback: RuleSet, record: Recorder | None = None) -> None:
        self.topic, self.partition = topic, partition
        self.control = control
        self.history = history
        self.fallback = fallback  # decides offsets no active switch covers (no control topic)
        self.record = record  # None: read-only (a replay never writes switches)
        self.engines: dict[str, RuleEngine | None] = {"active": None, "shadow": None}
        self.switched: list[Switch] = []  # written by this instance (logs, tests)

    # --- which set decides which offset ------------------------------------------------------
    def ids_at(self, role: str, offsets: np.ndarray) -> list[str | None]:
        """The set id in force for each offset (the fallback / no shadow where none is)."""
        switches = self.control().role_switches(self.topic, self.partition, role)
        default = self.fallback.id if role == "active" else None
        if not switches:
            return [default] * len(offsets)
        starts = np.array([s.offset for s in switches], dtype=np.int64)
        ids = [s.id for s in switches]
        idx = np.searchsorted(starts, offsets, side="right") - 1
        return [ids[i] if i >= 0 else default for i in idx.tolist()]

    def maybe_switch(self, role: str, first_offset: int) -> Switch | None:
        """Record a switch at ``first_offset`` when the role's pointer names another set than
        the one in force there and nothing is recorded from there on (the live edge)."""
        state = self.control()
        pointer = state.pointers.get(role)
        if self.record is None or pointer is None:
            return None
        switches = state.role_switches(self.topic, self.partition, role)
        if switches and switches[-1].offset >= first_offset:
            return None  # replaying a recorded range: the log decides
        in_force = switches[-1].id if switches else (
            self.fallback.id if role == "active" else None)
        if switches and in_force == pointer.id:
            return None
        if not switches and role == "shadow" and pointer.id is None:
            return None
        if pointer.id is not None and pointer.id not in state.sets:
            raise RuleSwitchError(f"control topic: the {role} pointer names {pointer.id}, "
                                  f"whose rule set record is missing")
        s = Switch(self.topic, self.partition, role, first_offset, pointer.id, now_iso(),
                   pointer.published_at)
        self.record(s)  # acknowledged before the offset is decided
        state.add_switch(s)
        self.switched.append(s)
        return s

    # --- deciding ------------------------------------------------------------------------------
    def start(self, committed: int) -> int:
        """Build the active engine in force at ``committed`` from the history below it; the
        number of history rows it was warmed with."""
        set_id = self.ids_at("active", np.array([committed]))[0]
        _engine, rows = self._engine("active", set_id, committed, None)
        return rows

    def decide(self, events: pl.DataFrame, first_offset: int) -> pl.DataFrame:
        """``events`` (decoded, with ``_offset``, in offset order; the batch starts at
        ``first_offset``) with the active set's decision columns and the shadow columns."""
        for role in ("active", "shadow"):
            self.maybe_switch(role, first_offset)
        offsets = events["_offset"].to_numpy() if events.height else np.zeros(0, np.int64)
        active = self._run("active", events, offsets, first_offset)
        shadow = self._run("shadow", events, offsets, first_offset)
        return active.hstack(shadow)

    def _run(self, role: str, events: pl.DataFrame, offsets: np.ndarray,
             first_offset: int) -> pl.DataFrame:
        ids = self.ids_at(role, offsets)
        parts: list[pl.DataFrame] = []
        for start, stop, set_id in _runs(ids):
            rows = events.slice(start, stop - start)
            engine, _n = self._engine(role, set_id, first_offset, events.head(start))
            if role == "active":
                assert engine is not None
                parts.append(engine.process(rows))
            elif engine is None:
                parts.append(pl.DataFrame(schema=SHADOW_SCHEMA).clear(rows.height))
            else:
                parts.append(engine.process(rows, with_evidence=False)
                             .select(list(SHADOW_RENAME)).rename(SHADOW_RENAME))
        if not parts:
            if role == "active":
                engine, _n = self._engine(role, ids[0] if ids else self._current(role),
                                          first_offset, None)
                assert engine is not None
                return engine.process(events)
            return pl.DataFrame(schema=SHADOW_SCHEMA)
        return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]

    def _current(self, role: str) -> str | None:
        engine = self.engines[role]
        return engine.rule_set_id if engine is not None else (
            self.fallback.id if role == "active" else None)

    def _engine(self, role: str, set_id: str | None, first_offset: int,
                before: pl.DataFrame | None) -> tuple[RuleEngine | None, int]:
        """The role's engine for ``set_id``: the running one, or a new one warmed with the
        history below ``first_offset`` plus ``before`` (the batch's earlier rows)."""
        engine = self.engines[role]
        if set_id is None:
            self.engines[role] = None
            return None, 0
        if engine is not None and engine.rule_set_id == set_id:
            return engine, 0
        old, engine = engine, RuleEngine(self._rule_set(set_id))
        past: list[pl.DataFrame | None]
        if old is not None and covers(old, engine):  # carry the state over: no lake read
            past = [old.state_frame()]
        else:  # a new kind, column or a longer horizon: every earlier event
            past = [self.history(first_offset, engine.state_columns), before]
        frames = [f.select(engine.state_columns) for f in past if f is not None and f.height]
        rows = sum(f.height for f in frames)
        if frames:
            engine.warm_up(pl.concat(frames, how="vertical_relaxed"))
        self.engines[role] = engine
        return engine, rows

    def _rule_set(self, set_id: str) -> RuleSet:
        if set_id == self.fallback.id:
            return self.fallback
        rs = self.control().sets.get(set_id)
        if rs is None:
            raise RuleSwitchError(f"control topic: no rule set record for {set_id} "
                                  f"({self.topic}[{self.partition}])")
        return rs


def covers(old: RuleEngine, new: RuleEngine) -> bool:
    """Whether ``old``'s state holds every row and column ``new`` would keep (its columns, a
    horizon, last-k and idle time at least as long, no column it needs beyond the event
    itself blanked), so ``new`` can start from it instead of from the lake."""
    history_cols = set(new.value_columns) - set(new.list_only)
    return (set(new.value_columns) <= set(old.value_columns)
            and not history_cols & set(old.list_only)
            and new.window_us <= old.window_us and new.last_k <= old.last_k
            and new.device_us <= old.device_us and new.idle_us <= old.idle_us)


def process_partition_batch(records: Sequence[RawRecord], rules: PartitionRules) -> BatchResult:
    """``pipeline.process_batch`` for one partition's records (offset order) under its
    switch log: decode, then decide with the set(s) in force (+ the shadow columns)."""
    events, dead = decode_batch(records)
    decided = rules.decide(events, records[0].offset)
    return BatchResult(decided, decided.filter(pl.col("flagged")), dead)


def _runs(ids: list[str | None]) -> list[tuple[int, int, str | None]]:
    """Maximal runs of equal ids: (start, stop, id)."""
    out: list[tuple[int, int, str | None]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[start]:
            out.append((start, i, ids[start]))
            start = i
    return out
