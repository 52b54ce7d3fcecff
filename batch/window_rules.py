"""The (user_id, ts, transaction_id) order of a time chunk for ``rules.kernels``: one sort.

The per-user rule kinds look at a user's earlier events in (ts, transaction_id) order. Instead
of SQL window functions (a hash partition plus a sort per user), the events of a chunk are
ordered ONCE by (user_id, ts, transaction_id):

- input already in ts order (history files are): pack ``user << bits | row`` into one uint64
  and sort the VALUES (a vectorised sort, several times faster than an argsort); otherwise a
  stable argsort by ts first (timsort: near-linear on ts-ordered runs);
- events of one user with the same ts are then re-ordered by transaction_id (few rows).

The carry from earlier chunks is kept in ts order and all of its events are earlier than the
chunk's, so carry rows followed by chunk rows are still in ts order: the same one sort covers
both. ``IdParts`` holds their transaction ids without concatenating the strings.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMPY_TYPES: dict[pa.DataType, np.dtype] = {
    pa.int32(): np.dtype(np.int32), pa.int64(): np.dtype(np.int64),
    pa.uint64(): np.dtype(np.uint64), pa.float64(): np.dtype(np.float64)}


class Ids(Protocol):
    """transaction_id of the rows: a ``pa.Array``, ``pa.ChunkedArray`` or the like."""

    def take(self, indices: pa.Array) -> pa.Array | pa.ChunkedArray: ...


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
    data = array.buffers()[1]
    assert data is not None
    return np.frombuffer(data, dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def arrow_int64(values: np.ndarray) -> pa.Array:
    """Zero-copy Arrow view of int64 values (``pa.array`` would import pandas)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


class IdParts:
    """transaction_id of the rows as the Arrow arrays they came in (concatenating them would
    copy every string); ``take`` gathers from each part."""

    def __init__(self, parts: list[pa.Array]) -> None:
        self.parts = [p for p in parts if len(p)] or [pa.array([], pa.string())]
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def take(self, indices: pa.Array) -> pa.Array:
        rows = as_numpy(indices)
        if len(self.parts) == 1:
            return self.parts[0].take(indices)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        cuts = np.searchsorted(ordered, self.starts)
        taken = pa.concat_arrays([part.take(arrow_int64(ordered[a:b] - start)) for part, start, a, b
                                  in zip(self.parts, self.starts, cuts[:-1], cuts[1:],
                                         strict=False)])
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return taken.take(arrow_int64(back))
