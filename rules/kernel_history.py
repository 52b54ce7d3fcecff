"""The two kernels that look at a user's recent history (``rules.kernels``): the median of the
last amounts (``amount_vs_history``) and devices seen in a lookback (``new_device``).

amount_vs_history, exactly and without sorting windows: with ``ratio = p/q`` (integers, q > 0),
``y = p·x`` for the history amounts x and ``A = q·amount`` (all in cents), the rule fires iff
``A > median(y)``. Let ``c`` = how many of the m history values have ``y < A`` (one vectorised
comparison per history slot, on shifted slices of the sorted arrays):

- m odd (middle value ``y_(k+1)``, k = m // 2): fires iff ``c >= k + 1``;
- m even (``2A > y_(k) + y_(k+1)``): fires if ``c >= k + 1``, never if ``c < k``, and when
  ``c == k`` iff ``max{y < A} + min{y >= A} < 2A`` (those are then exactly the two middles).

new_device: the lookback is a window ``[ts - lookback, ts]`` of earlier positions; the device
was seen in it iff the previous event of the same user with the same device lies inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rules.kernel_events import Codes, Events, empty_proof

_US_PER_DAY = 86400 * 1_000_000


def amount_vs_history(events: Events, rule, scope: np.ndarray | None, evidence: bool):
    p = rule.params
    history, least = p["history"], p["min_history"]
    num, den = p["ratio"].as_integer_ratio()
    x = events.sorted("amount_cents")
    rank = events.rank()
    cand = _candidates(events, rank, least, scope)  # m = min(rank, history) >= least
    fire = np.zeros(len(x), dtype=bool)
    if cand.any():
        big = int(np.abs(x).max()) * max(num, den) * 2 >= 2**62
        xs = x.astype(object) if big else x
        y, a = xs * num, xs * den
        m = np.minimum(rank, history)
        below = _below_counts(y, a, rank, history, cand)
        k = m // 2
        fire = cand & (below >= k + 1)
        tie = np.flatnonzero(cand & (m % 2 == 0) & (below == k))
        if len(tie):
            fire[tie] = _middles_below(y, a, tie, m[tie])

    def proof(at: np.ndarray, rows: np.ndarray, out: dict[str, np.ndarray]) -> None:
        out["median"][rows] = [_median_text(x[i - min(r, history):i])
                               for i, r in zip(at.tolist(), rank[at].tolist(), strict=True)]
        out["ratio"][rows] = str(p["ratio"])

    return _decided(events, fire, evidence and proof, median="str", ratio="str")


def _candidates(events: Events, seen: np.ndarray, least: int,
                scope: np.ndarray | None) -> np.ndarray:
    """Sorted positions in scope whose P (``seen`` events) holds at least ``least`` events."""
    cand = seen >= least
    if scope is not None:
        cand &= events.to_sorted(scope)
    return cand


def _decided(events: Events, fire: np.ndarray, proof: Callable[..., None] | bool,
             **kinds: str):
    """(row-order hit, evidence) of a sorted-order ``fire``; ``proof(at, rows, out)`` fills the
    evidence columns ``kinds`` of the fired positions ``at`` (rows ``rows``), if wanted."""
    hit = events.to_rows(fire)
    if proof is False or proof is True:  # no evidence wanted (``evidence and proof``)
        return hit, {}
    out = empty_proof(len(hit), **kinds)
    at = np.flatnonzero(fire)
    proof(at, events.rows_of(at), out)
    return hit, out


def _below_counts(y: np.ndarray, a: np.ndarray, rank: np.ndarray, history: int,
                  cand: np.ndarray) -> np.ndarray:
    """Per position, how many of its ``min(rank, history)`` predecessors have ``y < a``."""
    n = len(y)
    below = np.zeros(n, dtype=np.int16)
    hit = np.zeros(n, dtype=bool)
    for j in range(1, min(history, n - 1) + 1):
        if y.dtype == object:
            hit[j:] = (y[:-j] < a[j:]).astype(bool)
        else:
            np.less(y[:-j], a[j:], out=hit[j:])
        below[j:] += hit[j:]
    short = np.flatnonzero(cand & (rank < history))  # the rest saw earlier users' events too
    if len(short):
        r, counts = rank[short], np.zeros(len(short), dtype=np.int16)
        for j in range(1, history + 1):
            valid = r >= j
            pos = np.where(valid, short - j, 0)
            counts += valid & (y[pos] < a[short]).astype(bool)
        below[short] = counts
    return below


def _middles_below(y: np.ndarray, a: np.ndarray, at: np.ndarray, m: np.ndarray) -> np.ndarray:
    """For even histories with exactly m/2 values below: max below + min above < 2A."""
    obj = y.dtype == object
    lo = np.full(len(at), -np.inf if obj else np.iinfo(np.int64).min, dtype=y.dtype)
    hi = np.full(len(at), np.inf if obj else np.iinfo(np.int64).max, dtype=y.dtype)
    target = a[at]
    for j in range(1, int(m.max()) + 1):
        valid = m >= j
        v = y[np.where(valid, at - j, 0)]
        low = valid & (v < target).astype(bool)
        high = valid & ~(v < target).astype(bool)
        lo = np.where(low, np.maximum(lo, v), lo)
        hi = np.where(high, np.minimum(hi, v), hi)
    return (lo + hi < 2 * target).astype(bool)


def _median_text(cents: np.ndarray) -> str:
    values = sorted(int(c) for c in cents.tolist())
    n = len(values)
    middle = Decimal(values[n // 2]) if n % 2 else Decimal(values[n // 2 - 1] + values[n // 2]) / 2
    return str(middle.scaleb(-2))


def new_device(events: Events, rule, scope: np.ndarray | None, evidence: bool):
    """device_id not NULL/empty; P = the user's earlier events within the lookback (inclusive);
    ``len(P) >= min_history`` and none of P used this device."""
    p = rule.params
    codes, names = device_codes(events.columns["device_id"])
    dev = events.to_sorted(codes)
    start = events.window_start(p["lookback_days"] * _US_PER_DAY)
    cand = _candidates(events, np.arange(len(dev)) - start, p["min_history"], scope)
    fire = cand & (dev >= 0) & (previous_same(events.user, dev) < start)

    def proof(at: np.ndarray, rows: np.ndarray, out: dict[str, np.ndarray]) -> None:
        name = names.to_pylist() if isinstance(names, pa.Array) else names
        out["device_id"][rows] = [name[c] for c in dev[at].tolist()]
        seen_lists = np.empty(len(at), dtype=object)
        seen_lists[:] = [sorted(name[c] for c in set(dev[s:i].tolist()) if c >= 0)
                         for s, i in zip(start[at].tolist(), at.tolist(), strict=True)]
        out["devices_seen"][rows] = seen_lists

    return _decided(events, fire, evidence and proof, device_id="str", devices_seen="list")


def device_codes(values) -> tuple[np.ndarray, list[str] | pa.Array]:
    """int64 code per row (-1: NULL or empty) and the code -> device_id names."""
    if isinstance(values, Codes):
        codes, names = values.codes.astype(np.int64), values.names
    else:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        encoded = pc.dictionary_encode(values)
        names = encoded.dictionary
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    empty = pc.index(names, "").as_py()
    if empty >= 0:
        codes[codes == empty] = -1
    return codes, names


def previous_same(user: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """For positions sorted by (user, ts): the previous position with the same user and the same
    device code (codes >= 0), else -1."""
    n = len(dev)
    prev = np.full(n, -1, dtype=np.int64)
    at = np.flatnonzero(dev >= 0)
    if len(at) < 2:
        return prev
    group = np.cumsum(np.r_[0, user[1:] != user[:-1]])[at]
    key = group * (int(dev.max()) + 1) + dev[at]
    order = np.argsort(key, kind="stable")  # stable: positions ascend within a key
    key, at = key[order], at[order]
    same = key[1:] == key[:-1]
    prev[at[1:][same]] = at[:-1][same]
    return prev
