"""glibc malloc settings for the chunked fast engine: reuse freed chunk-sized arrays.

Each time chunk allocates and frees the same few dozen column-sized NumPy arrays. glibc serves
allocations above its mmap threshold with fresh ``mmap``s and unmaps them on free, so every
chunk pays page faults to zero new pages: measured here as ~30-40 % of the fast backtest's CPU,
as system time. Pinning the threshold at glibc's maximum (32 MiB, so a column of a chunk of
< 4M rows stays in the heap) and not trimming the heap lets the next chunk reuse the memory.
Off glibc (or if ``mallopt`` is missing) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_MAX = 32 * 1024 * 1024  # glibc's HEAP_MAX_SIZE / 2 on 64-bit: larger values are refused
_KEEP = 1 << 30  # free heap top kept before trimming


def reuse_freed_memory() -> bool:
    """Tune glibc malloc for this process; True if it took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
