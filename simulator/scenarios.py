"""Labelled fraud: five injected scenarios, four aimed at one rule each and one no rule sees.

- card_testing: a burst of 5–14 tiny online payments within 40 s (second-resolution
  timestamps, so ties happen) from a fraudster's city -> high_frequency.
- account_takeover: right after a genuine payment at home, 1–4 payments from a city
  >= 1500 km away, minutes later -> geo_mismatch.
- night_spend: a cloned card used in the holder's city at 01–04 local time -> unusual_hour.
- big_ticket: 1–2 purchases of 1,100–9,000 USD in the daytime -> high_amount.
- merchant_collusion: moderate daytime amounts at a home-town shop in on it -> no rule.
"""

from __future__ import annotations

import numpy as np

from simulator.cities import haversine_km
from simulator.events import GENUINE, SCENARIOS, Events, concat
from simulator.models import (
    JITTER_DEG,
    US,
    Window,
    channel_of,
    local_days,
    local_to_utc,
    pick_merchants,
    price_level,
    sample_categories,
    spend,
    wrap,
)
from simulator.world import World

FRAUD_RATE = 0.0025  # fraud rows per row
SHARE = np.array([0.28, 0.17, 0.15, 0.15, 0.25])  # of fraud rows, in SCENARIOS order
MEAN_LEN = np.array([7.3, 2.2, 2.0, 1.5, 2.0])  # fraud rows per incident
MIN_REMOTE_KM = 1500.0


