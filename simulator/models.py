"""Genuine spending: who pays, when (local day/hour rhythm), where (home or a trip), for what.

All samplers are vectorised over numpy arrays and draw from the ``Generator`` they are given,
so a window of events is a pure function of (world, seed of the window, row count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.cities import haversine_km
from simulator.events import GENUINE, Events
from simulator.tz import OffsetGrid, OffsetTable
from simulator.world import World

US = 1_000_000
DAY_S = 86_400
# Local hour profiles (relative weights), by category kind: day, evening, any; then night owls.
_HOURS = np.array([
    [.3, .2, .1, .1, .1, .3, 1, 2.5, 4, 5.5, 6.5, 7, 7.5, 7, 6.5, 6.5, 6.5, 6.5, 6, 5, 4, 3, 1.8,
     .8],
    [.8, .5, .3, .2, .1, .2, .5, 1.5, 2.5, 3, 3.5, 5.5, 7.5, 6, 4, 3.5, 4.5, 6.5, 8.5, 9, 8, 6, 4,
     2],
    [.5, .35, .25, .2, .2, .6, 1.5, 3, 4.5, 5.5, 6, 6.5, 6.5, 6.5, 6, 6, 6, 6, 6, 5.5, 5, 4, 3, 2],
])
_OWL = np.array([6, 6, 5, 4, 3, 1.5, .5, .5, .5, 1, 1.5, 2, 2.5, 2.5, 2.5, 2.5, 3, 3.5, 4, 4.5,
                 5, 6, 6.5, 6.5])
_WEEKDAY = np.array([0.92, 0.94, 0.96, 1.0, 1.15, 1.2, 0.85])  # Monday .. Sunday
JITTER_DEG = 0.03  # ~3 km around the city centre
MISLOCATED_ONLINE = 0.01  # online payments geolocated to a random city (VPN, proxies)
PLANE_KMH = 800.0


def _cum(rows: np.ndarray) -> np.ndarray:
    c = np.cumsum(rows / rows.sum(axis=-1, keepdims=True), axis=-1)
    c[..., -1] = 1.0
    return c


_HOUR_CUM = _cum(np.concatenate([_HOURS, 0.4 * _HOURS / _HOURS.sum(1, keepdims=True)
                                 + 0.6 * _OWL / _OWL.sum()]))
_LUT_SIZE = 4096  # inverse-CDF lookup: hour = _HOUR_LUT[profile, uniform slot]
_HOUR_LUT = np.stack([np.searchsorted(c, (np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE, side="right")
                      for c in _HOUR_CUM]).astype(np.int64)


@dataclass(frozen=True)
class Window:
    """A span of time to fill with events."""

    start_s: int  # UTC seconds, inclusive
    end_s: int  # UTC seconds, exclusive
    year: int  # sets price level and the online share
    active: int  # users [0, active) hold a card by then
    shaped: bool  # True: local day/hour rhythm (history); False: uniform in time (live)
    tz: OffsetTable | OffsetGrid  # UTC offsets lookup covering the window


def online_share(year: int) -> float:
    """Share of the online-capable spend that happens online, growing 2000 -> 2025."""
    return float(0.12 + 0.88 / (1.0 + np.exp(-(year - 2012) / 3.5)))


def price_level(year: int) -> float:
    return 1.025 ** (year - 2013)


def sample_users(world: World, rng: np.random.Generator, n: int, active: int) -> np.ndarray:
    """``n`` payers by activity weight, in user order (callers sort by time afterwards).

    Sorted uniforms (normalised cumulative exponential gaps) make the search cache-friendly."""
    cum = world.users.activity_cum[:active]
    gaps = np.cumsum(rng.standard_exponential(n + 1))
    users = np.searchsorted(cum, gaps[:-1] * (cum[-1] / gaps[-1]), side="right")
    return np.minimum(users, active - 1).astype(np.int32)


def sample_categories(world: World, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
    u = rng.random(len(users), dtype=np.float32)
    return (world.users.category_cum[users] < u[:, None]).sum(axis=1).astype(np.int16)


def local_to_utc(win: Window, zone: np.ndarray, local_s: np.ndarray) -> np.ndarray:
    """UTC seconds of local wall-clock seconds (DST gaps/overlaps resolve to a nearby instant)."""
    guess = local_s - win.tz.offset_min(zone, local_s).astype(np.int64) * 60
    return local_s - win.tz.offset_min(zone, guess).astype(np.int64) * 60


def wrap(ts_s: np.ndarray, win: Window) -> np.ndarray:
    """Move instants that fell outside the window by whole days (keeps the local hour)."""
    ts_s = np.where(ts_s < win.start_s, ts_s + DAY_S, ts_s)
    ts_s = np.where(ts_s >= win.end_s, ts_s - DAY_S, ts_s)
    return np.clip(ts_s, win.start_s, win.end_s - 1)


def local_days(rng: np.random.Generator, win: Window, n: int) -> np.ndarray:
    """Local midnight (as wall-clock seconds) of days drawn with the weekly rhythm."""
    days = np.arange(win.start_s, win.end_s, DAY_S, dtype=np.int64)
    weight = _WEEKDAY[((days // DAY_S) + 3) % 7]
    day = np.searchsorted(np.cumsum(weight) / weight.sum(), rng.random(n), side="right")
    return days[np.minimum(day, len(days) - 1)]


def shaped_times(world: World, rng: np.random.Generator, win: Window, users: np.ndarray,
                 cats: np.ndarray) -> np.ndarray:
    """UTC seconds with the local day/hour rhythm of each user's home city."""
    profile = world.categories.hours[cats] + 3 * world.users.night_owl[users]
    hour = _HOUR_LUT[profile, rng.integers(0, _LUT_SIZE, len(users))]
    local = local_days(rng, win, len(users)) + hour * 3600 + rng.integers(0, 3600, len(users))
    zone = world.cities.zone_id[world.users.home[users]]
    return wrap(local_to_utc(win, zone, local), win)


