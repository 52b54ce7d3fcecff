"""The streaming rule engine: docs/design.md's four rules, incremental per user, over micro-batches.

``RuleEngine.process(events)`` returns the same rows (input order, extra columns kept) plus the
Boolean columns ``high_amount, high_frequency, unusual_hour, geo_mismatch, flagged``. Decisions
are exactly those of the batch SQL over the whole history, whatever the micro-batch boundaries:

* per user, events are ordered by ``(ts, transaction_id)`` and decided causally; within one
  batch the arrival order does not matter;
* ``high_amount`` and ``unusual_hour`` need only the row (decimal compare; the local hour of
  ``ts + utc_offset_min`` with a start > end window wrapping past midnight);
* ``high_frequency`` counts the user's events ``e' <= e`` with ``e'.ts >= e.ts - window``
  (inclusive, ties by ``transaction_id``); ``geo_mismatch`` compares with the immediately
  preceding event (haversine, ``R = earth_radius_km``; hours floored at ``min_hours``).

How: the batch and its users' state rows are sorted together by ``(user_id, ts,
transaction_id)``; the window count is one binary search per row on a (user, ts) key (no
per-user loop), the previous event is a shift within the user; numpy does the arithmetic and
the state rows are stripped. Measured against a per-event Python loop in
``bench/bench_engine.py`` (the vectorised engine is kept because it is faster from micro-batches
of about a thousand events up; below that the fixed per-batch cost of ~15 Polars calls wins).

State (``streaming.engine_state.UserRows``: sorted rows in a base table plus a small overlay,
so a micro-batch costs O(batch) amortised, not O(state); ``snapshot()`` / ``restore()`` /
``warm_up()`` carry it across restarts): per user, the newest ``count - 1`` events within
``window`` of the user's last event (that is all the frequency rule can ever need for a later
event) and always the last event (ts, transaction_id, lat, lon; all the geo rule needs). Users
idle for more than ``idle_seconds`` (>= window) behind the watermark (the largest ts seen) keep
only their last event, ~60 bytes. Because the last location is kept for every user, eviction
never changes a geo decision; it could change a frequency decision only for an event arriving
more than ``idle_seconds - window`` behind the watermark, i.e. a *late* event.

Late events (older than the user's last processed event, from an earlier batch) cannot change
decisions already emitted. They are decided against the state held (which may lack their true
predecessors) and counted in ``metrics().late_events``. A redelivered event (same user, ts and
transaction_id as a state row) gets the decisions stored with that row and is counted in
``duplicate_events``; it is not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from fraudlake.contract import FLAGGED, RULE_NAMES
from queries.params import DEFAULT_PARAMS, RuleParams
from streaming.engine_state import KEY as _KEY
from streaming.engine_state import STATE_SCHEMA, EngineState, UserRows

__all__ = ["EngineMetrics", "EngineState", "RuleEngine", "STATE_SCHEMA", "window_counts",
           "impossible_travel", "haversine_km", "keep_mask"]

_US_PER_S = 1_000_000


@dataclass(frozen=True)
class EngineMetrics:
    events: int
    late_events: int
    duplicate_events: int
    state_rows: int
    users: int
    watermark: int | None  # largest ts seen, epoch microseconds


class RuleEngine:
    """Incremental, vectorised rule engine; one instance per stream of (a subset of) users."""

    def __init__(self, params: RuleParams = DEFAULT_PARAMS, idle_seconds: float = 3600) -> None:
        self.params = params
        window = params.high_frequency_window_seconds
        self.idle_us = int(max(idle_seconds, window) * _US_PER_S)
        self.window_us = window * _US_PER_S
        self.keep_per_user = max(params.high_frequency_count - 1, 1)
        self._state = UserRows()
        self._watermark: int | None = None
        self._evicted_at: int | None = None
        self._events = self._late = self._dupes = 0

    # -- public API -----------------------------------------------------------------------
    def process(self, events: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``events`` (same order, all columns) plus the rule columns."""
        hf, geo = self._advance(events.select(
            pl.col("user_id"), "transaction_id", "lat", "lon", _ts=_epoch_us()))
        keep = [c for c in events.columns if c not in (*RULE_NAMES, FLAGGED)]
        return events.select(keep).with_columns(
            high_amount=pl.col("amount") > self.params.high_amount_threshold,
            high_frequency=pl.Series(hf, dtype=pl.Boolean),
            unusual_hour=_unusual_hour(self.params),
            geo_mismatch=pl.Series(geo, dtype=pl.Boolean),
        ).with_columns(pl.any_horizontal(*RULE_NAMES).alias(FLAGGED))

    def warm_up(self, events: pl.DataFrame) -> None:
        """Feed earlier events (e.g. read back from the lake) into the state; emit nothing.

        Needs only ``user_id, ts, transaction_id, lat, lon``; any order, any size.
        """
        self._advance(events.select(
            pl.col("user_id"), "transaction_id", "lat", "lon", _ts=_epoch_us()))

    def snapshot(self) -> EngineState:
        return EngineState(self._state.frame().clone(), self._watermark)

    def restore(self, state: EngineState) -> None:
        self._state = UserRows(state.rows)
        self._watermark = state.watermark

    def metrics(self) -> EngineMetrics:
        """Counters and state size (the size merges the state overlay: O(state))."""
        return EngineMetrics(self._events, self._late, self._dupes, self._state.height,
                             self._state.n_users(), self._watermark)

    def state_frame(self) -> pl.DataFrame:
        """The state rows with a readable ``ts`` column (for inspection and tests)."""
        return self._state.frame().with_columns(
            ts=pl.from_epoch("_ts", "us").dt.replace_time_zone("UTC"))

    # -- the incremental step ---------------------------------------------------------------
    def _advance(self, keys: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Decide keyed events against the state and update it; (hf, geo) in input order.

        Rows of the batch and the users' state rows are sorted together by
        ``(user, ts, transaction_id, state first)``; a row equal in key to the row before it is
        a duplicate (redelivery) and takes that row's decisions.
        """
        n = keys.height
        batch = keys.select(
            pl.col("user_id").cast(pl.Int64), pl.col("_ts").cast(pl.Int64),
            pl.col("transaction_id").cast(pl.String), pl.col("lat").cast(pl.Float64),
            pl.col("lon").cast(pl.Float64),
            high_frequency=pl.lit(None, pl.Boolean), geo_mismatch=pl.lit(None, pl.Boolean),
            _row=pl.int_range(n, dtype=pl.Int64), _new=pl.lit(True),
        )
        users = np.unique(batch["user_id"].to_numpy())
        state = self._state.rows_of(users)
        both = pl.concat(
            [state.with_columns(_row=pl.lit(-1, pl.Int64), _new=pl.lit(False)), batch],
            how="vertical_relaxed",
        ).sort([*_KEY, "_new"])
        dup = both.select(pl.all_horizontal(
            [(pl.col(k) == pl.col(k).shift(1)).fill_null(False) for k in _KEY])).to_series()
        dup_np = dup.to_numpy()
        real = both.filter(~dup)
        hf, geo = self._decide(real)
        # duplicates take the decisions of the row they repeat (the previous real row)
        src = np.maximum.accumulate(np.where(~dup_np, np.arange(both.height), 0))
        real_pos = np.cumsum(~dup_np) - 1
        hf_all, geo_all = hf[real_pos[src]], geo[real_pos[src]]
        rows = both["_row"].to_numpy()
        is_new = rows >= 0
        out_hf = np.zeros(n, dtype=bool)
        out_geo = np.zeros(n, dtype=bool)
        out_hf[rows[is_new]] = hf_all[is_new]
        out_geo[rows[is_new]] = geo_all[is_new]
        self._events += n
        self._dupes += int((dup_np & is_new).sum())
        self._late += _count_late(real["user_id"].to_numpy(), real["_row"].to_numpy() < 0)
        self._store(real.with_columns(high_frequency=pl.Series(hf), geo_mismatch=pl.Series(geo)),
                    users)
        return out_hf, out_geo

    def _decide(self, real: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The two stateful rules for deduplicated sorted rows; state rows keep stored values."""
        user = real["user_id"].to_numpy()
        ts = real["_ts"].to_numpy()
        hf = window_counts(user, ts, self.window_us) >= self.params.high_frequency_count
        geo = impossible_travel(user, ts, real["lat"].to_numpy(), real["lon"].to_numpy(),
                                self.params)
        stored = real["_row"].to_numpy() < 0
        if stored.any():
            hf[stored] = real["high_frequency"].to_numpy()[stored]
            geo[stored] = real["geo_mismatch"].to_numpy()[stored]
        return hf, geo

    def _store(self, real: pl.DataFrame, users: np.ndarray) -> None:
        """Replace the batch users' state rows by their pruned rows; evict idle users."""
        user = real["user_id"].to_numpy()
        ts = real["_ts"].to_numpy()
        kept = real.filter(pl.Series(
            keep_mask(user, ts, self.keep_per_user, self.window_us))).select(list(STATE_SCHEMA))
        self._state.replace(users, kept)
        if real.height:
            top = int(ts.max())
            self._watermark = top if self._watermark is None else max(self._watermark, top)
        self._maybe_evict()

    def _maybe_evict(self) -> None:
        """Idle users (last event older than watermark - idle) keep only their last event."""
        mark = self._watermark
        if mark is None or self.keep_per_user == 1 or (
                self._evicted_at is not None and mark - self._evicted_at < self.idle_us // 4):
            return
        self._evicted_at = mark
        floor = mark - self.idle_us
        self._state.filter_all(lambda user, ts: keep_mask(
            user, ts, 1, floor, absolute=True, also=self.keep_per_user))


# -- pure, vectorised rule kernels ----------------------------------------------------------
def window_counts(user: np.ndarray, ts: np.ndarray, window_us: int) -> np.ndarray:
    """For rows sorted by (user, ts, tid): how many of the user's rows up to and including
    this one have ``ts >= this.ts - window_us``.

    Fast path: key = user group * span + ts, so a binary search for ``key - window_us`` finds
    the first row of the user inside the window. When that key could overflow (decades of
    microseconds times many users), one lexsort of the rows together with one probe per row at
    ``ts - window_us``; probes sort before rows of equal (user, ts), so the rows before a probe
    are those (of earlier users, or this user's before the window) outside the window.
    """
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    gid = np.cumsum(np.r_[True, user[1:] != user[:-1]]) - 1
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + window_us + 1
    if (int(gid[-1]) + 1) * span < 2**62:  # fast path: one key, one binary search
        key = gid * span + (ts - t0)
        return np.arange(n) - np.searchsorted(key, key - window_us, side="left") + 1
    all_user = np.concatenate([user, user])
    all_ts = np.concatenate([ts - window_us, ts])
    is_row = np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8)])
    order = np.lexsort((is_row, all_ts, all_user))
    rows_before = np.cumsum(is_row[order]) - is_row[order]
    outside = np.empty(2 * n, dtype=np.int64)
    outside[order] = rows_before
    return np.arange(1, n + 1) - outside[:n]


