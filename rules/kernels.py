"""The numeric kernels of every rule kind: the one place the fast backtest engine and the stream
engine decide a rule set (DESIGN.md, "Rule sets (v2)"), vectorised with NumPy, no I/O.

``decide(frame, rule_set, context)`` takes events sorted by ``(user_id, ts, transaction_id)``
and returns, per rule, which events fire, their score and whether they are flagged; ``context``
rows are history (a carry, a state) that other rows see but that are not decided themselves.
``retention(rule_set)`` says which rows a later event may still need, ``needed_columns`` which
input columns the set reads. ``decide_events`` is the same on ``Events`` (arrays in any row
order plus the sort), which the fast backtest engine builds without a DataFrame.

Where each kind lives: row-wise kinds here; ``rules.kernel_velocity`` (the two window kinds),
``rules.kernel_travel`` (impossible_travel, the libm-exact haversine), ``rules.kernel_history``
(median of the last amounts, new device); the event arrays, sort order and window starts in
``rules.kernel_events``.

Exactness: amounts are int64 cents, thresholds whole cents (``amount > t`` <=>
``cents > floor(100 t)``); window sums are integer sums; the median rule compares ``p·x`` with
``q·amount`` for ``ratio = p/q``; overflow-prone inputs fall back to Python integers; windows
are positions in the sorted order (``kernel_events.window_start``: one ``searchsorted``);
distances are libm's wherever a comparison could depend on the last bits (``kernel_travel``).
"""

from __future__ import annotations

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
)
from rules.kernel_travel import haversine_km, impossible_travel
from rules.kernel_velocity import velocity_amount, velocity_count

__all__ = ["CORE_COLUMNS", "Decisions", "Events", "KERNELS", "Retention", "context_columns",
           "decide", "decide_events", "events_from_frame", "haversine_km", "needed_columns",
           "retained", "retained_compact", "retention"]

#: Core columns: a NULL in any of them keeps a row out of every decision (DESIGN.md, NULLs).
CORE_COLUMNS: tuple[str, ...] = ("user_id", "ts", "amount", "lat", "lon", "utc_offset_min")
_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S


@dataclass(frozen=True)
class Retention:
    """Per user, the rows a later event may still need: those with ``ts >= last ts -
    horizon_us`` and, whatever their age, the last ``last_k`` (>= 1).

    ``horizon_us`` is the longest of the velocity windows (``window_us``) and the new_device
    lookbacks (``device_us``); ``retained_compact`` keeps fewer rows by treating the two
    apart (the stream engine's state)."""

    horizon_us: int
    last_k: int
    window_us: int = 0
    device_us: int = 0


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
    window, device, last_k = 0, 0, 1
    for rule in rule_set.rules:
        p = rule.params
        if rule.kind in ("velocity_count", "velocity_amount"):
            window = max(window, p["window_seconds"] * _US_PER_S)
        elif rule.kind == "new_device":
            device = max(device, p["lookback_days"] * 86400 * _US_PER_S)
            last_k = max(last_k, p["min_history"])  # so the last rows decide len(P) >= it
        elif rule.kind == "amount_vs_history":
            last_k = max(last_k, p["history"])
    return Retention(max(window, device), last_k, window, device)


def retained(user: np.ndarray, ts: np.ndarray, keep: Retention) -> np.ndarray:
    """Of positions sorted by (user, ts): the ones a later event of their user may need."""
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    last_ts, from_end = _user_tails(user, ts)
    return (ts >= last_ts - keep.horizon_us) | (from_end < keep.last_k)


def retained_compact(user: np.ndarray, ts: np.ndarray, device: np.ndarray | None,
                     keep: Retention, idle_before: int | None = None) -> np.ndarray:
    """Of positions sorted by (user, ts, transaction_id): the ones a later (in-order) event of
    their user may need, fewer than ``retained`` keeps when a new_device lookback is longer
    than the velocity windows: the last ``last_k`` rows, the rows within ``window_us`` of the
    user's last row, and of each (user, device) only the latest row, if within ``device_us``.

    Why that decides every kind as the full history would: the first two sets are a suffix of
    the user's rows holding every row a velocity window or the last ``history`` amounts (and
    the previous event) can reach; an older row is outside every velocity window. new_device
    asks (a) are there ``>= min_history`` earlier rows in the lookback — the last ``last_k >=
    min_history`` rows answer it, since the lookback holds a suffix — and (b) was the device
    used in it — iff its latest use is in it. ``device``: int codes, -1 = NULL (never matches).
    ``idle_before``: users whose last row is older keep only their last ``last_k`` rows.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=bool)
    last_ts, from_end = _user_tails(user, ts)
    keep_rows = (ts >= last_ts - keep.window_us) | (from_end < keep.last_k)
    if device is not None and keep.device_us > 0:
        keep_rows |= (ts >= last_ts - keep.device_us) & _latest_of_device(user, device)
    if idle_before is not None:
        keep_rows &= (last_ts >= idle_before) | (from_end < keep.last_k)
    return keep_rows


def _user_tails(user: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of non-empty positions sorted by user: each row's user's last ts, and how many rows of
    its user come after it (0 = the user's last row)."""
    n = len(ts)
    is_last = np.empty(n, dtype=bool)
    np.not_equal(user[1:], user[:-1], out=is_last[:-1])
    is_last[-1] = True
    last = np.flatnonzero(is_last)
    sizes = np.diff(np.r_[-1, last])
    return np.repeat(ts[last], sizes), np.repeat(last, sizes) - np.arange(n)


def _latest_of_device(user: np.ndarray, device: np.ndarray) -> np.ndarray:
    """Positions (sorted by user, ts) that are their user's last use of their device."""
    n = len(device)
    out = np.zeros(n, dtype=bool)
    at = np.flatnonzero(device >= 0)
    if not len(at):
        return out
    group = np.cumsum(np.r_[0, user[1:] != user[:-1]])[at]
    key = group * (int(device.max()) + 1) + device[at]
    order = np.argsort(key, kind="stable")  # positions ascend within a key
    key = key[order]
    out[at[order][np.r_[key[1:] != key[:-1], True]]] = True
    return out


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
    minutes = np.asarray(events.columns["ts_us"]) // _US_PER_MIN
    minutes += np.asarray(events.columns["utc_offset_min"])
    hour = minutes // 60
    hour %= 24
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


KERNELS = {
    "amount_over": amount_over, "velocity_count": velocity_count,
    "velocity_amount": velocity_amount, "local_hour": local_hour,
    "impossible_travel": impossible_travel,
    "amount_vs_history": kernel_history.amount_vs_history,
    "new_device": kernel_history.new_device, "in_list": in_list,
}
