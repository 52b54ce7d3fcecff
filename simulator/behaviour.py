"""Genuine behaviour that looks odd to a rule: recurring bills at night, transit taps in bursts.

- Recurring bills: each card holds 0–4 subscriptions (more of them in later years), each billed
  once a month on its own day and local hour by the merchant's batch run — often between
  midnight and 05:00 — at the holder's home address (merchant-initiated, no device), wherever
  the holder is (a traveller's bill "at home" while paying abroad).
- Transit bursts: a commuter paying the fares of a group at a gate, 2–6 taps seconds apart.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from simulator.cards import mix64
from simulator.events import GENUINE, Events
from simulator.models import (
    DAY_S,
    IP_KM,
    US,
    Window,
    inflation,
    jitter,
    local_days,
    local_to_utc,
    month_index,
    pick_merchants,
    shop_place,
)
from simulator.world import SUBSCRIPTION, TRANSIT, World, build_world

MAX_SUBS = 4
_SUB_CHUNK = 16_384  # cards per step when the subscription table is built
_PLANS = np.array([4.99, 7.99, 9.99, 9.99, 12.99, 14.99, 19.99, 29.99, 49.99])  # 2013 USD
BILL_SHARE_CAP = 0.05  # bills never take more than this share of a window's rows
GROUP_RATE = 0.0012  # transit group bursts per row
_GROUP_SIZES = np.array([2, 3, 4, 5, 6])
_GROUP_P = np.array([0.45, 0.25, 0.15, 0.09, 0.06])


def _subscriptions(world: World, cards: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flattened (card, day 1..28, local hour, minute, plan price) of every subscription."""
    card = np.repeat(cards, MAX_SUBS).astype(np.int64)
    slot = np.tile(np.arange(MAX_SUBS), len(cards))
    h = mix64(card * MAX_SUBS + slot, world.seed ^ 0x5B5)
    since = 2001 + (h % 23)  # the year this subscription starts: more of them later on
    held = slot < (h >> 5) % (MAX_SUBS + 1)
    night = (h >> 15) % 100 < 30
    hour = np.where(night, (h >> 17) % 5, 6 + (h >> 17) % 17)
    return (card[held], 1 + (h[held] >> 22) % 28, hour[held], (h[held] >> 28) % 60,
            _PLANS[(h[held] >> 34) % len(_PLANS)], since[held])


