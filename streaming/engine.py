"""The streaming rule engine: one rule set (``rules.model.RuleSet``), incremental per user.

``RuleEngine(rule_set).process(events)`` returns the same rows (input order, extra columns
kept) plus one Boolean column per rule id (file order), ``score`` (double), ``flagged``,
``rule_set_id``, ``rules_fired`` (the ids that fired, file order) and ``evidence`` (JSON text
of ``{rule_id: {...}}`` for flagged rows, null otherwise; see ``streaming.evidence``).
Decisions are exactly those of the backtest over the whole history, whatever the micro-batch
boundaries: per user, events ordered by ``(ts, transaction_id)``, decided causally.

How: the batch and its users' state rows are sorted together by ``(user_id, ts,
transaction_id)`` and decided in one call of ``rules.kernels.decide`` — the same vectorised
kernels as the fast backtest engine — with the state rows passed as *context* (history, not
decided again). The state keeps, per user, what ``rules.kernels.retained_compact`` says a later
event may still need: the rows within ``window_us`` of the user's last event (the longest
velocity window), always the last ``last_k`` rows (the previous event for impossible travel,
the last ``history`` amounts for the median, new_device's ``min_history``) and, older than
that, only each device's latest use within ``device_us`` (the new-device lookback): so a batch
carries ~1.4 state rows per event on rules/example.toml instead of ~4.7 (a month of rows);
only the columns the rule set reads (``rules.kernels.needed_columns``, plus ``city`` for travel
evidence), plus each row's own decisions. Users idle for more than ``idle_seconds`` (>= the
window and the lookback) behind the watermark (the largest ts seen) keep only their last
``last_k`` rows: an in-order later event could not see the others anyway, so eviction changes
no decision except for a *late* event.

State lives in ``streaming.engine_state.UserRows`` (append-only rows + a user index: a batch
costs O(batch) amortised); ``snapshot()`` / ``restore()`` / ``warm_up()`` carry it across
restarts. A field only ``in_list`` rules read is kept as null in the state: only the event's
own value matters to them.

Late events (older than the user's last processed event, from an earlier batch) cannot change
decisions already emitted: they are decided against the state held and counted in
``metrics().late_events``. A redelivered event (same user, ts and transaction_id as a state
row) gets the decisions stored with that row and is counted in ``duplicate_events``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from fraudlake.contract import EVENT_SCHEMA
from rules import kernels
from rules.kernel_history import device_codes
from rules.model import RuleSet, load_rule_set
from streaming.engine_state import KEY, KEY_SCHEMA, EngineState, UserRows
from streaming.evidence import evidence_json

__all__ = ["DECISION_COLUMNS", "EngineMetrics", "EngineState", "RuleEngine"]

_US_PER_S = 1_000_000
#: Columns ``process`` adds after the per-rule Booleans (an input's own copies are replaced).
DECISION_COLUMNS = ("score", "flagged", "rule_set_id", "rules_fired", "evidence")


@dataclass(frozen=True)
class EngineMetrics:
    events: int
    late_events: int
    duplicate_events: int
    state_rows: int
    users: int
    watermark: int | None  # largest ts seen, epoch microseconds


_BITS = 62  # rules per int64 bit-mask column of the state (each row's own decisions)


def _mask_columns(n_rules: int) -> list[str]:
    return [f"_fired{i}" for i in range(-(-n_rules // _BITS))]


def pack_fired(fired: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Per-rule Booleans → int64 bit masks, ``_BITS`` rules per mask (rule i: bit i % _BITS)."""
    masks = []
    for lo in range(0, len(fired), _BITS):
        mask = np.zeros(n, dtype=np.int64)
        for bit, arr in enumerate(fired[lo:lo + _BITS]):
            mask |= arr.astype(np.int64) << bit
        masks.append(mask)
    return masks