def impossible_travel(user: np.ndarray, ts: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                      params: RuleParams) -> np.ndarray:
    """geo_mismatch for rows sorted by (user, ts, tid): against the user's previous row."""
    n = len(ts)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    same = user[1:] == user[:-1]
    d = haversine_km(lat[:-1], lon[:-1], lat[1:], lon[1:], params.geo_mismatch_earth_radius_km)
    # seconds first, then hours: the same float steps as the SQL and the Python reference
    hours = np.maximum((ts[1:] - ts[:-1]) / _US_PER_S / 3600, params.geo_mismatch_min_hours)
    out[1:] = same & (d >= params.geo_mismatch_distance_km) & (
        d / hours > params.geo_mismatch_speed_kmh)
    return out


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray,
                 radius_km: float) -> np.ndarray:
    """Great-circle distance: 2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * radius_km * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _epoch_us() -> pl.Expr:
    return pl.col("ts").dt.epoch("us")


def _unusual_hour(params: RuleParams) -> pl.Expr:
    local_s = pl.col("ts").dt.epoch("s") + pl.col("utc_offset_min").cast(pl.Int64) * 60
    hour = (local_s // 3600) % 24
    start, end = params.unusual_hour_start_hour, params.unusual_hour_end_hour
    if start <= end:
        return (hour >= start) & (hour < end)
    return (hour >= start) | (hour < end)


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


def keep_mask(user: np.ndarray, ts: np.ndarray, keep: int, window_us: int,
              absolute: bool = False, also: int = 0) -> np.ndarray:
    """Rows (sorted, contiguous per user) to keep: each user's last row, plus its newest
    ``keep`` rows with ``ts >= last_ts - window_us`` (or ``ts``-of-last ``>= window_us`` when
    ``absolute``: idle users keep only their last row, active ones up to ``also`` rows)."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=bool)
    last = np.r_[user[1:] != user[:-1], True]
    gid = np.cumsum(np.r_[True, user[1:] != user[:-1]]) - 1
    end = np.flatnonzero(last)[gid]
    from_end = end - np.arange(n)
    last_ts = ts[end]
    if absolute:
        return (from_end == 0) | ((last_ts >= window_us) & (from_end < also))
    return (from_end == 0) | ((from_end < keep) & (ts >= last_ts - window_us))
