"""The travel prefilter (``rules.kernel_travel._may_travel``) never drops a pair that can fire."""

from __future__ import annotations

import numpy as np
import pytest

from rules.kernel_travel import _haversine_libm, _may_travel


def _pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive points: near neighbours, random far pairs, antipodes, date-line crossings."""
    lat = rng.uniform(-90, 90, n)
    lon = rng.uniform(-180, 180, n)
    kind = rng.integers(0, 4, n)
    near = kind == 0
    lat[near] = np.clip(np.r_[lat[0], lat[:-1]][near] + rng.normal(0, 0.5, near.sum()), -90, 90)
    lon[near] = np.r_[lon[0], lon[:-1]][near] + rng.normal(0, 0.5, near.sum())
    anti = kind == 1
    lat[anti] = -np.r_[lat[0], lat[:-1]][anti] + rng.normal(0, 1e-7, anti.sum())
    lon[anti] = np.r_[lon[0], lon[:-1]][anti] + 180 + rng.normal(0, 1e-7, anti.sum())
    wrap = kind == 2  # across the date line, and longitudes past ±180
    lon[wrap] = np.r_[lon[0], lon[:-1]][wrap] + rng.choice([-359.9, 359.9, 720.1], wrap.sum())
    return lat, lon


@pytest.mark.parametrize("seed", range(5))
def test_bound_never_below_the_reference_distance(seed):
    rng = np.random.default_rng(seed)
    lat, lon = _pairs(rng, 20_000)
    d = _haversine_libm(lat[:-1], lon[:-1], lat[1:], lon[1:], 6371.0)
    # a pair fires only if d >= distance or d > speed · hours: at need == d it must be kept
    assert _may_travel(lat, lon, 6371.0, d).all()
    assert _may_travel(lat, lon, 6371.0, np.nextafter(d, 0)).all()


def test_bound_drops_close_pairs_and_keeps_nan():
    lat = np.array([10.0, 10.001, 10.002, np.nan, 10.0])
    lon = np.array([20.0, 20.001, 20.002, 20.0, 20.0])
    need = np.full(4, 100.0)
    assert _may_travel(lat, lon, 6371.0, need).tolist() == [False, False, True, True]
