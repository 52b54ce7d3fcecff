"""How many events each month gets: volume grows ~12x from 2000 to 2025, with seasons.

``rows_per_month`` splits an exact total over the months by largest remainder, so the parts
always sum to the requested row count (the card base grows with it: ``simulator.cards``).
"""

from __future__ import annotations

import math

import numpy as np

GROWTH_PER_YEAR = math.log(12.0) / 25.0
SEASON = np.array([0.90, 0.88, 0.97, 0.98, 1.0, 1.0, 1.02, 1.02, 0.98, 1.0, 1.08, 1.25])


def months(start_year: int, end_year: int) -> list[tuple[int, int]]:
    return [(y, m) for y in range(start_year, end_year + 1) for m in range(1, 13)]


def _trend(start_year: int, end_year: int) -> np.ndarray:
    t = np.array([(y - 2000) + (m - 1) / 12 for y, m in months(start_year, end_year)])
    return np.exp(GROWTH_PER_YEAR * t)


def rows_per_month(total: int, start_year: int, end_year: int) -> list[int]:
    """Non-negative ints, one per month, summing exactly to ``total`` (largest remainder)."""
    w = _trend(start_year, end_year) * np.tile(SEASON, end_year - start_year + 1)
    quota = total * w / w.sum()
    base = np.floor(quota).astype(np.int64)
    short = total - int(base.sum())
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:short]] += 1
    return base.tolist()