def spend(world: World, rng: np.random.Generator, year: int, users: np.ndarray,
          ts_s: np.ndarray, city: np.ndarray, cats: np.ndarray) -> Events:
    """Genuine payments of ``users`` at ``ts_s`` in ``city`` for categories ``cats``."""
    n = len(users)
    c, k = world.cities, world.categories
    online = rng.random(n) < k.online_max[cats] * online_share(year)
    merchant = pick_merchants(world, rng, city, cats, online)
    channel = channel_of(world, merchant)
    misplaced = (channel == 1) & (rng.random(n) < MISLOCATED_ONLINE)
    city = np.where(misplaced, rng.choice(len(c), size=n, p=c.weight), city).astype(np.int32)
    return Events(
        user=users, ts=ts_s * US, city=city,
        lat=c.lat[city] + rng.normal(0.0, JITTER_DEG, n),
        lon=c.lon[city] + rng.normal(0.0, JITTER_DEG, n),
        merchant=merchant, cents=amounts(world, rng, year, users, cats), channel=channel,
        device=np.where(channel == 1, users, -1).astype(np.int32),
        scenario=np.full(n, GENUINE, dtype=np.int8),
    )


def channel_of(world: World, merchant: np.ndarray) -> np.ndarray:
    """0 pos, 1 online (an online merchant), 2 atm (the cash category)."""
    m = world.merchants
    online = merchant >= m.online_start[0]
    return np.where(m.category[merchant] == world.categories.atm, 2, online).astype(np.int8)


def pick_merchants(world: World, rng: np.random.Generator, city: np.ndarray, cats: np.ndarray,
                   online: np.ndarray) -> np.ndarray:
    """A shop of category ``cats`` in ``city`` (or an online one); popular shops more often."""
    m = world.merchants
    key = city.astype(np.int64) * len(world.categories.name) + cats
    online = (online & (m.online_count[cats] > 0)) | (m.pos_count[key] == 0)
    start = np.where(online, m.online_start[cats], m.pos_start[key])
    count = np.where(online, m.online_count[cats], m.pos_count[key])
    return (start + (rng.random(len(cats)) ** 2 * count).astype(np.int64)).astype(np.int32)


def amounts(world: World, rng: np.random.Generator, year: int, users: np.ndarray,
            cats: np.ndarray) -> np.ndarray:
    """Cents: log-normal per category, scaled by the holder's profile and the price level."""
    k = world.categories
    z = rng.standard_normal(len(cats), dtype=np.float32)
    usd = np.exp(k.mu[cats] + k.sigma[cats] * z) * world.users.spend_scale[users]
    usd *= price_level(year)
    cash = np.maximum(1, np.rint(usd / 20.0)) * 2000
    return np.where(cats == k.atm, cash, np.clip(np.rint(usd * 100), 50, 5_000_000)).astype(
        np.int64)


