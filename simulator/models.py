"""Genuine spending: who pays, when (local day/hour rhythm), where (home or a trip), for what.

All samplers are vectorised over numpy arrays and draw from the ``Generator`` they are given,
so a window of events is a pure function of (world, seed of the window, row count).

Where a payment happens (``lat``/``lon``): at the shop for card-present payments (shops are
spread over the metro); for online payments, where the holder is, as the IP address places
them: at home (within the metro) or in the trip city, and now and then at the country's
largest city, where a mobile carrier's gateway geolocates phones. Merchant-initiated bills
(subscriptions) are placed at the holder's home, wherever the holder is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.cards import DORMANT_FACTOR, DORMANT_SHARE, spread
from simulator.events import GENUINE, Events
from simulator.tz import OffsetGrid, OffsetTable
from simulator.world import ATM, BIG_SIGMA, SUBSCRIPTION, TRANSIT, World

US = 1_000_000
DAY_S = 86_400
# Local hour profiles (relative weights) by HOUR_KINDS: day, evening, any, commute.
_HOURS = np.array([
    [.3, .2, .1, .1, .1, .3, 1, 2.5, 4, 5.5, 6.5, 7, 7.5, 7, 6.5, 6.5, 6.5, 6.5, 6, 5, 4, 3, 1.8,
     .8],
    [.8, .5, .3, .2, .1, .2, .5, 1.5, 2.5, 3, 3.5, 5.5, 7.5, 6, 4, 3.5, 4.5, 6.5, 8.5, 9, 8, 6, 4,
     2],
    [.5, .35, .25, .2, .2, .6, 1.5, 3, 4.5, 5.5, 6, 6.5, 6.5, 6.5, 6, 6, 6, 6, 6, 5.5, 5, 4, 3, 2],
    [.2, .1, .05, .05, .2, 1, 4, 9, 9, 5, 3, 3, 3.5, 3, 3, 3.5, 5, 8, 8, 5, 3, 2, 1.2, .6],
])
# Night-shift workers: awake from the evening to the morning.
_NIGHT = np.array([6, 6, 5, 4, 3, 1.5, .5, .5, .5, 1, 1.5, 2, 2.5, 2.5, 2.5, 2.5, 3, 3.5, 4, 4.5,
                   5, 6, 6.5, 6.5])
_WEEKDAY = np.array([0.92, 0.94, 0.96, 1.0, 1.15, 1.2, 0.85])  # Monday .. Sunday
N_KINDS = len(_HOURS)
GPS_KM = 0.05  # card-present: the shop's place
IP_KM = 2.0  # online at home: where the IP address puts the holder
MOBILE_GATEWAY = 0.03  # online payments geolocated to the country's largest city
SMALL_TICKETS = 0.3  # small payments cards took over from cash by 2025 (share of payments)
ROUND_PRICE = 0.12  # genuine prices in whole units (cash-like, menus, fees)
# US CPI-U annual averages (BLS), 2000-2025, for indexing amounts to 2013 prices.
_CPI = {2000: 172.2, 2001: 177.1, 2002: 179.9, 2003: 184.0, 2004: 188.9, 2005: 195.3,
        2006: 201.6, 2007: 207.3, 2008: 215.3, 2009: 214.5, 2010: 218.1, 2011: 224.9,
        2012: 229.6, 2013: 233.0, 2014: 236.7, 2015: 237.0, 2016: 240.0, 2017: 245.1,
        2018: 251.1, 2019: 255.7, 2020: 258.8, 2021: 271.0, 2022: 292.7, 2023: 304.7,
        2024: 313.7, 2025: 322.0}


def _cum(rows: np.ndarray) -> np.ndarray:
    c = np.cumsum(rows / rows.sum(axis=-1, keepdims=True), axis=-1)
    c[..., -1] = 1.0
    return c


_HOUR_CUM = _cum(np.concatenate([_HOURS, 0.3 * _HOURS / _HOURS.sum(1, keepdims=True)
                                 + 0.7 * _NIGHT / _NIGHT.sum()]))
_LUT_SIZE = 4096  # inverse-CDF lookup: hour = _HOUR_LUT[profile, uniform slot]
_HOUR_LUT = np.stack([np.searchsorted(c, (np.arange(_LUT_SIZE) + 0.5) / _LUT_SIZE, side="right")
                      for c in _HOUR_CUM]).astype(np.int64)


@dataclass(frozen=True)
class Window:
    """A span of time (at least a day) to fill with events."""

    start_s: int  # UTC seconds, inclusive
    end_s: int  # UTC seconds, exclusive
    year: int  # sets price level and the online share
    tz: OffsetTable | OffsetGrid  # UTC offsets lookup covering the window


def inflation(year: int) -> float:
    """US consumer prices of ``year`` relative to 2013 (2.5 % a year outside the table)."""
    if year in _CPI:
        return _CPI[year] / _CPI[2013]
    edge = 2000 if year < 2000 else 2025
    return _CPI[edge] / _CPI[2013] * 1.025 ** (year - edge)


def online_share(year: int) -> float:
    """Share of the online-capable spend that happens online, growing 2000 -> 2025."""
    return float(0.12 + 0.88 / (1.0 + np.exp(-(year - 2012) / 3.5)))


def month_index(ts_s: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of UTC instants."""
    return np.asarray(ts_s, dtype="datetime64[s]").astype("datetime64[M]").astype(np.int64)


