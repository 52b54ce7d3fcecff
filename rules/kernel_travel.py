"""impossible_travel (``rules.kernels``): each event against the user's immediately preceding
one, with the haversine distance bit-equal to the reference's ``math`` formula.

Cost: most consecutive pairs of a card are close in space, so a cheap upper bound of the
distance (``_may_travel``: central angle <= |Δφ| + |Δλ|) drops every pair that cannot reach
``max(distance_km, speed_kmh · hours)`` before any trigonometry; the rest gets NumPy's
vectorised haversine.

Exactness: NumPy's vectorised sin/cos/arcsin may differ from libm's in the last bits, so the
travel rule computes with NumPy, then recomputes with ``math`` (the reference's functions) every
pair whose distance or speed lies within a relative 1e-9 of its threshold, and every pair whose
asin argument is within 1e-6 of 1. Outside those, NumPy's result is within ~1e-12 (relative) of
libm's — a few ulps per function, amplified at most ~640x by asin below ``a = 1 - 1e-6`` — so
both sides of every comparison agree; inside, the values are libm's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rules.kernel_events import Events, empty_proof, take_strings

_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S
_US_PER_HOUR = 3600 * _US_PER_S
_INT64_MAX = int(np.iinfo(np.int64).max)
_NEAR = 1e-9  # relative margin around a travel threshold inside which libm decides
_NEAR_ONE = 1 - 1e-6  # asin arguments above this are always recomputed with libm


def impossible_travel(events: Events, rule, scope, evidence: bool):
    """Against the user's immediately preceding event (any scope): d >= distance_km and
    d / max(hours, min_hours) > speed_kmh, d = haversine (libm-exact near the thresholds)."""
    p = rule.params
    user, ts = events.user, events.ts
    possible = user[1:] == user[:-1]
    radius, speed = p["earth_radius_km"], p["speed_kmh"]
    gap = ts[1:] - ts[:-1]
    if speed > 0:  # d <= pi R, so d / h > speed needs h < pi R / speed
        bound = math.pi * radius / speed * 1.001 * _US_PER_HOUR + 1
        if bound < _INT64_MAX / 2:
            possible &= gap <= int(bound)
    if scope is not None:
        possible &= events.to_sorted(scope)[1:]
    hours_all = np.maximum(gap / _US_PER_S / 3600, p["min_hours"])
    possible &= _may_travel(events.sorted("lat"), events.sorted("lon"), radius,
                            np.maximum(speed * hours_all, p["distance_km"]))
    at = np.flatnonzero(possible) + 1  # sorted positions with a predecessor at - 1
    lat, lon = np.asarray(events.columns["lat"]), np.asarray(events.columns["lon"])
    now, prev = events.rows_of(at), events.rows_of(at - 1)
    hours = hours_all[at - 1]
    km = haversine_km(lat[prev], lon[prev], lat[now], lon[now], radius,
                      near=(p["distance_km"], speed * hours))
    ok = (km >= p["distance_km"]) & (km / hours > speed)
    hit = np.zeros(len(events), dtype=bool)
    hit[now[ok]] = True
    proof = {}
    if evidence:
        proof = empty_proof(len(hit), from_city="str", from_lat="float", from_lon="float",
                             km="float", minutes="float", kmh="float")
        rows, before = now[ok], prev[ok]
        exact = haversine_km(lat[before], lon[before], lat[rows], lon[rows], radius)
        if "city" in events.columns:
            proof["from_city"][rows] = take_strings(events.columns["city"], before)
        proof["from_lat"][rows], proof["from_lon"][rows] = lat[before], lon[before]
        proof["km"][rows] = exact
        proof["minutes"][rows] = gap[at[ok] - 1] / _US_PER_MIN
        proof["kmh"][rows] = exact / hours[ok]
    return hit, proof


def _may_travel(lat: np.ndarray, lon: np.ndarray, radius_km: float,
                need_km: np.ndarray) -> np.ndarray:
    """Per consecutive pair (i - 1, i) of sorted positions: False only where the haversine
    distance surely stays below ``need_km`` (so neither ``d >= distance`` nor ``d / h > speed``
    can hold): the central angle is at most ``|Δφ| + |Δλ|`` (along the meridian, then the
    parallel, which is no shorter than the great circle; an unwrapped ``Δλ`` only loosens it).
    A relative 1e-6 margin covers rounding in both computations; a NaN bound keeps the pair."""
    bound = np.abs(lat[1:] - lat[:-1])
    bound += np.abs(lon[1:] - lon[:-1])
    bound *= math.pi / 180 * radius_km * (1 + 1e-6)
    bound += 1e-6
    return ~(bound < need_km)


def haversine_km(lat1, lon1, lat2, lon2, radius_km: float,
                 near: Sequence[float | np.ndarray] | None = None) -> np.ndarray:
    """Great-circle distance, ``2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))``, in the
    reference's exact operation order.

    ``near=None``: every value computed with ``math`` (libm; bit-equal to the reference).
    ``near=(b1, b2, ...)`` (scalars or per-pair arrays): NumPy, except the pairs within a
    relative 1e-9 of some ``b`` or with an asin argument above 1 - 1e-6, which get libm's value
    — so ``d >= b`` / ``d > b`` decide exactly as the reference (see the module doc).
    """
    lat1, lon1, lat2, lon2 = (np.asarray(a, dtype=np.float64) for a in (lat1, lon1, lat2, lon2))
    if near is None:
        return _haversine_libm(lat1, lon1, lat2, lon2, radius_km)
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    a = np.minimum(np.maximum(a, 0.0), 1.0)
    km = 2 * radius_km * np.arcsin(np.sqrt(a))
    redo = a > _NEAR_ONE
    for bound in near:
        b = np.asarray(bound, dtype=np.float64)
        redo |= np.abs(km - b) <= _NEAR * np.abs(b) + 1e-300
    rows = np.flatnonzero(redo)
    if len(rows):
        km[rows] = _haversine_libm(lat1[rows], lon1[rows], lat2[rows], lon2[rows], radius_km)
    return km


def _haversine_libm(lat1, lon1, lat2, lon2, radius_km: float) -> np.ndarray:
    def one(la1: float, lo1: float, la2: float, lo2: float) -> float:
        p1, p2 = math.radians(la1), math.radians(la2)
        a = (math.sin((p2 - p1) / 2) ** 2
             + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lo2 - lo1) / 2) ** 2)
        return 2 * radius_km * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))

    return np.fromiter(map(one, lat1.tolist(), lon1.tolist(), lat2.tolist(), lon2.tolist()),
                       dtype=np.float64, count=len(lat1))
