"""The simulated world: card holders, merchants, categories and cities (built once, cached).

Everything here is plain numpy arrays indexed by user / merchant / category id, so the event
samplers never touch Python objects per row. Faker is used only here, to name merchants.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
from faker import Faker

from simulator.cities import Cities, load_cities
from simulator.tz import OffsetTable, offset_table

# name, mcc, median amount (USD), log-sigma, share of spend events, max online share, hours
_CATEGORIES: tuple[tuple[str, str, float, float, float, float, str], ...] = (
    ("grocery", "5411", 42.0, 0.60, 0.21, 0.15, "day"),
    ("restaurant", "5812", 38.0, 0.55, 0.11, 0.10, "evening"),
    ("fast_food", "5814", 12.0, 0.50, 0.10, 0.20, "day"),
    ("fuel", "5541", 48.0, 0.35, 0.08, 0.00, "any"),
    ("apparel", "5651", 65.0, 0.80, 0.07, 0.50, "day"),
    ("electronics", "5732", 150.0, 0.85, 0.03, 0.60, "day"),
    ("airline", "4511", 300.0, 0.55, 0.012, 0.85, "any"),
    ("hotel", "7011", 170.0, 0.60, 0.015, 0.70, "any"),
    ("entertainment", "7832", 28.0, 0.60, 0.05, 0.40, "evening"),
    ("pharmacy", "5912", 22.0, 0.70, 0.05, 0.20, "day"),
    ("marketplace", "5969", 36.0, 0.90, 0.10, 1.00, "any"),
    ("telecom", "4814", 70.0, 0.40, 0.04, 0.70, "day"),
    ("atm", "6011", 100.0, 0.60, 0.06, 0.00, "any"),
    ("jewelry", "5944", 220.0, 0.80, 0.005, 0.30, "day"),
    ("home_improvement", "5200", 85.0, 0.90, 0.04, 0.25, "day"),
)
ATM = "atm"
N_POS_MERCHANTS = 24_000
N_ONLINE_PER_CATEGORY = 40
N_FRAUD_DEVICES = 5_000


@dataclass(frozen=True)
class Categories:
    name: tuple[str, ...]
    mu: np.ndarray  # log of the median amount
    sigma: np.ndarray
    share: np.ndarray  # sums to 1
    online_max: np.ndarray
    hours: np.ndarray  # int8 hour-profile kind: 0 day, 1 evening, 2 any
    atm: int  # id of the cash category

    def id(self, name: str) -> int:
        return self.name.index(name)


@dataclass(frozen=True)
class Users:
    home: np.ndarray  # int32 city id
    activity_cum: np.ndarray  # float64 cumulative payment rate (users are in join order)
    spend_scale: np.ndarray  # float64 multiplier of amounts
    night_owl: np.ndarray  # bool
    travel_rate: np.ndarray  # float64 chance of a trip per month
    category_cum: np.ndarray  # float32 (users, categories) cumulative category mix
    last4: np.ndarray  # int16 0..9999
    by_city: np.ndarray  # int32 user ids sorted by (home, id)
    city_start: np.ndarray  # int64 offsets into by_city, one per city + 1

    def __len__(self) -> int:
        return len(self.home)


@dataclass(frozen=True)
class Merchants:
    merchant_id: pa.Array  # string per merchant
    name_id: np.ndarray  # int32 per merchant, index into ``names`` (names may repeat)
    names: pa.Array  # distinct merchant names
    category: np.ndarray  # int16
    pos_start: np.ndarray  # int64 [city * C + category] -> first merchant of that pool
    pos_count: np.ndarray  # int64 pool sizes (>= 1 where the category has shops)
    online_start: np.ndarray  # int64 [category]
    online_count: np.ndarray


@dataclass(frozen=True)
class World:
    """Holders, merchants, categories, cities and the time-zone table of one seed."""

    seed: int
    cities: Cities
    categories: Categories
    users: Users
    merchants: Merchants
    tz: OffsetTable
    devices: pa.Array  # strings: one per user, then N_FRAUD_DEVICES fraudster devices
    last4_pool: pa.Array  # "0000" .. "9999"

    @property
    def n_users(self) -> int:
        return len(self.users)

    def user_id(self, idx: np.ndarray) -> np.ndarray:
        """Public user ids (int64) of user indexes."""
        return np.asarray(idx, dtype=np.int64) + 100_001


@lru_cache(maxsize=4)
def build_world(seed: int, n_users: int) -> World:
    """The world of ``seed`` with ``n_users`` card holders (deterministic, cached)."""
    if n_users < 1:
        raise ValueError("n_users must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0707]))
    cities = load_cities()
    cats = _categories()
    users = _users(rng, cities, cats, n_users)
    merchants = _merchants(rng, seed, cities, cats)
    # an odd multiplier is a bijection modulo 2**48: distinct, random-looking device ids
    mult, add = 2 * int(rng.integers(1, 1 << 46)) + 1, int(rng.integers(0, 1 << 48))
    ids = (np.arange(n_users + N_FRAUD_DEVICES, dtype=object) * mult + add) % (1 << 48)
    devices = pa.array([f"dev-{h:012x}" for h in ids.tolist()])
    return World(seed, cities, cats, users, merchants, offset_table(cities.zones), devices,
                 pa.array([f"{i:04d}" for i in range(10_000)]))


def _categories() -> Categories:
    name, _mcc, median, sigma, share, online, hours = zip(*_CATEGORIES, strict=True)
    s = np.asarray(share)
    return Categories(
        name=name, mu=np.log(np.asarray(median)), sigma=np.asarray(sigma), share=s / s.sum(),
        online_max=np.asarray(online),
        hours=np.asarray([("day", "evening", "any").index(h) for h in hours], dtype=np.int8),
        atm=name.index(ATM),
    )


def _users(rng: np.random.Generator, cities: Cities, cats: Categories, n: int) -> Users:
    home = rng.choice(len(cities), size=n, p=cities.weight).astype(np.int32)
    activity = rng.lognormal(0.0, 0.8, n)
    mix = rng.dirichlet(cats.share * 25.0, size=n).astype(np.float32)
    cum = np.cumsum(mix, axis=1)
    cum[:, -1] = 1.0
    order = np.lexsort((np.arange(n), home)).astype(np.int32)
    start = np.searchsorted(home[order], np.arange(len(cities) + 1)).astype(np.int64)
    return Users(
        home=home,
        activity_cum=np.cumsum(activity),
        spend_scale=rng.lognormal(0.0, 0.35, n),
        night_owl=rng.random(n) < 0.03,
        travel_rate=np.minimum(rng.lognormal(np.log(0.02), 0.9, n), 0.4),
        category_cum=cum,
        last4=rng.integers(0, 10_000, n).astype(np.int16),
        by_city=order,
        city_start=start,
    )


def _merchants(rng: np.random.Generator, seed: int, cities: Cities, cats: Categories) -> Merchants:
    n_city, n_cat = len(cities), len(cats.name)
    pos_share = cats.share * (1.0 - cats.online_max * 0.5)
    pos_share[cats.online_max >= 1.0] = 0.0
    expected = np.outer(cities.weight, pos_share / pos_share.sum()) * N_POS_MERCHANTS
    counts = np.where(pos_share[None, :] > 0, np.maximum(1, rng.poisson(expected)), 0).ravel()
    online_count = np.where(cats.online_max > 0, N_ONLINE_PER_CATEGORY, 0)
    n_pos = int(counts.sum())
    category = np.concatenate([np.tile(np.arange(n_cat), n_city).repeat(counts),
                               np.arange(n_cat).repeat(online_count)]).astype(np.int16)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    companies = [fake.company() for _ in range(4_000)]
    picks = rng.integers(0, len(companies), len(category))
    names = [f"{companies[p]} {cats.name[c].replace('_', ' ').title()}"
             for p, c in zip(picks.tolist(), category.tolist(), strict=True)]
    unique = {name: i for i, name in enumerate(dict.fromkeys(names))}  # first-seen order
    return Merchants(
        merchant_id=pa.array([f"M{i:07d}" for i in range(len(category))]),
        name_id=np.asarray([unique[x] for x in names], dtype=np.int32),
        names=pa.array(list(unique)),
        category=category,
        pos_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        pos_count=counts.astype(np.int64),
        online_start=(n_pos + np.concatenate([[0], np.cumsum(online_count)[:-1]])).astype(np.int64),
        online_count=online_count.astype(np.int64),
    )
