"""Arrow arrays from NumPy buffers (zero-copy) and from Python strings, without ``pa.array``.

``pa.array`` imports pandas on its first call (to tell pandas objects apart): ~30 MiB and
~0.15 CPU-s in every process of the generator, which never uses pandas. These build the same
arrays (same types, values and nulls) from buffers instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def _bits(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(np.asarray(flags, dtype=bool), bitorder="little"))


def numeric_array(values: np.ndarray, type_: pa.DataType | None = None,
            valid: np.ndarray | None = None) -> pa.Array:
    """``pa.array(values, type=type_, mask=~valid)`` for a 1-d numeric or bool NumPy array
    (``type_`` of the same width as the values, e.g. ``timestamp`` over int64)."""
    values = np.ascontiguousarray(values)
    if type_ is None:
        type_ = pa.from_numpy_dtype(values.dtype)
    data = _bits(values) if values.dtype == np.bool_ else pa.py_buffer(values)
    bitmap = None if valid is None else _bits(valid)
    nulls = 0 if valid is None else len(values) - int(np.count_nonzero(valid))
    return pa.Array.from_buffers(type_, len(values), [bitmap, data], null_count=nulls)


def string_array(values: Sequence[str]) -> pa.Array:
    """``pa.array(values)`` for Python strings (no nulls): a ``pa.string()`` array."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets),
                                       pa.py_buffer(b"".join(data)), null_count=0)
