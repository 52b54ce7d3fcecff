"""The numeric kernels of every rule kind: the one place the fast backtest engine and the stream
engine decide a rule set (DESIGN.md, "Rule sets (v2)"), vectorised with NumPy, no I/O.

``decide(frame, rule_set, context)`` takes events sorted by ``(user_id, ts, transaction_id)``
and returns, per rule, which events fire, their score and whether they are flagged; ``context``
rows are history (a carry, a state) that other rows see but that are not decided themselves.
``retention(rule_set)`` says which rows a later event may still need, ``needed_columns`` which
input columns the set reads. ``decide_events`` is the same on ``Events`` (arrays in any row
order plus the sort), which the fast backtest engine builds without a DataFrame.

Exactness:

- amounts are int64 cents, thresholds whole cents (``amount > t`` <=> ``cents > floor(100 t)``);
  window sums are integer sums; the median rule compares ``p·x`` with ``q·amount`` for
  ``ratio = p/q`` (see ``kernel_history``); overflow-prone inputs fall back to Python integers;
- windows are positions in the sorted order: ``window_start`` finds, for every event, the first
  event of the same user inside ``[ts - window, ts]`` (inclusive) with one ``searchsorted``;
- ``haversine_km``: NumPy's vectorised sin/cos/arcsin may differ from libm's in the last bits, so
  the travel rule computes with NumPy, then recomputes with ``math`` (the reference's functions)
  every pair whose distance or speed lies within a relative 1e-9 of its threshold, and every pair
  whose asin argument is within 1e-6 of 1. Outside those, NumPy's result is within ~1e-12
  (relative) of libm's — a few ulps per function, amplified at most ~640x by asin below
  ``a = 1 - 1e-6`` — so both sides of every comparison agree; inside, the values are libm's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from rules import kernel_history
from rules.kernel_events import (
    Column,
    Events,
    amount_cents,
    cents_floor,
    decimal_text,
    empty_proof,
    is_in,
    take_strings,
    window_start,
)

__all__ = ["CORE_COLUMNS", "Decisions", "Events", "KERNELS", "Retention", "context_columns",
           "decide", "decide_events", "events_from_frame", "haversine_km", "needed_columns",
           "retained", "retention"]

#: Core columns: a NULL in any of them keeps a row out of every decision (DESIGN.md, NULLs).
CORE_COLUMNS: tuple[str, ...] = ("user_id", "ts", "amount", "lat", "lon", "utc_offset_min")
_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S
_US_PER_HOUR = 3600 * _US_PER_S
_INT64_MAX = int(np.iinfo(np.int64).max)
_NEAR = 1e-9  # relative margin around a travel threshold inside which libm decides
_NEAR_ONE = 1 - 1e-6  # asin arguments above this are always recomputed with libm


@dataclass(frozen=True)
class Retention:
    """Per user, the rows a later event may still need: those with ``ts >= last ts -
    horizon_us`` and, whatever their age, the last ``last_k`` (>= 1)."""

    horizon_us: int
    last_k: int


@dataclass(frozen=True)
class Decisions:
    """Per event (row order of the input): which rules fired, the score, flagged, evidence."""

    fired: dict[str, np.ndarray]  # rule id -> bool
    score_units: np.ndarray  # int64: sum of the fired rules' weight units
    score: np.ndarray  # float64: score_units / scale
    flagged: np.ndarray  # bool: score_units >= threshold units
    evidence: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # valid where fired


# --- public interface ---------------------------------------------------------------------------

def needed_columns(rule_set, evidence: bool = False) -> tuple[str, ...]:
    """Input columns the rule set reads (``evidence``: also what its evidence shows)."""
    cols = ["transaction_id", *CORE_COLUMNS]
    for rule in rule_set.rules:
        extra = ([rule.params["field"]] if rule.kind == "in_list" else []) + (
            ["device_id"] if rule.kind == "new_device" else []) + (
            ["city"] if evidence and rule.kind == "impossible_travel" else [])
        cols += (["channel"] if rule.channels else []) + (
            ["category"] if rule.categories else []) + extra
    return tuple(dict.fromkeys(cols))


def context_columns(rule_set) -> tuple[str, ...]:
    """The non-core input columns whose values on context rows (carry, state) matter: the scope
    of velocity rules (they count in-scope earlier events) and devices (new_device). The other
    columns only matter on the decided event itself."""
    cols: list[str] = []
    for rule in rule_set.rules:
        if rule.kind in ("velocity_count", "velocity_amount"):
            cols += (["channel"] if rule.channels else []) + (
                ["category"] if rule.categories else [])
        elif rule.kind == "new_device":
            cols.append("device_id")
    return tuple(dict.fromkeys(cols))


def retention(rule_set) -> Retention:
    horizon, last_k = 0, 1
    for rule in rule_set.rules:
        p = rule.params
        if rule.kind in ("velocity_count", "velocity_amount"):
            horizon = max(horizon, p["window_seconds"] * _US_PER_S)
        elif rule.kind == "new_device":
            horizon = max(horizon, p["lookback_days"] * 86400 * _US_PER_S)
        elif rule.kind == "amount_vs_history":
            last_k = max(last_k, p["history"])
    return Retention(horizon, last_k)


def retained(user: np.ndarray, ts: np.ndarray, keep: Retention) -> np.ndarray:
    """Of positions sorted by (user, ts): the ones a later event of their user may need."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    is_last = np.empty(n, dtype=bool)
    np.not_equal(user[1:], user[:-1], out=is_last[:-1])
    is_last[-1] = True
    last = np.flatnonzero(is_last)
    sizes = np.diff(np.r_[-1, last])
    near = ts >= np.repeat(ts[last] - keep.horizon_us, sizes)
    if keep.last_k == 1:
        return near | is_last
    return near | (np.repeat(last, sizes) - np.arange(n) < keep.last_k)


