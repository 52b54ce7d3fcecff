"""Labelled fraud: seven scenarios written from how fraud happens, not from the rule book.

- counterfeit: a skimmed card cloned and used at shops and ATMs in another city (mostly the
  same country), 1–5 times over a few hours, sometimes at night.
- card_testing: a bot checks stolen numbers with 5–14 tiny online payments within 40 s.
- slow_card_testing: the same, 2–6 payments minutes to hours apart (under velocity rules).
- account_takeover: stolen credentials, 1–4 online purchases within the hour, from the
  fraudster's device and city (often domestic), or from the victim's own infected phone
  (then from the victim's home); some amounts just under 1,000.
- cnp_big_ticket: stolen card details spent online on big tickets; many just under 1,000.
- merchant_compromise: a shop in the holder's town charges it 1–3 times in the daytime (no
  rule sees it).
- lost_stolen: a stolen wallet: 2–6 contactless payments in the holder's town within hours.

The mix drifts: card-present fraud (counterfeit, lost/stolen) dominates early, card-not-present
fraud grows with online shopping and chip cards (``scenario_shares``). Fraud devices appear only
on online payments; a fraudster's device serves many victims, a testing bot's device is fresh.
"""

from __future__ import annotations

import numpy as np

from simulator.cards import mix64
from simulator.events import SCENARIOS, Events, concat
from simulator.models import (
    IP_KM,
    US,
    Window,
    channel_of,
    inflation,
    jitter,
    local_times,
    pick_merchants,
    sample_cards,
    shop_place,
)
from simulator.world import World

Rng = np.random.Generator
FRAUD_RATE = 0.0025  # fraud rows per row
# shares of fraud rows in SCENARIOS order, in 2000 and in 2025 (logistic drift around 2012)
SHARE_EARLY = np.array([0.40, 0.05, 0.02, 0.05, 0.13, 0.15, 0.20])
SHARE_LATE = np.array([0.04, 0.20, 0.10, 0.25, 0.22, 0.10, 0.09])
MEAN_LEN = np.array([2.4, 7.3, 3.6, 2.2, 1.5, 2.0, 3.6])  # fraud rows per incident
N_FRAUDSTERS = 5_000  # devices of fraud rings, reused across victims
DOMESTIC = 0.6  # share of remote fraud from the victim's own country


def scenario_shares(year: int) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-(year - 2012) / 3.0))
    w = SHARE_EARLY + (SHARE_LATE - SHARE_EARLY) * s
    return w / w.sum()


