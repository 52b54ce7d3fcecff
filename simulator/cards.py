"""Cards as processes: issue, closure, reissue, activity rate, dormant spells, devices.

A card is issued at some instant (cards are issued at a rate that follows the payment volume,
starting well before the first simulated year), lives an exponential lifetime, and is reissued
every ``REISSUE_YEARS`` (same holder and ``user_id``, new ``card_last4``). While open it pays at
its own rate: a log-normal multiple of the mean (most cards 0.3–3 payments a day, a heavy tail),
and in any month a few cards are dormant (almost no payments). The default number of cards is
derived from the row count and the years so that the mean density is ``DENSITY_PER_DAY``
payments per open card per day, whatever ``--rows`` is.

Devices (phones, laptops) belong to a card or, for slot 0 of a shared household, to the
household: each card has 1–3 device slots, each replaced every couple of years, so a genuine
card sees new devices now and then and family members share one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.volume import GROWTH_PER_YEAR, months

DENSITY_PER_DAY = 1.6  # mean payments per open card per day (issuers see ~1-3)
MEAN_LIFE_YEARS = 6.0  # until the account is closed
REISSUE_YEARS = 3.0  # expiry: a new card number (last4) for the same holder
YEAR_S = 365.25 * 86_400
PRE_YEARS = 20  # cards issued this long before the first year can still be open
RATE_SIGMA = 0.9  # log-normal spread of the per-card rate
DORMANT_SHARE = 0.06  # cards dormant in a given month
DORMANT_FACTOR = 0.03
HOUSEHOLD_SHARE = 0.3  # cards sharing a household device with another card
DEVICE_YEARS = 2.2  # mean time before a device slot gets a new device
_EPOCH_YEAR = 1970
# Spending profiles: each card follows one of these category mixes (Sparkov draws its
# customers from a dozen profiles; this many keep the mixes varied) -- 2 bytes per card
# instead of a mix of its own (4 bytes per category), so the world stays small at any size.
PERSONAS = 2_048


def _month_starts(first_year: int, last_year: int) -> np.ndarray:
    """Epoch seconds of the first instant of each month, plus the end of the last month."""
    out = [(y - _EPOCH_YEAR) * YEAR_S + (m - 1) * YEAR_S / 12 for y, m in
           months(first_year, last_year)]
    return np.asarray(out + [(last_year + 1 - _EPOCH_YEAR) * YEAR_S])


def issue_curve(start_year: int, end_year: int) -> tuple[np.ndarray, np.ndarray]:
    """(month start instants, relative issue rate per month) from PRE_YEARS before the start."""
    edges = _month_starts(start_year - PRE_YEARS, end_year)
    t = (edges[:-1] / YEAR_S + _EPOCH_YEAR) - 2000.0
    return edges, np.exp(GROWTH_PER_YEAR * t)


def active_fraction(start_year: int, end_year: int) -> np.ndarray:
    """Expected share of all cards open in each month of start_year..end_year."""
    edges, w = issue_curve(start_year, end_year)
    w = w / w.sum()
    mid = (edges[:-1] + edges[1:]) / 2 / YEAR_S
    first = 12 * PRE_YEARS
    out = np.empty(len(mid) - first)
    for k, m in enumerate(range(first, len(mid))):
        age = mid[m] - mid[: m + 1]
        out[k] = float((w[: m + 1] * np.exp(-age / MEAN_LIFE_YEARS)).sum())
    return out


def default_cards(rows: int, start_year: int, end_year: int,
                  density: float = DENSITY_PER_DAY) -> int:
    """Cards so that ``rows`` payments over the years make ``density`` per open card per day."""
    days = np.diff(_month_starts(start_year, end_year)) / 86_400
    card_days = float((active_fraction(start_year, end_year) * days).sum())
    return max(1, math.ceil(rows / (density * card_days)))


@dataclass(frozen=True)
class Cards:
    """Column arrays, one entry per card (index = card; user_id = index + 100_001)."""

    home: np.ndarray  # int32 city
    home_lat: np.ndarray  # float32 where the holder lives (within the metro)
    home_lon: np.ndarray
    issue_s: np.ndarray  # int64 epoch seconds, ascending (ids in issue order)
    close_s: np.ndarray  # int64
    rate: np.ndarray  # float32 relative payment rate (mean 1)
    spend_scale: np.ndarray  # float32 multiplier of amounts
    night_shift: np.ndarray  # bool: works nights, pays at night
    travel_rate: np.ndarray  # float32 chance of a trip starting in a given month
    commuter: np.ndarray  # bool: taps transit
    persona: np.ndarray  # uint16 row of persona_cum: the card's spending profile
    persona_cum: np.ndarray  # float32 (PERSONAS, categories) cumulative category mix
    last4: np.ndarray  # int16 0..9999 of the first card
    household: np.ndarray  # int32 card whose household device slot 0 is shared
    n_devices: np.ndarray  # int8 1..3 device slots
    device_period_s: np.ndarray  # int32 per card (used through ``household`` for slot 0)
    device_phase_s: np.ndarray  # int32
    by_city: np.ndarray  # int32 cards sorted by (home, id)
    city_start: np.ndarray  # int64 offsets into by_city, one per city + 1

    def __len__(self) -> int:
        return len(self.home)

    def open_share(self, start_s: int, end_s: int) -> np.ndarray:
        """Share of [start_s, end_s) during which each card is open (0..1)."""
        lo = np.maximum(self.issue_s, start_s)
        hi = np.minimum(self.close_s, end_s)
        return np.clip(hi - lo, 0, None) / max(end_s - start_s, 1)

    def last4_at(self, card: np.ndarray, ts_s: np.ndarray) -> np.ndarray:
        """last4 of the card in use at ``ts_s`` (a new number at each reissue)."""
        gen = np.maximum(ts_s - self.issue_s[card], 0) // int(REISSUE_YEARS * YEAR_S)
        return (self.last4[card] + 7_919 * gen) % 10_000

    def device_at(self, seed: int, card: np.ndarray, ts_s: np.ndarray,
                  slot: np.ndarray) -> np.ndarray:
        """Device codes (non-negative int64) of ``card``'s device ``slot`` at ``ts_s``."""
        owner = np.where(slot == 0, self.household[card], card).astype(np.int64)
        gen = np.floor((ts_s + self.device_phase_s[owner]) / self.device_period_s[owner])
        key = (owner << 3 | slot) * 1_000_003 + gen.astype(np.int64)
        return mix64(key, seed)