def decide(frame: pl.DataFrame, rule_set, context: np.ndarray | None = None,
           evidence: bool = True) -> Decisions:
    """Decide ``frame`` (sorted by user_id, ts, transaction_id; no NULL core values)."""
    return decide_events(events_from_frame(frame, rule_set, evidence), rule_set, context,
                         evidence)


def decide_events(events: Events, rule_set, context: np.ndarray | None = None,
                  evidence: bool = False) -> Decisions:
    """``decide`` on ``Events``; outputs in the events' row order."""
    n = len(events)
    fired: dict[str, np.ndarray] = {}
    proofs: dict[str, dict[str, np.ndarray]] = {}
    scopes: dict[tuple, np.ndarray | None] = {}
    for rule in rule_set.rules:
        key = (rule.channels, rule.categories)
        if key not in scopes:
            scopes[key] = scope_mask(events, rule)
        hit, proof = KERNELS[rule.kind](events, rule, scopes[key], evidence)
        if context is not None:
            hit &= ~context
        fired[rule.id] = hit
        if evidence:
            proofs[rule.id] = proof
    return _scored(fired, rule_set, n, proofs)


def _scored(fired: dict[str, np.ndarray], rule_set, n: int,
            proofs: dict[str, dict[str, np.ndarray]]) -> Decisions:
    units, threshold, scale = rule_set.weight_units()
    total = np.zeros(n, dtype=np.int64)
    for rule, weight in zip(rule_set.rules, units, strict=True):
        np.add(total, weight, out=total, where=fired[rule.id])
    return Decisions(fired, total, total / scale, total >= threshold, proofs)


def events_from_frame(frame: pl.DataFrame, rule_set, evidence: bool = False) -> Events:
    """``Events`` of a sorted frame (``ts`` Datetime or ``ts_us`` int64; ``amount`` Decimal or
    ``amount_cents`` int64)."""
    ts = (frame["ts_us"] if "ts_us" in frame.columns else frame["ts"].dt.epoch("us"))
    ts_us = ts.cast(pl.Int64).to_numpy()
    cents = (frame["amount_cents"].cast(pl.Int64).to_numpy() if "amount_cents" in frame.columns
             else amount_cents(frame["amount"].to_arrow()))
    columns: dict[str, Column] = {
        "ts_us": ts_us, "amount_cents": cents}
    for name in needed_columns(rule_set, evidence):
        if name in ("transaction_id", "user_id", "ts", "amount"):
            continue
        if name in ("lat", "lon"):
            columns[name] = frame[name].cast(pl.Float64).to_numpy()
        elif name == "utc_offset_min":
            columns[name] = frame[name].cast(pl.Int64).to_numpy()
        elif name in frame.columns:
            columns[name] = frame[name].cast(pl.String).to_arrow()
        else:
            columns[name] = pa.nulls(frame.height, pa.string())
    return Events(None, frame["user_id"].cast(pl.Int64).to_numpy(), ts_us, columns)


# --- scope --------------------------------------------------------------------------------------

