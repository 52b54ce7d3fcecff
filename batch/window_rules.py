"""The two per-user rules of docs/design.md (v1) over plain arrays: one sort, then vector math.

``high_frequency`` and ``geo_mismatch`` look at a user's earlier events in (ts, transaction_id)
order. Instead of SQL window functions (a hash partition plus a sort per user), the events are
ordered ONCE by (user_id, ts, transaction_id):

- input already in ts order (history files are): pack ``user << bits | row`` into one uint64
  and sort the VALUES (a vectorised sort, several times faster than an argsort); otherwise a
  stable argsort by ts first (timsort: near-linear on ts-ordered runs);
- events of one user with the same ts are then re-ordered by transaction_id (few rows).

In that order, ``high_frequency`` <=> the event ``count - 1`` places earlier belongs to the same
user and lies within the window (same as ``queries/rules/flags.sql``), and ``geo_mismatch``
compares each event with its predecessor. Haversine runs only for pairs that could be flagged at
all (same user, close enough in time for any distance <= pi * R to exceed the speed), with the
SQL's exact formula; ``asin`` comes from ``math`` (libm, like DuckDB and the reference), because
NumPy's vectorised ``arcsin`` may differ in the last bit.

The result also names the rows a later time chunk needs (``carry``): per user the last event and
every event of the last window, ordered by ts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from queries.params import RuleParams

_US_PER_HOUR = 3_600_000_000
_INT64_MAX = np.iinfo(np.int64).max
_NUMPY_TYPES: dict[pa.DataType, np.dtype] = {
    pa.int32(): np.dtype(np.int32), pa.int64(): np.dtype(np.int64),
    pa.uint64(): np.dtype(np.uint64), pa.float64(): np.dtype(np.float64)}


class Ids(Protocol):
    """transaction_id of the rows: a ``pa.Array``, ``pa.ChunkedArray`` or the like."""

    def take(self, indices: pa.Array) -> pa.Array | pa.ChunkedArray: ...


@dataclass(frozen=True)
class WindowFlags:
    high_frequency: np.ndarray  # input row indices the rule flags (each once, any order)
    geo_mismatch: np.ndarray  # likewise
    carry: np.ndarray  # input row indices to keep for the next chunk, in ts order


def window_flags(user: np.ndarray, ts_us: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 transaction_id: Ids,
                 params: RuleParams) -> WindowFlags:
    """Decide both per-user rules for every row (equal-length arrays without NULLs; a NaN
    lat/lon has no distance, so it never makes a geo mismatch, as a NULL in SQL)."""
    perm, us, ts = order_events(user, ts_us, transaction_id)
    window = min(params.high_frequency_window_seconds * 1_000_000, int(_INT64_MAX))
    return WindowFlags(perm[_high_frequency(us, ts, params.high_frequency_count, window)],
                       _geo_mismatch(perm, us, ts, lat, lon, params),
                       _carry(perm, us, ts, window))


def order_events(user: np.ndarray, ts_us: np.ndarray, transaction_id: Ids
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row indices in (user_id, ts, transaction_id) order, user_id and ts in that order)."""
    n = len(ts_us)
    if n == 0:
        return np.zeros(0, dtype=np.int64), user[:0], ts_us[:0]
    base = None if bool(np.all(ts_us[1:] >= ts_us[:-1])) else np.argsort(ts_us, kind="stable")
    users = user if base is None else user[base]
    bits = max(1, (n - 1).bit_length())
    lo, hi = int(users.min()), int(users.max())
    ids = None
    if hi - lo < 1 << (63 - bits):
        key = users - lo
    else:  # ids too far apart to pack beside the row number: rank them
        ids, key = np.unique(users, return_inverse=True)
        key = key.astype(np.int64).reshape(-1)
    key <<= bits
    key |= np.arange(n, dtype=np.int64)
    key.view(np.uint64).sort()  # (user, ts, row) order, as rows are in ts order already
    us = key >> bits
    if ids is None:
        us += lo
    else:
        us = ids[us]
    key &= (1 << bits) - 1
    perm = key if base is None else base[key]
    ts = ts_us[perm]
    _order_ties(perm, us, ts, transaction_id)  # tied rows share user and ts: us, ts stay valid
    return perm, us, ts


