"""Events as the rule kernels see them (``rules.kernels``): arrays, their sort, windows.

Everything here is exact integer or string work: int64 cents from decimals, the first position
inside a time window, the rank of an event within its user, membership in a string list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_INT64_MAX = int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class Codes:
    """A string column as int32 codes into ``names`` (-1 = NULL): membership and device
    lookups work on the (small) dictionary, and a carry gathers integers, not strings."""

    codes: np.ndarray
    names: pa.Array

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, rows: np.ndarray) -> Codes:
        return Codes(self.codes[rows], self.names)

    def strings(self, rows: np.ndarray) -> list[str | None]:
        picked = self.codes[rows]
        return self.names.take(pa.array(picked, pa.int32(), mask=picked < 0)).to_pylist()


Column: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray | Codes


@dataclass
class Events:
    """Events as arrays in ROW order plus their (user_id, ts, transaction_id) order.

    ``order[i]`` is the row at sorted position ``i`` (None: the rows are sorted already);
    ``user`` and ``ts`` are in SORTED order; ``columns`` hold the other inputs in row order:
    ``ts_us``, ``amount_cents`` (int64), ``lat``, ``lon`` (float64), ``utc_offset_min`` and
    string columns (``pa.Array``/``ChunkedArray``) such as channel, category, device_id.
    """

    order: np.ndarray | None
    user: np.ndarray
    ts: np.ndarray
    columns: Mapping[str, Column]
    _sorted: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _starts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _rank: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ts)

    def sorted(self, name: str) -> np.ndarray:
        """A numeric column in sorted order (gathered once)."""
        if name not in self._sorted:
            col = np.asarray(self.columns[name])
            self._sorted[name] = col if self.order is None else col[self.order]
        return self._sorted[name]

    def to_sorted(self, values: np.ndarray) -> np.ndarray:
        return values if self.order is None else values[self.order]

    def to_rows(self, values: np.ndarray) -> np.ndarray:
        """Sorted-order values back in row order."""
        if self.order is None:
            return values
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def rows_of(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.order is None else self.order[positions]

    def window_start(self, window_us: int) -> np.ndarray:
        if window_us not in self._starts:
            self._starts[window_us] = window_start(self.user, self.ts, window_us)
        return self._starts[window_us]

    def rank(self) -> np.ndarray:
        """Each sorted position's index among its user's events (0 = the user's first)."""
        if self._rank is None:
            self._rank = rank_in_user(self.user)
        return self._rank


# --- order and windows --------------------------------------------------------------------------

def rank_in_user(user: np.ndarray) -> np.ndarray:
    """Index of each position among its user's (contiguous) positions."""
    n = len(user)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    counts = np.diff(np.r_[first, n])
    return np.arange(n) - np.repeat(first, counts)


def window_start(user: np.ndarray, ts: np.ndarray, window_us: int) -> np.ndarray:
    """For positions sorted by (user, ts): the first position of the same user with
    ``ts >= this ts - window_us``.

    Gaps wider than the window are shrunk to ``window + 1`` and users are set ``window + 1``
    apart: window membership is unchanged, and the compressed times are one sorted int64 key,
    so one ``searchsorted`` answers every position. A key that would pass 2^61 is cut into
    blocks at user boundaries, each with its own key (a window never crosses a user).
    """
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    window_us = min(int(window_us), _INT64_MAX // 8)
    step = np.diff(ts)
    np.minimum(step, window_us + 1, out=step)
    new_user = user[1:] != user[:-1]
    step[new_user] = window_us + 1
    if n == 1 or (n - 1) * (window_us + 1) < 2**61:  # every step is <= window + 1
        return _starts(step, window_us, 0)
    reach = np.cumsum(step, dtype=np.float64)  # approximate compressed times, to cut blocks
    if reach[-1] < 2.0**61:
        return _starts(step, window_us, 0)
    firsts = np.r_[0, np.flatnonzero(new_user) + 1]
    block = (np.r_[0.0, reach][firsts] // 2.0**60).astype(np.int64)
    cuts = np.r_[firsts[np.r_[True, block[1:] != block[:-1]]], n]
    out = np.empty(n, dtype=np.int64)
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        span = (reach[b - 2] if b >= 2 else 0.0) - (reach[a - 1] if a else 0.0)
        if span >= 2.0**62 - 2.0**52:
            raise OverflowError("one user's events span too much time for an int64 window key")
        out[a:b] = _starts(step[a:b - 1], window_us, a)
    return out


def _starts(step: np.ndarray, window_us: int, offset: int) -> np.ndarray:
    key = np.empty(len(step) + 1, dtype=np.int64)
    key[0] = 0
    np.cumsum(step, out=key[1:])
    return np.searchsorted(key, key - window_us, side="left") + offset


def amount_cents(amount: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 cents of a decimal128 array (exact: the unscaled integers, rescaled to 2 places)."""
    if isinstance(amount, pa.ChunkedArray):
        amount = amount.combine_chunks()
    if not pa.types.is_decimal(amount.type):
        raise TypeError(f"amount must be a decimal, got {amount.type}")
    if amount.type.scale != 2 or not isinstance(amount.type, pa.Decimal128Type):
        amount = amount.cast(pa.decimal128(38, 2))  # exact for any <= 2-place value
    words = np.frombuffer(amount.buffers()[1], dtype=np.int64, count=2 * len(amount),
                          offset=amount.offset * 16)
    low, high = words[0::2], words[1::2]
    if not np.array_equal(high, low >> 63):
        raise OverflowError("an amount does not fit in int64 cents")
    return low.copy()


def cents_floor(value: Decimal) -> int:
    """floor(100 · value): ``cents > cents_floor(t)`` <=> ``cents / 100 > t``."""
    return int((value * 100).to_integral_value(rounding=ROUND_FLOOR))



def is_in(values: pa.Array | pa.ChunkedArray | Codes, allowed: Sequence[str]) -> np.ndarray:
    """Exact, case-sensitive membership; NULL is never in."""
    if isinstance(values, Codes):
        known = is_in(values.names, allowed)
        return np.r_[known, False][values.codes]  # code -1 (NULL) picks the final False
    value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    value_set = string_array(allowed)
    if value_set.type != value_type:
        value_set = value_set.cast(value_type)
    return bools(pc.is_in(values, value_set=value_set))  # a NULL input is never in


def string_array(values: Sequence[str]) -> pa.StringArray:
    """An Arrow string array built from its buffers (``pa.array`` of a Python list imports
    pandas: ~0.4 s per process)."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets),
                                       pa.py_buffer(b"".join(encoded)))


def bools(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """NumPy bool of an Arrow boolean array, NULL = False, unpacked from its bits
    (``to_numpy`` or ``fill_null`` would import pandas: ~0.4 s per process)."""
    parts = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = [np.zeros(0, dtype=bool)]
    for part in parts:
        if len(part):
            out.append(_bits(part.buffers()[1], part.offset, len(part)))
            if part.null_count:
                out[-1] &= _bits(part.buffers()[0], part.offset, len(part))
    return out[0] if len(out) == 1 else out[1] if len(out) == 2 else np.concatenate(out[1:])


def _bits(buffer: pa.Buffer, offset: int, n: int) -> np.ndarray:
    bits = np.frombuffer(buffer, dtype=np.uint8)
    return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].view(bool)



def empty_proof(size: int, /, **kinds: str) -> dict[str, np.ndarray]:
    """Evidence columns of ``size`` rows: kind "int", "float", or anything else (object)."""
    return {name: (np.zeros(size, dtype=np.int64) if kind == "int" else
                   np.zeros(size, dtype=np.float64) if kind == "float" else
                   np.full(size, None, dtype=object)) for name, kind in kinds.items()}


def decimal_text(cents: int) -> str:
    return str(Decimal(int(cents)).scaleb(-2))




def take_strings(values: Column, rows: np.ndarray) -> list[str | None]:
    """The strings at ``rows`` as Python values."""
    if isinstance(values, Codes):
        return values.strings(rows)
    return values.take(pa.array(rows, pa.int64())).to_pylist()