def card_weights(world: World, rng: np.random.Generator, win: Window) -> np.ndarray:
    """Cumulative payment weight of every card in the window: rate x open share x dormancy."""
    cards = world.cards
    w = cards.rate * cards.open_share(win.start_s, win.end_s)
    dormant = rng.random(len(w)) < DORMANT_SHARE
    w = np.where(dormant, w * DORMANT_FACTOR, w)
    if w.sum() <= 0:  # no card open: the cards issued closest to the window stand in
        w = cards.rate * (cards.issue_s == cards.issue_s[np.argmin(
            np.abs(cards.issue_s - win.start_s))])
    return np.cumsum(w)


def sample_cards(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """``n`` payers by weight, in card order (sorted uniforms: a cache-friendly search)."""
    gaps = np.cumsum(rng.standard_exponential(n + 1))
    cards = np.searchsorted(cum, gaps[:-1] * (cum[-1] / gaps[-1]), side="right")
    return np.minimum(cards, len(cum) - 1).astype(np.int32)


def small_ticket_share(year: int) -> float:
    """Share of payments that cards took over from cash (contactless coffee, transit, snacks),
    growing 2000 -> 2025: the card mix shifts to small tickets as prices inflate."""
    return float(SMALL_TICKETS / (1.0 + np.exp(-(year - 2014) / 3.0)))


_CAT_CHUNK = 65_536  # events per step of draw_categories (its temporaries: a few chunks)


def draw_categories(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category of each event: how many entries of its profile's cumulative mix
    ``cum[rows]`` are <= the uniform ``u`` (``searchsorted(cum[row], u, "right")``), capped
    at the last category; a column of the mix at a time over chunks of events (small
    temporaries, no events x categories table)."""
    n_cat = cum.shape[1]
    out = np.zeros(len(rows), dtype=np.int64)
    for lo in range(0, len(rows), _CAT_CHUNK):
        r, v, count = rows[lo:lo + _CAT_CHUNK], u[lo:lo + _CAT_CHUNK], out[lo:lo + _CAT_CHUNK]
        for j in range(n_cat):  # a column at a time: as fast as one searchsorted
            count += cum[:, j][r] <= v
    return np.minimum(out, n_cat - 1)


def sample_categories(world: World, rng: np.random.Generator, cards: np.ndarray,
                      year: int) -> np.ndarray:
    n = len(cards)
    cats = draw_categories(world.cards.persona_cum, world.cards.persona[cards], rng.random(n))
    k = world.categories
    small = np.array([k.id(x) for x in ("fast_food", "transit", "pharmacy", "grocery")])
    swap = rng.random(n) < small_ticket_share(year)
    cats = np.where(swap, small[rng.integers(0, len(small), n)], cats)
    transit = k.id(TRANSIT)
    # only commuters tap transit; others buy a snack instead
    fast_food = k.id("fast_food")
    return np.where((cats == transit) & ~world.cards.commuter[cards], fast_food,
                    cats).astype(np.int16)


def local_to_utc(tz, zone: np.ndarray, local_s: np.ndarray) -> np.ndarray:
    """UTC seconds of local wall-clock seconds (DST gaps/overlaps resolve to a nearby instant)."""
    guess = local_s - tz.offset_min(zone, local_s).astype(np.int64) * 60
    return local_s - tz.offset_min(zone, guess).astype(np.int64) * 60


def confine(ts_s: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
    """Move instants into [lo, hi) by whole days (keeps the local hour); clip what cannot."""
    lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), ts_s.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), ts_s.shape)
    out = np.flatnonzero((ts_s < lo) | (ts_s >= hi))  # few: fix those only
    if len(out) == 0:
        return ts_s
    t, lo_, hi_ = ts_s[out], lo[out], np.maximum(hi[out], lo[out] + 1)
    t = t - np.where(t >= hi_, (t - hi_) // DAY_S + 1, 0) * DAY_S
    t = t + np.where(t < lo_, (lo_ - t + DAY_S - 1) // DAY_S, 0) * DAY_S
    ts_s = ts_s.copy()
    ts_s[out] = np.clip(t, lo_, hi_ - 1)
    return ts_s


def local_days(rng: np.random.Generator, win: Window, n: int) -> np.ndarray:
    """Midnights (as wall-clock seconds) of days drawn with the weekly rhythm."""
    first = win.start_s // DAY_S * DAY_S
    days = np.arange(first, win.end_s, DAY_S, dtype=np.int64)
    weight = _WEEKDAY[((days // DAY_S) + 3) % 7]
    day = np.searchsorted(np.cumsum(weight) / weight.sum(), rng.random(n), side="right")
    return days[np.minimum(day, len(days) - 1)]


def local_times(world: World, rng: np.random.Generator, win: Window, zone: np.ndarray,
                profile: np.ndarray) -> np.ndarray:
    """UTC seconds inside the window with an hour ``profile`` at the local time of ``zone``."""
    n = len(zone)
    hour = _HOUR_LUT[profile, rng.integers(0, _LUT_SIZE, n)]
    local = local_days(rng, win, n) + hour * 3600 + rng.integers(0, 3600, n)
    return confine(local_to_utc(win.tz, zone, local), win.start_s, win.end_s)


def shaped_times(world: World, rng: np.random.Generator, win: Window, cards: np.ndarray,
                 cats: np.ndarray) -> np.ndarray:
    """UTC seconds with the local rhythm of each card's home city, while the card is open."""
    c = world.cards
    profile = world.categories.hours[cats] + N_KINDS * c.night_shift[cards]
    ts = local_times(world, rng, win, world.cities.zone_id[c.home[cards]], profile)
    lo = np.maximum(c.issue_s[cards], win.start_s)
    hi = np.minimum(c.close_s[cards], win.end_s)
    ok = hi > lo
    return np.where(ok, confine(ts, lo, hi), ts)


def online_place(world: World, rng: np.random.Generator, cards: np.ndarray, city: np.ndarray,
                 away: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(city, lat, lon) where the holder's IP places an online payment."""
    c, k = world.cities, world.cards
    n = len(cards)
    gateway = rng.random(n) < MOBILE_GATEWAY
    city = np.where(gateway, world.gateway[city], city).astype(np.int32)
    at_home = ~away & ~gateway
    km = np.where(at_home, IP_KM, world.metro_km[city])
    base_lat = np.where(at_home, k.home_lat[cards], c.lat[city])
    base_lon = np.where(at_home, k.home_lon[cards], c.lon[city])
    lat, lon = jitter(rng, base_lat, base_lon, km)
    return city, lat, lon


def jitter(rng, lat, lon, km) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered around (lat, lon) by ``km`` (arrays of any numeric type)."""
    return spread(rng, np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64),
                  np.asarray(km, dtype=np.float64))


def shop_place(world: World, rng: np.random.Generator,
               merchant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = world.merchants
    return jitter(rng, m.lat[merchant], m.lon[merchant], np.full(len(merchant), GPS_KM))


def spend(world: World, rng: np.random.Generator, win: Window, cards: np.ndarray,
          ts_s: np.ndarray, city: np.ndarray, away: np.ndarray, cats: np.ndarray) -> Events:
    """Genuine payments of ``cards`` at ``ts_s`` in ``city`` for categories ``cats``."""
    n = len(cards)
    k = world.categories
    online = rng.random(n) < k.online_max[cats] * online_share(win.year)
    merchant = pick_merchants(world, rng, city, cats, online)
    channel = channel_of(world, merchant)
    on = np.flatnonzero(channel == 1)
    off = np.flatnonzero(channel != 1)
    lat, lon = np.empty(n), np.empty(n)
    lat[off], lon[off] = shop_place(world, rng, merchant[off])
    place = city.copy()
    place[on], lat[on], lon[on] = online_place(world, rng, cards[on], city[on], away[on])
    slot = (rng.random(len(on)) * world.cards.n_devices[cards[on]]).astype(np.int64)
    device = np.full(n, -1, dtype=np.int64)
    device[on] = world.cards.device_at(world.seed, cards[on], ts_s[on], slot)
    return Events(
        user=cards, ts=ts_s * US, city=place.astype(np.int32), lat=lat, lon=lon,
        merchant=merchant, cents=amounts(world, rng, win.year, cards, cats, city),
        channel=channel, device=device, scenario=np.full(n, GENUINE, dtype=np.int8),
    )


def channel_of(world: World, merchant: np.ndarray) -> np.ndarray:
    """0 pos, 1 online (an online merchant), 2 atm (the cash category)."""
    m = world.merchants
    online = merchant >= m.online_start[0]
    return np.where(m.category[merchant] == world.categories.id(ATM), 2, online).astype(np.int8)


def pick_merchants(world: World, rng: np.random.Generator, city: np.ndarray, cats: np.ndarray,
                   online: np.ndarray) -> np.ndarray:
    """A shop of category ``cats`` in ``city`` (or an online one); popular shops more often."""
    m = world.merchants
    key = city.astype(np.int64) * len(world.categories.name) + cats
    online = (online & (m.online_count[cats] > 0)) | (m.pos_count[key] == 0)
    start = np.where(online, m.online_start[cats], m.pos_start[key])
    count = np.where(online, m.online_count[cats], m.pos_count[key])
    return (start + (rng.random(len(cats)) ** 2 * count).astype(np.int64)).astype(np.int32)


def amounts(world: World, rng: np.random.Generator, year: int, cards: np.ndarray,
            cats: np.ndarray, city: np.ndarray) -> np.ndarray:
    """Cents: log-normal per category x the holder's profile x the place's price level x
    inflation; ATM cash in twenties, transit at the city's fare, some prices in whole units."""
    k = world.categories
    z = rng.standard_normal(len(cats), dtype=np.float32)
    big = rng.random(len(cats)) < k.big_share[cats]
    log_usd = np.where(big, k.big_mu[cats] + BIG_SIGMA * z, k.mu[cats] + k.sigma[cats] * z)
    usd = np.exp(log_usd) * world.cards.spend_scale[cards]
    usd *= world.price[city] * inflation(year)
    cents = np.where(rng.random(len(cats)) < ROUND_PRICE, np.maximum(1, np.rint(usd)) * 100,
                     np.rint(usd * 100))
    cash = np.maximum(1, np.rint(usd / 20.0)) * 2000
    fare = np.rint(world.fare[city] * inflation(year) * 4) * 25
    out = np.where(cats == k.id(ATM), cash, np.clip(cents, 50, 5_000_000))
    return np.where(cats == k.id(TRANSIT), fare, out).astype(np.int64)


def genuine(world: World, rng: np.random.Generator, win: Window, cum: np.ndarray,
            n: int) -> Events:
    """``n`` genuine payments in the window (``cum``: the cards' cumulative weights)."""
    from simulator.travel import apply_trips

    cards = sample_cards(rng, cum, n)
    cats = sample_categories(world, rng, cards, win.year)
    ts_s = shaped_times(world, rng, win, cards, cats)
    ts_s, city, away = apply_trips(world, rng, win, cards, ts_s)
    # away from home, transit is the local one; subscriptions are never chosen by hand
    cats = np.where(cats == world.categories.id(SUBSCRIPTION), 0, cats).astype(np.int16)
    return spend(world, rng, win, cards, ts_s, city, away, cats)