def _order_ties(perm: np.ndarray, us: np.ndarray, ts: np.ndarray,
                transaction_id: Ids) -> None:
    """Re-order, in place, each run of one user's events with equal ts by transaction_id."""
    tie = (us[1:] == us[:-1]) & (ts[1:] == ts[:-1])  # tie[i]: position i + 1 ties with i
    if not tie.any():
        return
    after = np.flatnonzero(tie)
    members = np.union1d(after, after + 1)
    joins_previous = np.zeros(len(members), dtype=bool)
    inner = members > 0
    joins_previous[inner] = tie[members[inner] - 1]
    rows = perm[members]
    runs = pa.Table.from_arrays([arrow_int64(np.cumsum(~joins_previous)),
                                 transaction_id.take(arrow_int64(rows))], names=["run", "id"])
    order = as_numpy(pc.sort_indices(runs, sort_keys=[("run", "ascending"),
                                                      ("id", "ascending")]))  # NULLs last
    perm[members] = rows[order]


def as_numpy(array: pa.Array) -> np.ndarray:
    """Zero-copy view of a NULL-free numeric array (``Array.to_numpy`` would import pandas)."""
    dtype = _NUMPY_TYPES[array.type]
    assert array.null_count == 0, "NULLs reach an engine that has no NULL state"
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def arrow_int64(values: np.ndarray) -> pa.Array:
    """Zero-copy Arrow view of int64 values (``pa.array`` would import pandas)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _high_frequency(us: np.ndarray, ts: np.ndarray, count: int, window: int) -> np.ndarray:
    """Sorted positions flagged: the event ``count - 1`` earlier is the user's and in window."""
    if count <= 1:
        return np.arange(len(ts))
    k = count - 1
    if len(ts) <= k:
        return np.zeros(0, dtype=np.int64)
    hit = (us[k:] == us[:-k]) & (ts[k:] - ts[:-k] <= window)
    return np.flatnonzero(hit) + k


def _geo_mismatch(perm: np.ndarray, us: np.ndarray, ts: np.ndarray, lat: np.ndarray,
                  lon: np.ndarray, params: RuleParams) -> np.ndarray:
    """Input rows flagged: impossible travel from the user's previous event."""
    gap = ts[1:] - ts[:-1]
    possible = us[1:] == us[:-1]
    radius, speed = params.geo_mismatch_earth_radius_km, params.geo_mismatch_speed_kmh
    if speed > 0:  # d <= pi * R, so d / h > speed needs h < pi * R / speed
        bound = math.pi * radius / speed * 1.001 * _US_PER_HOUR + 1
        if bound < _INT64_MAX / 2:
            possible &= gap <= int(bound)
    at = np.flatnonzero(possible) + 1  # sorted positions with a predecessor at - 1
    now, prev = perm[at], perm[at - 1]
    lat1, lat0 = np.radians(lat[now]), np.radians(lat[prev])
    a = (np.sin((lat1 - lat0) / 2) ** 2
         + np.cos(lat0) * np.cos(lat1) * np.sin(np.radians(lon[now] - lon[prev]) / 2) ** 2)
    root = np.sqrt(np.minimum(np.maximum(a, 0.0), 1.0))
    km = 2 * radius * np.fromiter(map(math.asin, root.tolist()), dtype=np.float64,
                                  count=len(root))
    hours = np.maximum(gap[at - 1] / 1000000 / 3600, params.geo_mismatch_min_hours)
    flagged = (km >= params.geo_mismatch_distance_km) & (km / hours > speed)
    return now[flagged]


def _carry(perm: np.ndarray, us: np.ndarray, ts: np.ndarray, window: int) -> np.ndarray:
    """Rows a later chunk needs: each user's last event and the last window, in ts order."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = np.ones(len(ts), dtype=bool)
    keep[:-1] = us[:-1] != us[1:]
    keep |= ts >= max(int(ts.max()) - window, -_INT64_MAX)
    rows = perm[keep]
    return rows[np.argsort(ts[keep], kind="stable")]