def scope_mask(events: Events, rule) -> np.ndarray | None:
    """Row-order bool of the events in the rule's scope (None: no scope, every event)."""
    mask = None
    for name, allowed in (("channel", rule.channels), ("category", rule.categories)):
        if allowed is not None:
            hit = is_in(events.columns[name], allowed)
            mask = hit if mask is None else mask & hit
    return mask


def _in_scope_sorted(events: Events, scope: np.ndarray | None) -> np.ndarray | None:
    return None if scope is None else events.to_sorted(scope)


# --- row-wise kinds -----------------------------------------------------------------------------

def amount_over(events: Events, rule, scope, evidence: bool):
    cents = events.columns["amount_cents"]
    hit = np.asarray(cents) > cents_floor(rule.params["threshold"])
    if scope is not None:
        hit &= scope
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), amount="str", threshold="str")
        rows = np.flatnonzero(hit)
        proof["amount"][rows] = [decimal_text(c) for c in np.asarray(cents)[rows].tolist()]
        proof["threshold"][rows] = str(rule.params["threshold"])
    return hit, proof


def local_hour(events: Events, rule, scope, evidence: bool):
    minutes = np.asarray(events.columns["ts_us"]) // _US_PER_MIN + np.asarray(
        events.columns["utc_offset_min"], dtype=np.int64)
    hour = (minutes // 60) % 24
    start, end = rule.params["start_hour"], rule.params["end_hour"]
    hit = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
    if scope is not None:
        hit &= scope
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), local_time="str")
        rows = np.flatnonzero(hit)
        local = minutes[rows] % 1440
        proof["local_time"][rows] = [f"{m // 60:02d}:{m % 60:02d}" for m in local.tolist()]
    return hit, proof


def in_list(events: Events, rule, scope, evidence: bool):
    field_name = rule.params["field"]
    values = events.columns[field_name]
    hit = is_in(values, rule.params["values"])
    if scope is not None:
        hit &= scope
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), field="str", value="str")
        rows = np.flatnonzero(hit)
        proof["field"][rows] = field_name
        proof["value"][rows] = take_strings(values, rows)
    return hit, proof


# --- per-user kinds -----------------------------------------------------------------------------

def velocity_count(events: Events, rule, scope, evidence: bool):
    """In-scope events (and amount <= max_amount) of the user within the window, e included and
    itself matching: e fires iff the matching event ``count - 1`` places earlier is the same
    user's and inside the window."""
    p = rule.params
    window = p["window_seconds"] * _US_PER_S
    match = _in_scope_sorted(events, scope)
    if p["max_amount"] is not None:
        small = events.sorted("amount_cents") <= cents_floor(p["max_amount"])
        match = small if match is None else match & small
    at = np.arange(len(events)) if match is None else np.flatnonzero(match)
    user, ts = (events.user, events.ts) if match is None else (events.user[at], events.ts[at])
    k = p["count"] - 1
    hit_at = np.ones(len(at), dtype=bool)
    hit_at[:k] = False
    if k and len(at) > k:
        hit_at[k:] = (user[k:] == user[:-k]) & (ts[k:] - ts[:-k] <= window)
    fired_pos = at[hit_at]
    hit = np.zeros(len(events), dtype=bool)
    hit[events.rows_of(fired_pos)] = True
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), n="int", window_seconds="int")
        start = window_start(user, ts, window)
        n = (np.arange(len(at)) - start + 1)[hit_at]
        rows = events.rows_of(fired_pos)
        proof["n"][rows] = n
        proof["window_seconds"][rows] = p["window_seconds"]
    return hit, proof


def velocity_amount(events: Events, rule, scope, evidence: bool):
    """Sum of the in-scope amounts of the user within the window (e included) > total."""
    p = rule.params
    window = p["window_seconds"] * _US_PER_S
    match = _in_scope_sorted(events, scope)
    at = np.arange(len(events)) if match is None else np.flatnonzero(match)
    user, ts = (events.user, events.ts) if match is None else (events.user[at], events.ts[at])
    cents = events.sorted("amount_cents")
    if match is not None:
        cents = cents[at]
    start = events.window_start(window) if match is None else window_start(user, ts, window)
    sums = _window_sums(cents, start)
    hit_at = sums > cents_floor(p["total"])
    fired_pos = at[hit_at]
    hit = np.zeros(len(events), dtype=bool)
    hit[events.rows_of(fired_pos)] = True
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), sum="str", window_seconds="int")
        rows = events.rows_of(fired_pos)
        proof["sum"][rows] = [decimal_text(s) for s in sums[hit_at].tolist()]
        proof["window_seconds"][rows] = p["window_seconds"]
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