def unpack_fired(masks: list[np.ndarray], n_rules: int) -> list[np.ndarray]:
    return [(masks[i // _BITS] >> (i % _BITS)) & 1 == 1 for i in range(n_rules)]


def fired_lists(fired: list[np.ndarray], rule_ids: tuple[str, ...], n: int) -> pl.Series:
    """``rules_fired``: the ids that fired per row (file order), built once per distinct
    combination (there are few) and gathered."""
    if n == 0:
        return pl.Series("rules_fired", [], dtype=pl.List(pl.String))
    masks = pack_fired(fired, n)
    if len(masks) == 1:  # up to _BITS rules: a 1-D unique (the axis=0 one sorts row views)
        flat, inverse = np.unique(masks[0], return_inverse=True)
        combos = flat[:, None]
    else:
        combos, inverse = np.unique(np.stack(masks, axis=1), axis=0, return_inverse=True)
    lists = [[rid for i, rid in enumerate(rule_ids)
              if (int(combo[i // _BITS]) >> (i % _BITS)) & 1] for combo in combos]
    return pl.Series("rules_fired", lists, dtype=pl.List(pl.String)).gather(
        pl.Series(inverse.reshape(-1), dtype=pl.Int64))


class RuleEngine:
    """Incremental, vectorised engine over one rule set; one per stream of (some) users."""

    def __init__(self, rule_set: RuleSet | None = None, idle_seconds: float = 3600) -> None:
        self.rule_set = rule_set if rule_set is not None else load_rule_set()
        self.rule_set_id = self.rule_set.id
        self.rule_ids = self.rule_set.rule_ids
        self.units, self.need_units, self.scale = self.rule_set.weight_units()
        self.retention = kernels.retention(self.rule_set)
        self.window_us = int(self.retention.window_us)  # the longest velocity window
        self.device_us = int(self.retention.device_us)  # the longest new_device lookback
        self.last_k = max(int(self.retention.last_k), 1)
        self.idle_us = max(int(idle_seconds * _US_PER_S), int(self.retention.horizon_us))
        needed = set(kernels.needed_columns(self.rule_set)) - {"ts", "user_id", "transaction_id"}
        if any(r.kind == "impossible_travel" for r in self.rule_set.rules):
            needed.add("city")  # the previous event's city, for the travel evidence
        self.value_columns = tuple(c for c in EVENT_SCHEMA if c in needed)
        history_reads = {"channel", "category"} | (
            {"device_id"} if any(r.kind == "new_device" for r in self.rule_set.rules) else set()
        ) | ({"city"} if "city" in needed and any(
            r.kind == "impossible_travel" for r in self.rule_set.rules) else set())
        self.list_only = tuple(c for c in self.value_columns if c not in history_reads and c in {
            r.params["field"] for r in self.rule_set.rules if r.kind == "in_list"})
        self.schema: dict[str, pl.DataType] = {
            **KEY_SCHEMA, **{c: EVENT_SCHEMA[c] for c in self.value_columns},
            **dict.fromkeys(_mask_columns(len(self.rule_ids)), pl.Int64())}
        self._state = UserRows(self.schema)
        self._watermark: int | None = None
        self._evicted_at: int | None = None
        self._events = self._late = self._dupes = 0

    # -- public API -----------------------------------------------------------------------
    def process(self, events: pl.DataFrame, with_evidence: bool = True) -> pl.DataFrame:
        """The rows of ``events`` (same order, all columns) plus the decision columns
        (``evidence`` all null when ``with_evidence`` is false: a shadow set needs none)."""
        fired, evidence = self._advance(events, with_evidence=with_evidence)
        units = np.zeros(events.height, dtype=np.int64)
        for rid, u in zip(self.rule_ids, self.units, strict=True):
            units += fired[rid].astype(np.int64) * u
        flagged = units >= self.need_units
        drop = set(self.rule_ids) | set(DECISION_COLUMNS)
        n = events.height
        fired_cols = [pl.Series(rid, fired[rid], dtype=pl.Boolean) for rid in self.rule_ids]
        ev = np.full(n, None, dtype=object)
        if with_evidence:
            ev[flagged] = evidence(np.flatnonzero(flagged))
        kept = events.select([c for c in events.columns if c not in drop])
        return kept.hstack([
            *fired_cols,
            pl.Series("score", units / self.scale, dtype=pl.Float64),
            pl.Series("flagged", flagged, dtype=pl.Boolean),
            pl.repeat(self.rule_set_id, n, dtype=pl.String, eager=True).alias("rule_set_id"),
            fired_lists([fired[r] for r in self.rule_ids], self.rule_ids, n),
            pl.Series("evidence", ev.tolist(), dtype=pl.String),
        ])

    def warm_up(self, events: pl.DataFrame) -> None:
        """Feed earlier events (e.g. read back from the lake) into the state; emit nothing.

        Needs ``user_id, ts, transaction_id`` and the columns the rule set reads
        (``state_columns``); any order, any size.
        """
        self._advance(events, with_evidence=False)

    @property
    def state_columns(self) -> tuple[str, ...]:
        """The event columns ``warm_up`` reads."""
        return ("user_id", "ts", "transaction_id", *self.value_columns)

    def snapshot(self) -> EngineState:
        return EngineState(self._state.frame().clone(), self._watermark, self.rule_set_id)

    def restore(self, state: EngineState) -> None:
        if state.rule_set_id and state.rule_set_id != self.rule_set_id:
            raise ValueError(f"engine state of rule set {state.rule_set_id}, not "
                             f"{self.rule_set_id}")
        self._state = UserRows(self.schema, state.rows)
        self._watermark = state.watermark

    def metrics(self) -> EngineMetrics:
        """Counters and state size (the size merges the state overlay: O(state))."""
        return EngineMetrics(self._events, self._late, self._dupes, self._state.height,
                             self._state.n_users(), self._watermark)

    def state_frame(self) -> pl.DataFrame:
        """The state rows with a readable ``ts`` column (for inspection and tests)."""
        return self._state.frame().with_columns(
            ts=pl.from_epoch("ts_us", "us").dt.replace_time_zone("UTC"))

    # -- the incremental step ---------------------------------------------------------------
    def _keyed(self, events: pl.DataFrame) -> pl.DataFrame:
        """The state columns of ``events``, typed, with ``ts_us`` and the row number."""
        n = events.height
        values = [pl.col(c).cast(EVENT_SCHEMA[c]) if c in events.columns
                  else pl.lit(None, EVENT_SCHEMA[c]).alias(c) for c in self.value_columns]
        return events.select(
            pl.col("user_id").cast(pl.Int64), pl.col("ts").dt.epoch("us").alias("ts_us"),
            pl.col("transaction_id").cast(pl.String), *values,
            *[pl.lit(0, pl.Int64).alias(c) for c in _mask_columns(len(self.rule_ids))],
            _row=pl.int_range(n, dtype=pl.Int64))

    def _advance(self, events: pl.DataFrame, with_evidence: bool):
        """Decide events against the state and update it.

        Returns (rule id → bool[n] in input order, evidence(positions) → list of JSON texts).
        Rows of the batch and the users' state rows are sorted together by ``(user, ts,
        transaction_id, state first)``; a row equal in key to the row before it is a duplicate
        (redelivery) and takes that row's decisions.
        """
        n = events.height
        batch = self._keyed(events)
        users = np.unique(batch["user_id"].to_numpy())
        state = self._state.rows_of(users)
        both = pl.concat([state.with_columns(_row=pl.lit(-1, pl.Int64)), batch],
                         how="vertical_relaxed").sort([*KEY, "_row"])
        dup_np = duplicate_keys(both)
        real = both.filter(pl.Series(~dup_np)) if dup_np.any() else both
        rows_real = real["_row"].to_numpy()
        context = rows_real < 0
        decided = kernels.decide(real, self.rule_set, context, evidence=False)
        fired_real: dict[str, np.ndarray] = {
            rid: np.asarray(decided.fired[rid], dtype=bool).copy() for rid in self.rule_ids}
        if context.any():  # state rows keep the decisions they were given
            stored = unpack_fired([real[c].to_numpy()[context] for c in
                                   _mask_columns(len(self.rule_ids))], len(self.rule_ids))
            for rid, arr in zip(self.rule_ids, stored, strict=True):
                fired_real[rid][context] = arr
        # duplicates take the decisions of the row they repeat (the previous real row)
        src = np.maximum.accumulate(np.where(~dup_np, np.arange(both.height), 0))
        real_pos = (np.cumsum(~dup_np) - 1)[src]
        rows = both["_row"].to_numpy()
        is_new = rows >= 0
        out_index = np.empty(n, dtype=np.int64)  # input row -> position in `real`
        out_index[rows[is_new]] = real_pos[is_new]
        fired = {rid: fired_real[rid][out_index] for rid in self.rule_ids}
        self._events += n
        self._dupes += int((dup_np & is_new).sum())
        self._late += _count_late(real["user_id"].to_numpy(), context)
        masks = pack_fired([fired_real[r] for r in self.rule_ids], real.height)
        self._store(real.with_columns(
            [pl.Series(c, m) for c, m in zip(_mask_columns(len(self.rule_ids)), masks,
                                              strict=True)]), users)

        def evidence(positions: np.ndarray) -> list[str]:
            if not with_evidence or not len(positions):
                return []
            return evidence_json(real, out_index[positions], fired_real, self.rule_set)
        return fired, evidence

    def _store(self, real: pl.DataFrame, users: np.ndarray) -> None:
        """Replace the batch users' state rows by the rows retention keeps; evict idle users."""
        ts = real["ts_us"].to_numpy()
        kept = real.filter(pl.Series(self._retained(real))).select(list(self.schema))
        if self.list_only:
            kept = kept.with_columns(pl.lit(None, EVENT_SCHEMA[c]).alias(c)
                                     for c in self.list_only)
        self._state.replace(users, kept)
        if real.height:
            top = int(ts.max())
            self._watermark = top if self._watermark is None else max(self._watermark, top)
        self._maybe_evict()

    def _maybe_evict(self) -> None:
        """Idle users (last event older than watermark - idle) keep only their last rows."""
        mark = self._watermark
        if mark is None or (self._evicted_at is not None
                            and mark - self._evicted_at < self.idle_us // 4):
            return
        self._evicted_at = mark
        floor = mark - self.idle_us
        self._state.filter_all(lambda rows: self._retained(rows, idle_before=floor))

    def _retained(self, rows: pl.DataFrame, idle_before: int | None = None) -> np.ndarray:
        """Rows (sorted by KEY) the state keeps (``rules.kernels.retained_compact``)."""
        device = None
        if self.device_us and "device_id" in rows.columns:
            device = device_codes(rows["device_id"].to_arrow())[0]
        return kernels.retained_compact(rows["user_id"].to_numpy(), rows["ts_us"].to_numpy(),
                                        device, self.retention, idle_before)


def duplicate_keys(rows: pl.DataFrame) -> np.ndarray:
    """Per row (sorted by ``KEY``): equal in ``KEY`` to the row before it."""
    user, ts = rows["user_id"].to_numpy(), rows["ts_us"].to_numpy()
    dup = np.zeros(rows.height, dtype=bool)
    if rows.height < 2:
        return dup
    at = np.flatnonzero((user[1:] == user[:-1]) & (ts[1:] == ts[:-1])) + 1
    if len(at):
        tid = rows["transaction_id"]
        same = (tid.gather(pl.Series(at, dtype=pl.Int64))
                == tid.gather(pl.Series(at - 1, dtype=pl.Int64))).fill_null(False)
        dup[at] = same.to_numpy()
    return dup


def _count_late(user: np.ndarray, is_state: np.ndarray) -> int:
    """New rows (of sorted, deduplicated rows) followed by a state row of the same user."""
    if not is_state.any():
        return 0
    n = len(user)
    gid = np.cumsum(np.r_[True, user[1:] != user[:-1]]) - 1
    seg_end = np.flatnonzero(np.r_[user[1:] != user[:-1], True])[gid]
    idx = np.where(is_state, np.arange(n), n)
    next_state = np.minimum.accumulate(idx[::-1])[::-1]  # first state row at or after i
    after = np.r_[next_state[1:], n]
    return int((~is_state & (after <= seg_end)).sum())