def mix64(key: np.ndarray, seed: int) -> np.ndarray:
    """A 48-bit hash (splitmix64) of int64 keys: random-looking, distinct ids."""
    with np.errstate(over="ignore"):
        z = key.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z & np.uint64((1 << 48) - 1)).astype(np.int64)


def make_cards(rng: np.random.Generator, n: int, start_year: int, end_year: int,
               city_weight: np.ndarray, city_lat: np.ndarray, city_lon: np.ndarray,
               metro_km: np.ndarray, category_share: np.ndarray) -> Cards:
    edges, w = issue_curve(start_year, end_year)
    month = rng.choice(len(w), size=n, p=w / w.sum())
    issue = np.sort(edges[month] + rng.random(n) * (edges[month + 1] - edges[month]))
    close = issue + rng.standard_exponential(n) * MEAN_LIFE_YEARS * YEAR_S
    home = rng.choice(len(city_weight), size=n, p=city_weight).astype(np.int32)
    lat, lon = spread(rng, city_lat[home], city_lon[home], metro_km[home])
    rate = rng.lognormal(0.0, RATE_SIGMA, n)
    persona = rng.integers(0, PERSONAS, n).astype(np.uint16)
    mix = rng.dirichlet(category_share * 25.0 + 1e-3, size=PERSONAS)
    mix[:, category_share == 0] = 0.0  # billed categories are never chosen by the holder
    mix = (mix / mix.sum(axis=1, keepdims=True)).astype(np.float32)
    cum = np.minimum(np.cumsum(mix, axis=1), np.float32(1.0))  # monotone despite rounding
    cum[:, -1] = 1.0
    order = np.lexsort((np.arange(n), home)).astype(np.int32)
    start = np.searchsorted(home[order], np.arange(len(city_weight) + 1)).astype(np.int64)
    household = np.arange(n, dtype=np.int32)
    shared = rng.random(n) < HOUSEHOLD_SHARE
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    prev = order[np.maximum(pos - 1, 0)]
    ok = shared & (pos > start[home])
    ok &= ~ok[prev]  # pairs only: the card before is not itself pointing further back
    household[ok] = prev[ok]
    return Cards(
        home=home, home_lat=lat.astype(np.float32), home_lon=lon.astype(np.float32),
        issue_s=issue.astype(np.int64), close_s=close.astype(np.int64),
        rate=(rate / rate.mean()).astype(np.float32),
        spend_scale=rng.lognormal(0.0, 0.35, n).astype(np.float32),
        night_shift=rng.random(n) < 0.04,
        travel_rate=np.minimum(rng.lognormal(np.log(0.05), 0.9, n), 0.6).astype(np.float32),
        commuter=rng.random(n) < 0.35,
        persona=persona, persona_cum=cum, last4=rng.integers(0, 10_000, n).astype(np.int16),
        household=household,
        n_devices=rng.choice(np.array([1, 2, 3], dtype=np.int8), size=n, p=[0.35, 0.4, 0.25]),
        device_period_s=np.maximum(rng.lognormal(np.log(DEVICE_YEARS), 0.4, n) * YEAR_S,
                                   86_400).astype(np.int32),
        device_phase_s=(rng.random(n) * 10 * YEAR_S).astype(np.int32),
        by_city=order, city_start=start,
    )


def spread(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray,
           km: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered around (lat, lon) with a normal spread of ``km`` kilometres."""
    n = len(lat)
    dlat = rng.normal(0.0, 1.0, n) * km / 111.0
    dlon = rng.normal(0.0, 1.0, n) * km / (111.0 * np.maximum(np.cos(np.radians(lat)), 0.2))
    return np.clip(lat + dlat, -89.9, 89.9), (lon + dlon + 180.0) % 360.0 - 180.0
