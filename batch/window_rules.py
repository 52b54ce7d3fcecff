"""The (user_id, ts, transaction_id) order of a time chunk for ``rules.kernels``: one sort.

The per-user rule kinds look at a user's earlier events in (ts, transaction_id) order. Instead
of SQL window functions (a hash partition plus a sort per user), the events of a chunk are
ordered ONCE by (user_id, ts, transaction_id):

- input already in ts order (history files are): pack ``user << bits | row`` into one uint64
  and sort the VALUES (a vectorised sort, several times faster than an argsort); otherwise a
  stable argsort by ts first (timsort: near-linear on ts-ordered runs);
- events of one user with the same ts are then re-ordered by transaction_id (few rows).

The carry from earlier chunks is kept in that order already and all of its events are earlier
than the chunk's, so ``merge_order`` interleaves the two by user without sorting again.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NUMPY_TYPES = {pa.int32(): np.dtype(np.int32), pa.int64(): np.dtype(np.int64),
                pa.uint64(): np.dtype(np.uint64),
                pa.float64(): np.dtype(np.float64)}


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
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def arrow_int64(values: np.ndarray) -> pa.Array:
    """Zero-copy Arrow view of int64 values (``pa.array`` would import pandas)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def merge_order(carry_user: np.ndarray, chunk_user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions of carry rows and of chunk rows in their merged (user, ts) order.

    Both inputs are sorted by user; every carry event is earlier than every chunk event, so a
    user's carry rows come first: position = own index + the other side's rows before it.
    """
    at_carry = np.arange(len(carry_user)) + np.searchsorted(chunk_user, carry_user, "left")
    at_chunk = np.arange(len(chunk_user)) + np.searchsorted(carry_user, chunk_user, "right")
    return at_carry, at_chunk