def impossible_travel(events: Events, rule, scope, evidence: bool):
    """Against the user's immediately preceding event (any scope): d >= distance_km and
    d / max(hours, min_hours) > speed_kmh, d = haversine (libm-exact near the thresholds)."""
    p = rule.params
    user, ts = events.user, events.ts
    possible = user[1:] == user[:-1]
    radius, speed = p["earth_radius_km"], p["speed_kmh"]
    gap = ts[1:] - ts[:-1]
    if speed > 0:  # d <= pi R, so d / h > speed needs h < pi R / speed
        bound = math.pi * radius / speed * 1.001 * _US_PER_HOUR + 1
        if bound < _INT64_MAX / 2:
            possible &= gap <= int(bound)
    if scope is not None:
        possible &= events.to_sorted(scope)[1:]
    at = np.flatnonzero(possible) + 1  # sorted positions with a predecessor at - 1
    lat, lon = events.columns["lat"], events.columns["lon"]
    now, prev = events.rows_of(at), events.rows_of(at - 1)
    hours = np.maximum(gap[at - 1] / _US_PER_S / 3600, p["min_hours"])
    km = haversine_km(lat[prev], lon[prev], lat[now], lon[now], radius,
                      near=(p["distance_km"], speed * hours))
    ok = (km >= p["distance_km"]) & (km / hours > speed)
    hit = np.zeros(len(events), dtype=bool)
    hit[now[ok]] = True
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), from_city="str", from_lat="float", from_lon="float",
                             km="float", minutes="float", kmh="float")
        rows, before = now[ok], prev[ok]
        exact = haversine_km(lat[before], lon[before], lat[rows], lon[rows], radius)
        if "city" in events.columns:
            proof["from_city"][rows] = take_strings(events.columns["city"], before)
        proof["from_lat"][rows], proof["from_lon"][rows] = lat[before], lon[before]
        proof["km"][rows] = exact
        proof["minutes"][rows] = gap[at[ok] - 1] / _US_PER_MIN
        proof["kmh"][rows] = exact / hours[ok]
    return hit, proof


def haversine_km(lat1, lon1, lat2, lon2, radius_km: float,
                 near: Sequence[float | np.ndarray] | None = None) -> np.ndarray:
    """Great-circle distance, ``2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))``, in the
    reference's exact operation order.

    ``near=None``: every value computed with ``math`` (libm; bit-equal to the reference).
    ``near=(b1, b2, ...)`` (scalars or per-pair arrays): NumPy, except the pairs within a
    relative 1e-9 of some ``b`` or with an asin argument above 1 - 1e-6, which get libm's value
    — so ``d >= b`` / ``d > b`` decide exactly as the reference (see the module doc).
    """
    lat1, lon1, lat2, lon2 = (np.asarray(a, dtype=np.float64) for a in (lat1, lon1, lat2, lon2))
    if near is None:
        return _haversine_libm(lat1, lon1, lat2, lon2, radius_km)
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    a = np.minimum(np.maximum(a, 0.0), 1.0)
    km = 2 * radius_km * np.arcsin(np.sqrt(a))
    redo = a > _NEAR_ONE
    for bound in near:
        b = np.asarray(bound, dtype=np.float64)
        redo |= np.abs(km - b) <= _NEAR * np.abs(b) + 1e-300
    rows = np.flatnonzero(redo)
    if len(rows):
        km[rows] = _haversine_libm(lat1[rows], lon1[rows], lat2[rows], lon2[rows], radius_km)
    return km


def _haversine_libm(lat1, lon1, lat2, lon2, radius_km: float) -> np.ndarray:
    def one(la1: float, lo1: float, la2: float, lo2: float) -> float:
        p1, p2 = math.radians(la1), math.radians(la2)
        a = (math.sin((p2 - p1) / 2) ** 2
             + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lo2 - lo1) / 2) ** 2)
        return 2 * radius_km * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))

    return np.fromiter(map(one, lat1.tolist(), lon1.tolist(), lat2.tolist(), lon2.tolist()),
                       dtype=np.float64, count=len(lat1))


KERNELS = {
    "amount_over": amount_over, "velocity_count": velocity_count,
    "velocity_amount": velocity_amount, "local_hour": local_hour,
    "impossible_travel": impossible_travel,
    "amount_vs_history": kernel_history.amount_vs_history,
    "new_device": kernel_history.new_device, "in_list": in_list,
}