def plan_incidents(rng: np.random.Generator, n_rows: int) -> list[np.ndarray]:
    """Per scenario, the number of rows of each incident (ATO lengths include the anchor);
    fraud never takes more than half of a window's rows."""
    counts = rng.poisson(n_rows * FRAUD_RATE * SHARE / MEAN_LEN)
    lens = [
        5 + np.minimum(rng.geometric(0.3, counts[0]) - 1, 9),
        2 + rng.binomial(3, 0.4, counts[1]),
        1 + rng.binomial(2, 0.5, counts[2]),
        1 + rng.binomial(1, 0.5, counts[3]),
        1 + rng.binomial(2, 0.5, counts[4]),
    ]
    scen = np.concatenate([np.full(c, s) for s, c in enumerate(counts)]).astype(np.int64)
    flat = np.concatenate(lens)
    order = rng.permutation(len(flat))
    keep = np.zeros(len(flat), dtype=bool)
    keep[order[np.cumsum(flat[order]) <= n_rows // 2]] = True
    return [flat[keep & (scen == s)] for s in range(len(SCENARIOS))]


def inject(world: World, rng: np.random.Generator, win: Window, lens: list[np.ndarray]) -> Events:
    """Events of all planned incidents (fraud rows plus the genuine ATO anchors)."""
    makers = (card_testing, account_takeover, night_spend, big_ticket, merchant_collusion)
    return concat([make(world, rng, win, n) for make, n in zip(makers, lens, strict=True)])


def _rows(world: World, rng: np.random.Generator, users, ts_s, city, merchant, cents,
          scenario: int, device) -> Events:
    n = len(users)
    c = world.cities
    return Events(
        user=users.astype(np.int32), ts=ts_s.astype(np.int64) * US, city=city.astype(np.int32),
        lat=c.lat[city] + rng.normal(0.0, JITTER_DEG, n),
        lon=c.lon[city] + rng.normal(0.0, JITTER_DEG, n),
        merchant=merchant.astype(np.int32), cents=cents.astype(np.int64),
        channel=channel_of(world, merchant), device=np.asarray(device, dtype=np.int32),
        scenario=np.full(n, scenario, dtype=np.int8),
    )


def _incident_steps(rng, lens: np.ndarray, lo: float, hi: np.ndarray) -> np.ndarray:
    """Offsets (s) of each incident's events from its start: cumulative random steps."""
    inc = np.repeat(np.arange(len(lens)), lens)
    step = lo + rng.random(len(inc)) * np.maximum(np.repeat(hi, lens) - lo, 0)
    total = np.cumsum(step)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return (total - total[first] + step[first]).astype(np.int64)


def _fraud_devices(world: World, rng, k: int) -> np.ndarray:
    return world.n_users + rng.integers(0, len(world.devices) - world.n_users, k)


def _pick(rng, names: tuple[str, ...], world: World, n: int) -> np.ndarray:
    ids = np.array([world.categories.id(x) for x in names], dtype=np.int16)
    return ids[rng.integers(0, len(ids), n)]


def _daytime(world: World, rng, win: Window, users: np.ndarray, lo: int, hi: int) -> np.ndarray:
    if not win.shaped:
        return rng.integers(win.start_s, win.end_s, len(users))
    local = local_days(rng, win, len(users)) + rng.integers(lo * 3600, hi * 3600, len(users))
    zone = world.cities.zone_id[world.users.home[users]]
    return wrap(local_to_utc(win, zone, local), win)


def card_testing(world: World, rng, win: Window, lens: np.ndarray) -> Events:
    k, n = len(lens), int(lens.sum())
    inc = np.repeat(np.arange(k), lens)
    span = int(min(40, max(1, win.end_s - win.start_s - 1)))
    t0 = rng.integers(win.start_s, max(win.start_s + 1, win.end_s - span), k)
    off = rng.integers(0, span, n)
    off = off[np.lexsort((off, inc))]
    city = rng.choice(len(world.cities), size=k, p=world.cities.weight)[inc]
    cats = _pick(rng, ("marketplace", "entertainment"), world, n)
    merchant = pick_merchants(world, rng, city, cats, np.ones(n, dtype=bool))
    cents = np.where(rng.random(n) < 0.4, 100, rng.integers(50, 500, n))
    users = rng.integers(0, win.active, k)[inc]
    return _rows(world, rng, users, np.minimum(t0[inc] + off, win.end_s - 1), city, merchant,
                 cents, 0, _fraud_devices(world, rng, k)[inc])


def account_takeover(world: World, rng, win: Window, lens: np.ndarray) -> Events:
    k = len(lens)
    users = rng.integers(0, win.active, k).astype(np.int32)
    home = world.users.home[users]
    room = win.end_s - win.start_s
    ta = win.start_s + (rng.random(k) * room * 0.8).astype(np.int64)
    anchor = spend(world, rng, win.year, users, ta, home, sample_categories(world, rng, users))
    nf = lens - 1
    inc = np.repeat(np.arange(k), nf)
    hi = np.maximum(np.minimum(1800.0, (win.end_s - 1 - ta) / np.maximum(nf, 1)), 60.0)
    ts_s = np.minimum(ta[inc] + _incident_steps(rng, nf, 60.0, hi), win.end_s - 1)
    remote = _remote_cities(world, rng, home)[inc]
    n = len(inc)
    cats = _pick(rng, ("electronics", "jewelry", "marketplace", "apparel"), world, n)
    merchant = pick_merchants(world, rng, remote, cats, rng.random(n) < 0.6)
    k_ = world.categories
    usd = np.exp(np.log(280.0) + 0.7 * rng.standard_normal(n)) * price_level(win.year)
    cents = np.where(cats == k_.atm, np.maximum(1, np.rint(usd / 20)) * 2000, np.rint(usd * 100))
    fraud = _rows(world, rng, users[inc], ts_s, remote, merchant, cents, 1,
                  _fraud_devices(world, rng, k)[inc])
    return concat([anchor, fraud])


def _remote_cities(world: World, rng, home: np.ndarray) -> np.ndarray:
    c = world.cities
    cand = rng.choice(len(c), size=(len(home), 6), p=c.weight)
    d = haversine_km(c.lat[home][:, None], c.lon[home][:, None], c.lat[cand], c.lon[cand])
    best = cand[np.arange(len(home)), np.argmax(d, axis=1)]
    far = np.argmax(haversine_km(c.lat[:, None], c.lon[:, None], c.lat[None, :],
                                 c.lon[None, :]), axis=1)
    return np.where(d.max(axis=1, initial=0) >= MIN_REMOTE_KM, best, far[home]).astype(np.int32)


def night_spend(world: World, rng, win: Window, lens: np.ndarray) -> Events:
    """Time first, then a holder whose home city is at 01–03 local time then."""
    c, u = world.cities, world.users
    t = rng.integers(win.start_s, max(win.start_s + 1, win.end_s - 3600), len(lens))
    off = win.tz.offset_min(c.zone_id[None, :], t[:, None]).astype(np.int64)
    hour = ((t[:, None] + off * 60) // 3600) % 24
    active = np.bincount(u.home[: win.active], minlength=len(c))
    w = np.where((hour >= 1) & (hour <= 3), c.weight * (active > 0), 0.0)
    ok = w.sum(axis=1) > 0
    t, w, lens = t[ok], w[ok], lens[ok]
    cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    city = np.minimum((cum < rng.random(len(t))[:, None]).sum(axis=1), len(c) - 1)
    users = u.by_city[u.city_start[city] + (rng.random(len(t)) * active[city]).astype(np.int64)]
    inc = np.repeat(np.arange(len(t)), lens)
    hi = np.full(len(t), 1800.0)
    ts_s = np.minimum(t[inc] + _incident_steps(rng, lens, 300.0, hi), win.end_s - 1)
    n = len(inc)
    cats = _pick(rng, ("atm", "electronics", "fuel", "entertainment", "marketplace"), world, n)
    merchant = pick_merchants(world, rng, city[inc], cats, np.zeros(n, dtype=bool))
    usd = np.exp(np.log(160.0) + 0.6 * rng.standard_normal(n)) * price_level(win.year)
    cash = cats == world.categories.atm
    cents = np.where(cash, np.maximum(1, np.rint(usd / 20)) * 2000, np.rint(usd * 100))
    dev = np.where(channel_of(world, merchant) == 1, _fraud_devices(world, rng, n), -1)
    return _rows(world, rng, users[inc], ts_s, city[inc], merchant, cents, 2, dev)


def big_ticket(world: World, rng, win: Window, lens: np.ndarray) -> Events:
    k = len(lens)
    users = rng.integers(0, win.active, k).astype(np.int32)
    t = _daytime(world, rng, win, users, 10, 19)
    inc = np.repeat(np.arange(k), lens)
    hi = np.minimum(7200.0, np.maximum((win.end_s - 1 - t) / 2, 1.0))
    ts_s = np.minimum(t[inc] + _incident_steps(rng, lens, 1.0, hi), win.end_s - 1)
    n = len(inc)
    home = world.users.home[users][inc]
    cats = _pick(rng, ("electronics", "jewelry", "airline", "hotel"), world, n)
    merchant = pick_merchants(world, rng, home, cats, rng.random(n) < 0.4)
    cents = np.rint(np.exp(rng.uniform(np.log(1100.0), np.log(9000.0), n)) * 100)
    dev = np.where(channel_of(world, merchant) == 1, _fraud_devices(world, rng, n), -1)
    return _rows(world, rng, users[inc], ts_s, home, merchant, cents, 3, dev)


def merchant_collusion(world: World, rng, win: Window, lens: np.ndarray) -> Events:
    """Each victim is charged 1–3 times (daytime, any day) by one colluding home-town shop."""
    k = len(lens)
    users = rng.integers(0, win.active, k).astype(np.int32)
    inc = np.repeat(np.arange(k), lens)
    home = world.users.home[users]
    cats = _pick(rng, ("restaurant", "apparel", "home_improvement", "grocery"), world, k)
    m = world.merchants
    key = home.astype(np.int64) * len(world.categories.name) + cats
    shop = m.pos_start[key] + m.pos_count[key] - 1  # the least popular shop of that kind
    ts_s = _daytime(world, rng, win, users[inc], 9, 19)
    usd = np.exp(np.log(110.0) + 0.5 * rng.standard_normal(len(inc))) * price_level(win.year)
    cents = np.rint(np.minimum(usd, 900.0) * 100)
    return _rows(world, rng, users[inc], ts_s, home[inc], shop[inc], cents, 4,
                 np.full(len(inc), -1))



GROUP_RATE = 0.00004  # genuine quick-fire bursts per row (false positives of high_frequency)


def group_payments(world: World, rng, win: Window, n_rows: int) -> Events:
    """Genuine look-alikes of card testing: one card paying for a group at a kiosk, 5–7
    small payments within 50 s at a home-town shop. Labelled genuine."""
    k = min(int(rng.poisson(n_rows * GROUP_RATE)), n_rows // 28)
    lens = 5 + rng.integers(0, 3, k)
    inc = np.repeat(np.arange(k), lens)
    n = len(inc)
    users = rng.integers(0, win.active, k).astype(np.int32)
    t0 = _daytime(world, rng, win, users, 11, 21)
    off = rng.integers(0, 50, n)
    ts_s = np.minimum(t0[inc] + off[np.lexsort((off, inc))], win.end_s - 1)
    home = world.users.home[users]
    cats = _pick(rng, ("fast_food", "entertainment"), world, k)[inc]
    merchant = pick_merchants(world, rng, home[inc], cats, np.zeros(n, dtype=bool))
    cents = rng.integers(300, 4000, n)
    return _rows(world, rng, users[inc], ts_s, home[inc], merchant, cents, GENUINE,
                 np.full(n, -1))
