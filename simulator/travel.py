"""Trips as a per-card process: in each calendar month a card's holder may start one trip.

The plan of a month is a pure function of (seed, cards, month), so the history and the live
stream see the same trips at the same instants. Most trips stay in the holder's country; a trip
takes travel time (by road under ``GROUND_KM``, else a flight: distance / 800 km/h + 1.5 h of
airports), during which nothing is paid, so even fast jumps are legitimate (< 900 km/h).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from simulator.cities import Cities, haversine_km
from simulator.models import DAY_S, Window, month_index
from simulator.world import World, build_world

DOMESTIC = 0.85  # of trips, when the country has another city
GROUND_KM = 300.0
PLANE_KMH = 800.0
_TRIP_TAG = 0x7819


@dataclass(frozen=True)
class Trips:
    """One month's trips: ``index`` per card (-1 = stays home, else its trip), and per trip
    the destination and the UTC seconds away (t0 to t1), a few percent of the cards only."""

    index: np.ndarray  # int32 per card
    dest: np.ndarray  # int32 city, per trip
    t0: np.ndarray  # int64, per trip
    t1: np.ndarray
    travel_s: np.ndarray

    def apply(self, rng: np.random.Generator, cards: np.ndarray, ts_s: np.ndarray,
              city: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Move payments to the trip city; nothing is paid on the way (moved before leaving)."""
        trip = self.index[cards]
        idx = np.flatnonzero(trip >= 0)  # the travellers' payments only
        j = trip[idx]
        t, t0, t1, tr = ts_s[idx], self.t0[j], self.t1[j], self.travel_s[j]
        back = rng.integers(600, 7200, len(idx))
        t = np.where((t >= t0) & (t < t0 + tr), t0 - back, t)
        t = np.where((t >= t1) & (t < t1 + tr), t1 - back, t)
        there = (t >= t0 + tr) & (t < t1)
        ts_s, city = ts_s.copy(), city.astype(np.int32)
        ts_s[idx] = t
        city[idx] = np.where(there, self.dest[j], city[idx])
        away = np.zeros(len(cards), dtype=bool)
        away[idx] = there
        return ts_s, city, away


def travel_seconds(km: np.ndarray) -> np.ndarray:
    return np.where(km < GROUND_KM, (km / 80.0 + 0.5) * 3600,
                    (km / PLANE_KMH + 1.5) * 3600).astype(np.int64)


def trips_of_month(world: World, month: int) -> Trips:
    return _trips(world.seed, world.n_cards, world.start_year, world.end_year, int(month))


@lru_cache(maxsize=4)  # a month needs its own and the previous month's trips
def _trips(seed: int, n_cards: int, start_year: int, end_year: int, month: int) -> Trips:
    world = build_world(seed, n_cards, start_year, end_year)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TRIP_TAG, month + 100_000]))
    c, cards = world.cities, world.cards
    n = world.n_cards
    alone = np.bincount(c.country_id, minlength=len(c.countries))[c.country_id] == 1
    # holders in a country with one city of the table travel less (every trip is abroad)
    go = rng.random(n) < cards.travel_rate * np.where(alone[cards.home], 0.4, 1.0)
    who = np.flatnonzero(go)
    home = cards.home[who]
    dest = destinations(world, rng, home)
    start = int(np.datetime64(month, "M").astype("datetime64[s]").astype(np.int64))
    t0 = start + (rng.random(len(who)) * 30 * DAY_S).astype(np.int64)
    km = haversine_km(c.lat[home], c.lon[home], c.lat[dest], c.lon[dest])
    domestic = c.country_id[dest] == c.country_id[home]
    days = np.where(domestic, rng.integers(1, 8, len(who)), rng.integers(4, 15, len(who)))
    index = np.full(n, -1, np.int32)
    index[who] = np.arange(len(who), dtype=np.int32)
    return Trips(index, dest, t0, t0 + days * DAY_S, travel_seconds(km))


_BY_COUNTRY: dict[int, tuple[Cities, np.ndarray, np.ndarray, np.ndarray]] = {}


def _by_country(c: Cities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cities in country order, their country ids, cumulative weights in that order), built
    once per city table (trips and remote fraud look them up several times a month)."""
    hit = _BY_COUNTRY.get(id(c))
    if hit is None or hit[0] is not c:  # (the entry holds the table: its id stays its own)
        if len(_BY_COUNTRY) >= 8:
            _BY_COUNTRY.clear()
        order = np.lexsort((np.arange(len(c)), c.country_id))
        hit = _BY_COUNTRY[id(c)] = (c, order, c.country_id[order], np.cumsum(c.weight[order]))
    return hit[1], hit[2], hit[3]


def destinations(world: World, rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """Another city of the home country (weighted) mostly, else anywhere (weighted)."""
    c = world.cities
    k = len(home)
    anywhere = rng.choice(len(c), size=k, p=c.weight).astype(np.int32)
    order, sorted_country, cum = _by_country(c)
    country = c.country_id[home]
    first = np.searchsorted(sorted_country, country, side="left")
    last = np.searchsorted(sorted_country, country, side="right")
    lo = np.where(first > 0, cum[first - 1], 0.0)
    pick = np.searchsorted(cum, lo + rng.random(k) * (cum[last - 1] - lo), side="right")
    pick = np.minimum(pick, last - 1)
    same = order[pick].astype(np.int32)
    same = np.where(same == home, order[np.where(pick + 1 < last, pick + 1, first)], same)
    domestic = (rng.random(k) < DOMESTIC) & (last - first > 1)
    dest = np.where(domestic, same, anywhere)
    return np.where(dest == home, (dest + 1) % len(c), dest).astype(np.int32)


def apply_trips(world: World, rng: np.random.Generator, win: Window, cards: np.ndarray,
                ts_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts, city, away) of payments given the trips that started this month or the month
    before; moved instants stay inside the window."""
    city = world.cards.home[cards].astype(np.int32)
    away = np.zeros(len(cards), dtype=bool)
    ts_s = ts_s.copy()
    mi = month_index(ts_s)
    for m in np.unique(mi).tolist():
        sel = np.flatnonzero(mi == m)
        for mm in (m - 1, m):
            t, c, a = trips_of_month(world, mm).apply(rng, cards[sel], ts_s[sel], city[sel])
            ts_s[sel], city[sel], away[sel] = t, c, away[sel] | a
    return np.maximum(ts_s, win.start_s), city, away
