"""The two window kinds (``rules.kernels``): ``velocity_count`` and ``velocity_amount``.

Both look at the user's *matching* events within ``[ts - window, ts]`` (in scope and, for
``max_amount``, small enough), e included and itself matching. ``_matching`` is their shared
preamble: the sorted positions of the matching events with their users and times; on those
positions a window is a run of consecutive positions, so a count is a difference of positions
and a sum a difference of prefix sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rules.kernel_events import Events, cents_floor, decimal_text, empty_proof, window_start

_US_PER_S = 1_000_000


@dataclass(frozen=True)
class _Matches:
    """The matching events in sorted order: their sorted positions ``at`` (None: all events),
    users and times, and the rule's window in microseconds."""

    events: Events
    at: np.ndarray | None
    user: np.ndarray
    ts: np.ndarray
    window: int

    def __len__(self) -> int:
        return len(self.ts)

    def starts(self) -> np.ndarray:
        """Per matching event, the index of the first matching event of its window."""
        if self.at is None:
            return self.events.window_start(self.window)  # shared by the set's rules
        return window_start(self.user, self.ts, self.window)

    def sorted(self, name: str) -> np.ndarray:
        values = self.events.sorted(name)
        return values if self.at is None else values[self.at]

    def fired(self, hit_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row-order bool of the events that fire, their rows) from a per-match bool."""
        pos = np.flatnonzero(hit_at) if self.at is None else self.at[hit_at]
        rows = self.events.rows_of(pos)
        hit = np.zeros(len(self.events), dtype=bool)
        hit[rows] = True
        return hit, rows


def _matching(events: Events, rule, scope: np.ndarray | None) -> _Matches:
    """The events a window rule counts: in scope, and ``amount <= max_amount`` when given."""
    p = rule.params
    match = None if scope is None else events.to_sorted(scope)
    if p.get("max_amount") is not None:
        small = events.sorted("amount_cents") <= cents_floor(p["max_amount"])
        match = small if match is None else match & small
    window = p["window_seconds"] * _US_PER_S
    if match is None:
        return _Matches(events, None, events.user, events.ts, window)
    at = np.flatnonzero(match)
    return _Matches(events, at, events.user[at], events.ts[at], window)


def velocity_count(events: Events, rule, scope, evidence: bool):
    """e fires iff the matching event ``count - 1`` places earlier is the same user's and inside
    the window."""
    m = _matching(events, rule, scope)
    user, ts, k = m.user, m.ts, rule.params["count"] - 1
    hit_at = np.ones(len(m), dtype=bool)
    hit_at[:k] = False
    if k and len(m) > k:
        hit_at[k:] = (user[k:] == user[:-k]) & (ts[k:] - ts[:-k] <= m.window)
    hit, rows = m.fired(hit_at)
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), n="int", window_seconds="int")
        proof["n"][rows] = (np.arange(len(m)) - m.starts() + 1)[hit_at]
        proof["window_seconds"][rows] = rule.params["window_seconds"]
    return hit, proof


def velocity_amount(events: Events, rule, scope, evidence: bool):
    """The sum of the matching amounts within the window (e included) > total."""
    m = _matching(events, rule, scope)
    sums = _window_sums(m.sorted("amount_cents"), m.starts())
    hit_at = sums > cents_floor(rule.params["total"])
    hit, rows = m.fired(hit_at)
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), sum="str", window_seconds="int")
        proof["sum"][rows] = [decimal_text(s) for s in sums[hit_at].tolist()]
        proof["window_seconds"][rows] = rule.params["window_seconds"]
    return hit, proof


def _window_sums(cents: np.ndarray, start: np.ndarray) -> np.ndarray:
    """sum(cents[start[i] : i + 1]) per position, exactly (Python ints if int64 could wrap)."""
    n = len(cents)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    big = int(np.abs(cents).max()) * n >= 2**62
    acc = np.cumsum(cents.astype(object) if big else cents)
    before = np.where(start > 0, acc[np.maximum(start - 1, 0)], 0)
    return acc - before