@dataclass(frozen=True)
class Trips:
    """At most one trip per active user in a window: away from t0 to t1 (UTC seconds)."""

    dest: np.ndarray  # int32 city, -1 = stays home
    t0: np.ndarray
    t1: np.ndarray
    flight_s: np.ndarray

    def apply(self, rng: np.random.Generator, users: np.ndarray, ts_s: np.ndarray,
              city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move events to the trip city; nothing is paid while in the air (before take-off)."""
        dest, t0, t1, fl = self.dest[users], self.t0[users], self.t1[users], self.flight_s[users]
        away = dest >= 0
        back = rng.integers(0, 7200, len(ts_s))
        out_air = away & (ts_s >= t0) & (ts_s < t0 + fl)
        ts_s = np.where(out_air, t0 - 1 - back, ts_s)
        in_air = away & (ts_s >= t1) & (ts_s < t1 + fl)
        ts_s = np.where(in_air, t1 - 1 - back, ts_s)
        there = away & (ts_s >= t0) & (ts_s < t1)
        return ts_s, np.where(there, dest, city).astype(np.int32)


def plan_trips(world: World, rng: np.random.Generator, win: Window) -> Trips:
    """Who travels where and when in a (month-long) window."""
    n, c = win.active, world.cities
    who = np.flatnonzero(rng.random(n) < world.users.travel_rate[:n])
    k = len(who)
    home = world.users.home[who]
    dest = rng.choice(len(c), size=k, p=c.weight).astype(np.int32)
    dest = np.where(dest == home, (dest + 1) % len(c), dest)
    span = win.end_s - win.start_s
    t0 = win.start_s + DAY_S + (rng.random(k) * max(span - 5 * DAY_S, 1)).astype(np.int64)
    t1 = np.minimum(t0 + rng.integers(3 * DAY_S, 12 * DAY_S, k), win.end_s - DAY_S)
    km = haversine_km(c.lat[home], c.lon[home], c.lat[dest], c.lon[dest])
    flight = ((km / PLANE_KMH + 1.0) * 3600).astype(np.int64)
    ok = t1 - t0 > flight + 3 * 3600
    trips = Trips(np.full(n, -1, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64),
                  np.zeros(n, np.int64))
    parts = ((trips.dest, dest), (trips.t0, t0), (trips.t1, t1), (trips.flight_s, flight))
    for full, part in parts:
        full[who[ok]] = part[ok]
    return trips


_NOW_DAY = _HOURS[2] / _HOURS[2].max()  # live: chance a card is used at this local hour
_NOW_OWL = _HOUR_CUM[3] - np.concatenate([[0.0], _HOUR_CUM[3][:-1]])
_NOW_OWL = _NOW_OWL / _NOW_OWL.max()


def users_awake(world: World, rng: np.random.Generator, win: Window, n: int) -> np.ndarray:
    """``n`` payers for a short live window: activity weight x the local-hour rhythm at their
    home city right now (rejection sampling), so night-time use stays as rare as in history."""
    mid = (win.start_s + win.end_s) // 2
    picked: list[np.ndarray] = []
    need = n
    while need > 0:
        cand = sample_users(world, rng, 2 * need + 64, win.active)
        zone = world.cities.zone_id[world.users.home[cand]]
        now = np.full(len(cand), mid, dtype=np.int64)
        hour = ((now + win.tz.offset_min(zone, now).astype(np.int64) * 60) // 3600) % 24
        chance = np.where(world.users.night_owl[cand] > 0, _NOW_OWL[hour], _NOW_DAY[hour])
        keep = cand[rng.random(len(cand)) < chance][:need]
        picked.append(keep)
        need -= len(keep)
    return np.sort(np.concatenate(picked))


def genuine(world: World, rng: np.random.Generator, win: Window, n: int,
            trips: Trips | None = None) -> Events:
    """``n`` genuine payments in the window."""
    if win.shaped:
        users = sample_users(world, rng, n, win.active)
    else:
        users = users_awake(world, rng, win, n)
    cats = sample_categories(world, rng, users)
    if win.shaped:
        ts_s = shaped_times(world, rng, win, users, cats)
    else:
        ts_s = rng.integers(win.start_s, win.end_s, n)
    city = world.users.home[users]
    if trips is not None:
        ts_s, city = trips.apply(rng, users, ts_s, city)
    return spend(world, rng, win.year, users, ts_s, city, cats)