def plan_incidents(rng: np.random.Generator, n_rows: int, year: int) -> list[np.ndarray]:
    """Per scenario, the number of rows of each incident; fraud never takes more than half
    of a window's rows."""
    share = scenario_shares(year)
    counts = rng.poisson(n_rows * FRAUD_RATE * share / MEAN_LEN)
    lens = [
        1 + rng.binomial(4, 0.35, counts[0]),
        5 + np.minimum(rng.geometric(0.3, counts[1]) - 1, 9),
        2 + rng.binomial(4, 0.4, counts[2]),
        1 + rng.binomial(3, 0.4, counts[3]),
        1 + rng.binomial(1, 0.5, counts[4]),
        1 + rng.binomial(2, 0.5, counts[5]),
        2 + rng.binomial(4, 0.4, counts[6]),
    ]
    scen = np.concatenate([np.full(c, s) for s, c in enumerate(counts)]).astype(np.int64)
    flat = np.concatenate(lens)
    order = rng.permutation(len(flat))
    keep = np.zeros(len(flat), dtype=bool)
    keep[order[np.cumsum(flat[order]) <= n_rows // 2]] = True
    return [flat[keep & (scen == s)] for s in range(len(SCENARIOS))]


def inject(world: World, rng: np.random.Generator, win: Window, cum: np.ndarray,
           lens: list[np.ndarray]) -> Events:
    makers = (counterfeit, card_testing, slow_card_testing, account_takeover, cnp_big_ticket,
              merchant_compromise, lost_stolen)
    return concat([make(world, rng, win, cum, n) for make, n in zip(makers, lens, strict=True)])


# --- helpers ----------------------------------------------------------------------------------


def _rows(world: World, rng, cards, ts_s, city, merchant, cents, scenario: int, device,
          lat=None, lon=None) -> Events:
    n = len(cards)
    channel = channel_of(world, merchant)
    if lat is None:
        lat, lon = shop_place(world, rng, merchant)
        c = world.cities
        olat, olon = jitter(rng, c.lat[city], c.lon[city], world.metro_km[city])
        lat, lon = np.where(channel == 1, olat, lat), np.where(channel == 1, olon, lon)
    return Events(
        user=np.asarray(cards, dtype=np.int32), ts=np.asarray(ts_s, dtype=np.int64) * US,
        city=np.asarray(city, dtype=np.int32), lat=lat, lon=lon,
        merchant=merchant.astype(np.int32), cents=np.asarray(cents).astype(np.int64),
        channel=channel, device=np.where(channel == 1, device, -1).astype(np.int64),
        scenario=np.full(n, scenario, dtype=np.int8),
    )


def _steps(rng: Rng, lens: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Offsets (s) of each incident's events from its start: cumulative random steps."""
    inc = np.repeat(np.arange(len(lens)), lens)
    step = lo + rng.random(len(inc)) * (hi - lo)
    total = np.cumsum(step)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return (total - total[first]).astype(np.int64)


def _pick(rng: Rng, names: tuple[str, ...], world: World, n: int) -> np.ndarray:
    ids = np.array([world.categories.id(x) for x in names], dtype=np.int16)
    return ids[rng.integers(0, len(ids), n)]


def _elsewhere(world: World, rng: Rng, home: np.ndarray, domestic: float) -> np.ndarray:
    """A city other than ``home``: in the same country with chance ``domestic``, else any."""
    from simulator.travel import destinations  # travel builds on models: imported late

    c = world.cities
    same = destinations(world, rng, home)
    anywhere = rng.choice(len(c), size=len(home), p=c.weight).astype(np.int32)
    anywhere = np.where(anywhere == home, (anywhere + 1) % len(c), anywhere)
    domestic_ok = c.country_id[same] == c.country_id[home]
    return np.where((rng.random(len(home)) < domestic) & domestic_ok, same,
                    anywhere).astype(np.int32)


def _ring_devices(world: World, rng: Rng, k: int) -> np.ndarray:
    return mix64(rng.integers(0, N_FRAUDSTERS, k) + (1 << 40), world.seed)


def _fresh_devices(world: World, rng: Rng, k: int) -> np.ndarray:
    return mix64(rng.integers(1 << 41, 1 << 62, k), world.seed)


def _clip(win: Window, ts: np.ndarray) -> np.ndarray:
    return np.clip(ts, win.start_s, win.end_s - 1)


def _lognormal_usd(rng: Rng, median: float, sigma: float, n: int) -> np.ndarray:
    return np.exp(np.log(median) + sigma * rng.standard_normal(n))


def _just_under(rng: Rng, n: int) -> np.ndarray:
    """Cents just under the 1,000.00 a limit or a rule might use (nominal)."""
    return rng.integers(85_000, 100_000, n)


def _incidents(rng: Rng, cum: np.ndarray, lens: np.ndarray
               ) -> tuple[int, np.ndarray, np.ndarray, int]:
    """``k`` incidents of ``lens`` events each: their victim cards (the scenario's first draw),
    each event's incident number, and the number of events."""
    k = len(lens)
    victims = sample_cards(rng, cum, k)
    inc = np.repeat(np.arange(k), lens)
    return k, victims, inc, len(inc)


# --- scenarios --------------------------------------------------------------------------------


def counterfeit(world: World, rng: Rng, win: Window, cum: np.ndarray,
                lens: np.ndarray) -> Events:
    k, victims, inc, n = _incidents(rng, cum, lens)
    city = _elsewhere(world, rng, world.cards.home[victims], 0.6)
    night = rng.random(k) < 0.15
    profile = np.where(night, 4 + 2, 2)  # night-shift 'any' profile or plain 'any'
    t0 = local_times(world, rng, win, world.cities.zone_id[city], profile)
    ts = _clip(win, t0[inc] + _steps(rng, lens, 300, 5400))
    cats = _pick(rng, ("atm", "atm", "electronics", "fuel", "apparel", "grocery", "jewelry"),
                 world, n)
    merchant = pick_merchants(world, rng, city[inc], cats, np.zeros(n, dtype=bool))
    usd = _lognormal_usd(rng, 150.0, 0.7, n) * inflation(win.year) * world.price[city[inc]]
    cash = cats == world.categories.id("atm")
    cents = np.where(cash, np.maximum(1, np.rint(usd / 20)) * 2000, np.rint(usd * 100))
    return _rows(world, rng, victims[inc], ts, city[inc], merchant, cents, 0,
                 np.full(n, -1))


def _testing(world: World, rng: Rng, win: Window, cum: np.ndarray, lens: np.ndarray,
             lo: float, hi: float, scenario: int) -> Events:
    k, victims, inc, n = _incidents(rng, cum, lens)
    city = rng.choice(len(world.cities), size=k, p=world.cities.weight).astype(np.int32)
    t0 = rng.integers(win.start_s, win.end_s, k)  # bots run at any hour
    ts = _clip(win, t0[inc] + _steps(rng, lens, lo, hi))
    cats = _pick(rng, ("marketplace", "entertainment", "telecom"), world, n)
    merchant = pick_merchants(world, rng, city[inc], cats, np.ones(n, dtype=bool))
    cents = np.where(rng.random(n) < 0.25, 100, rng.integers(50, 500, n))
    cents = np.where(rng.random(n) < 0.3, np.maximum(1, cents // 100) * 100, cents)
    device = np.where(rng.random(k) < 0.5, _ring_devices(world, rng, k),
                      _fresh_devices(world, rng, k))
    return _rows(world, rng, victims[inc], ts, city[inc], merchant, cents, scenario,
                 device[inc])


def card_testing(world: World, rng: Rng, win: Window, cum: np.ndarray,
                 lens: np.ndarray) -> Events:
    return _testing(world, rng, win, cum, lens, 0.0, 40.0 / 9, 1)


def slow_card_testing(world: World, rng: Rng, win: Window, cum: np.ndarray,
                      lens: np.ndarray) -> Events:
    return _testing(world, rng, win, cum, lens, 180.0, 7200.0, 2)


def account_takeover(world: World, rng: Rng, win: Window, cum: np.ndarray,
                     lens: np.ndarray) -> Events:
    k, victims, inc, n = _incidents(rng, cum, lens)
    cards = world.cards
    home = cards.home[victims]
    own = rng.random(k) < 0.3  # the victim's own phone, remotely controlled
    city = np.where(own, home, _elsewhere(world, rng, home, DOMESTIC)).astype(np.int32)
    t0 = local_times(world, rng, win, world.cities.zone_id[city], np.full(k, 2))
    ts = _clip(win, t0[inc] + _steps(rng, lens, 120, 2400))
    cats = _pick(rng, ("electronics", "jewelry", "marketplace", "apparel"), world, n)
    merchant = pick_merchants(world, rng, city[inc], cats, np.ones(n, dtype=bool))
    usd = _lognormal_usd(rng, 280.0, 0.7, n) * inflation(win.year) * world.price[home[inc]]
    cents = np.where(rng.random(n) < 0.25, _just_under(rng, n), np.rint(usd * 100))
    slot = (rng.random(k) * cards.n_devices[victims]).astype(np.int64)
    device = np.where(own, cards.device_at(world.seed, victims, t0, slot),
                      _ring_devices(world, rng, k))
    olat, olon = jitter(rng, world.cities.lat[city], world.cities.lon[city],
                         world.metro_km[city])
    lat = np.where(own, cards.home_lat[victims], olat)[inc]
    lon = np.where(own, cards.home_lon[victims], olon)[inc]
    lat, lon = jitter(rng, lat, lon, np.full(n, IP_KM))
    return _rows(world, rng, victims[inc], ts, city[inc], merchant, cents, 3, device[inc],
                 lat, lon)


def cnp_big_ticket(world: World, rng: Rng, win: Window, cum: np.ndarray,
                   lens: np.ndarray) -> Events:
    k, victims, inc, n = _incidents(rng, cum, lens)
    home = world.cards.home[victims]
    city = _elsewhere(world, rng, home, 0.5)
    t0 = local_times(world, rng, win, world.cities.zone_id[city], np.full(k, 2))
    ts = _clip(win, t0[inc] + _steps(rng, lens, 60, 3600))
    cats = _pick(rng, ("electronics", "jewelry", "airline", "hotel"), world, n)
    merchant = pick_merchants(world, rng, city[inc], cats, np.ones(n, dtype=bool))
    usd = _lognormal_usd(rng, 1500.0, 0.5, n) * inflation(win.year)
    cents = np.where(rng.random(n) < 0.45, _just_under(rng, n), np.rint(usd * 100))
    return _rows(world, rng, victims[inc], ts, city[inc], merchant, cents, 4,
                 _ring_devices(world, rng, k)[inc])


def merchant_compromise(world: World, rng: Rng, win: Window, cum: np.ndarray,
                        lens: np.ndarray) -> Events:
    """A shop in on it: picked among its town's shops like any other (not the least used)."""
    k, victims, inc, n = _incidents(rng, cum, lens)
    home = world.cards.home[victims]
    cats = _pick(rng, ("restaurant", "apparel", "home_improvement", "grocery", "fuel"), world, k)
    shop = pick_merchants(world, rng, home, cats, np.zeros(k, dtype=bool))
    t0 = local_times(world, rng, win, world.cities.zone_id[home], np.zeros(k, dtype=np.int64))
    days = _steps(rng, lens, 1.0, 4.0) // 1 * 86_400  # a charge on each of a few days
    ts = _clip(win, t0[inc] + days + rng.integers(-3600, 3600, n))
    usd = _lognormal_usd(rng, 110.0, 0.5, n) * inflation(win.year) * world.price[home[inc]]
    cents = np.rint(np.minimum(usd, 900.0) * 100)
    return _rows(world, rng, victims[inc], ts, home[inc], shop[inc], cents, 5, np.full(n, -1))


def lost_stolen(world: World, rng: Rng, win: Window, cum: np.ndarray,
                lens: np.ndarray) -> Events:
    k, victims, inc, n = _incidents(rng, cum, lens)
    home = world.cards.home[victims]
    profile = np.where(rng.random(k) < 0.3, 4 + 1, 1)  # evenings, a third into the night
    t0 = local_times(world, rng, win, world.cities.zone_id[home], profile)
    ts = _clip(win, t0[inc] + _steps(rng, lens, 120, 3600))
    cats = _pick(rng, ("restaurant", "entertainment", "fast_food", "fuel", "grocery", "apparel"),
                 world, n)
    merchant = pick_merchants(world, rng, home[inc], cats, np.zeros(n, dtype=bool))
    usd = _lognormal_usd(rng, 45.0, 0.6, n) * inflation(win.year) * world.price[home[inc]]
    cents = np.rint(np.minimum(usd, 250.0) * 100)
    return _rows(world, rng, victims[inc], ts, home[inc], merchant, cents, 6, np.full(n, -1))