def _cut(table: tuple[np.ndarray, ...], keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """The rows of a stored subscriptions table whose card is marked in ``keep`` (a bool per
    card), in table order (ascending card)."""
    sel = np.flatnonzero(keep[table[0]])
    return tuple(a[sel] for a in table)


def _widen(table: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """The small stored columns as ``_subscriptions`` returns them (int64, plan prices)."""
    card, day, hour, minute, plan, since = table
    return (card.astype(np.int64), day.astype(np.int64), hour.astype(np.int64),
            minute.astype(np.int64), _PLANS[plan], since.astype(np.int64))


def _window_subscriptions(world: World, win: Window, part: int,
                          parts: int) -> tuple[np.ndarray, ...]:
    """``_subscriptions(world, cards)`` of the cards open in the window with
    ``card % parts == part``; the window's open cards are found once for all its pieces (not
    once per piece over every card of the world)."""
    table = _open_subscriptions(world.seed, world.n_cards, world.start_year, world.end_year,
                                win.start_s, win.end_s)
    if parts > 1:
        sel = np.flatnonzero(table[0] % parts == part)
        table = tuple(a[sel] for a in table)
    return _widen(table)


@lru_cache(maxsize=2)
def _open_subscriptions(seed: int, n_cards: int, start_year: int, end_year: int,
                        start_s: int, end_s: int) -> tuple[np.ndarray, ...]:
    """The stored subscriptions of the cards open at some time in [start_s, end_s)."""
    k = build_world(seed, n_cards, start_year, end_year).cards
    return _cut(_all_subscriptions(seed, n_cards, start_year, end_year),
                (k.issue_s < end_s) & (k.close_s > start_s))


@lru_cache(maxsize=2)
def _all_subscriptions(seed: int, n_cards: int, start_year: int,
                       end_year: int) -> tuple[np.ndarray, ...]:
    """Every card's subscriptions, stored small (10 bytes each; a plan as its index in the
    ascending _PLANS)."""
    world = build_world(seed, n_cards, start_year, end_year)
    chunks = []
    for first in range(0, n_cards, _SUB_CHUNK):  # in chunks: the int64 temporaries stay small
        card, day, hour, minute, plan, since = _subscriptions(
            world, np.arange(first, min(first + _SUB_CHUNK, n_cards)))
        chunks.append((card.astype(np.int32), day.astype(np.int8), hour.astype(np.int8),
                       minute.astype(np.int8), np.searchsorted(_PLANS, plan).astype(np.int8),
                       since.astype(np.int16)))
    return tuple(np.concatenate(cols) for cols in zip(*chunks, strict=True))


def recurring_bills(world: World, rng: np.random.Generator, win: Window, n_rows: int,
                    part: int = 0, parts: int = 1) -> Events:
    """This window's bills of the open cards ``card % parts == part`` (at most a cap)."""
    k = world.cards
    card, day, hour, minute, plan, since = _window_subscriptions(world, win, part, parts)
    zone = world.cities.zone_id[k.home[card]]
    times = []
    for m in np.unique(month_index(np.array([win.start_s, win.end_s - 1]))).tolist():
        start = int(np.datetime64(m, "M").astype("datetime64[s]").astype(np.int64))
        local = start + (day - 1) * DAY_S + hour * 3600 + minute * 60
        near = (local >= win.start_s - DAY_S) & (local < win.end_s + DAY_S)
        utc = np.full(len(local), -1, dtype=np.int64)  # far from the window: dropped below
        utc[near] = local_to_utc(win.tz, zone[near], local[near])
        times.append((utc, m))
    ts = np.concatenate([t for t, _ in times]) if times else np.zeros(0, np.int64)
    year = np.concatenate([np.full(len(card), 1970 + m // 12) for _, m in times])
    rep = len(times)
    card, plan, since = np.tile(card, rep), np.tile(plan, rep), np.tile(since, rep)
    ok = (ts >= win.start_s) & (ts < win.end_s) & (ts >= k.issue_s[card]) & (
        ts < k.close_s[card]) & (year >= since)
    idx = np.flatnonzero(ok)
    cap = int(n_rows * BILL_SHARE_CAP)
    if len(idx) > cap:
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    card, ts = card[idx].astype(np.int32), ts[idx]
    n = len(idx)
    cats = np.full(n, world.categories.id(SUBSCRIPTION), dtype=np.int16)
    merchant = pick_merchants(world, rng, k.home[card], cats, np.ones(n, dtype=bool))
    lat, lon = jitter(rng, k.home_lat[card], k.home_lon[card], np.full(n, IP_KM))
    cents = np.floor(plan[idx] * inflation(win.year)) * 100 + 99
    return Events(user=card, ts=ts * US, city=k.home[card].astype(np.int32), lat=lat, lon=lon,
                  merchant=merchant, cents=cents.astype(np.int64),
                  channel=np.ones(n, dtype=np.int8), device=np.full(n, -1, dtype=np.int64),
                  scenario=np.full(n, GENUINE, dtype=np.int8))


def transit_bursts(world: World, rng: np.random.Generator, win: Window, cum: np.ndarray,
                   n_rows: int) -> Events:
    """Commuters paying a group's fares at a gate: 2–6 taps 3–12 s apart, at home."""
    from simulator.models import sample_cards

    k = world.cards
    groups = min(int(rng.poisson(n_rows * GROUP_RATE)), n_rows // 20)
    cand = sample_cards(rng, cum, groups * 3 + 1)
    cards = cand[k.commuter[cand]][:groups]
    g = len(cards)
    size = rng.choice(_GROUP_SIZES, size=g, p=_GROUP_P)
    inc = np.repeat(np.arange(g), size)
    n = len(inc)
    home = k.home[cards]
    hour = rng.choice(np.array([7, 8, 9, 12, 16, 17, 18, 19, 20]), size=g)
    local = local_days(rng, win, g) + hour * 3600 + rng.integers(0, 3600, g)
    t0 = local_to_utc(win.tz, world.cities.zone_id[home], local)
    step = rng.integers(3, 13, n)
    first = np.repeat(np.cumsum(size) - size, size)
    off = np.cumsum(step) - np.cumsum(step)[first]
    ts = np.clip(t0[inc] + off, win.start_s, win.end_s - 1)
    ts = np.clip(ts, k.issue_s[cards][inc], np.maximum(k.close_s[cards][inc] - 1,
                                                      k.issue_s[cards][inc]))
    ts = np.clip(ts, win.start_s, win.end_s - 1)  # a card not open yet (no card open at all)
    cats = np.full(g, world.categories.id(TRANSIT), dtype=np.int16)
    merchant = pick_merchants(world, rng, home, cats, np.zeros(g, dtype=bool))[inc]
    lat, lon = shop_place(world, rng, merchant)
    fare = np.rint(world.fare[home] * inflation(win.year) * 4) * 25
    return Events(user=cards[inc].astype(np.int32), ts=ts.astype(np.int64) * US,
                  city=home[inc].astype(np.int32), lat=lat, lon=lon, merchant=merchant,
                  cents=fare[inc].astype(np.int64), channel=np.zeros(n, dtype=np.int8),
                  device=np.full(n, -1, dtype=np.int64),
                  scenario=np.full(n, GENUINE, dtype=np.int8))

