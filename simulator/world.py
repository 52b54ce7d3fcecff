"""The simulated world: cards, merchants, categories and cities (built once, cached).

Everything here is plain numpy arrays indexed by card / merchant / category id, so the event
samplers never touch Python objects per row. Faker's surname table is used only here, to name
merchants.
Merchants sit at metro scale around their city (a spread that grows with the metro's size);
prices follow each country's price level (see ``PRICE_LEVEL``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simulator.arrow import string_array
from simulator.cards import Cards, make_cards, spread
from simulator.cities import Cities, load_cities
from simulator.tz import OffsetTable, offset_table

# name, mcc, median amount (USD of 2013 at US prices), log-sigma, share of everyday spend,
# max online share, hour profile
_CATEGORIES: tuple[tuple[str, str, float, float, float, float, str], ...] = (
    ("grocery", "5411", 44.0, 0.60, 0.20, 0.15, "day"),
    ("restaurant", "5812", 40.0, 0.55, 0.10, 0.10, "evening"),
    ("fast_food", "5814", 13.0, 0.50, 0.09, 0.20, "day"),
    ("fuel", "5541", 50.0, 0.35, 0.07, 0.00, "any"),
    ("apparel", "5651", 68.0, 0.80, 0.06, 0.50, "day"),
    ("electronics", "5732", 140.0, 0.70, 0.03, 0.60, "day"),
    ("airline", "4511", 300.0, 0.45, 0.012, 0.85, "any"),
    ("hotel", "7011", 170.0, 0.50, 0.015, 0.70, "any"),
    ("entertainment", "7832", 30.0, 0.60, 0.05, 0.40, "evening"),
    ("pharmacy", "5912", 23.0, 0.70, 0.05, 0.20, "day"),
    ("marketplace", "5969", 38.0, 0.90, 0.10, 1.00, "any"),
    ("telecom", "4814", 72.0, 0.40, 0.03, 0.70, "day"),
    ("atm", "6011", 100.0, 0.60, 0.05, 0.00, "any"),
    ("jewelry", "5944", 200.0, 0.70, 0.005, 0.30, "day"),
    ("home_improvement", "5200", 85.0, 0.75, 0.04, 0.25, "day"),
    ("transit", "4111", 2.5, 0.30, 0.06, 0.00, "commute"),
    ("subscription", "5968", 12.0, 0.50, 0.00, 1.00, "any"),
)
HOUR_KINDS = ("day", "evening", "any", "commute")
# Big purchases (a laptop, a long-haul ticket, a sofa): share of a category's payments and
# their median in 2013 US dollars. Their amounts are log-normal around a real price, so the
# share above a fixed nominal limit grows only slowly with inflation.
BIG_TICKETS: dict[str, tuple[float, float]] = {
    "electronics": (0.05, 700.0), "airline": (0.12, 800.0), "hotel": (0.05, 650.0),
    "jewelry": (0.08, 800.0), "home_improvement": (0.03, 700.0), "apparel": (0.004, 500.0),
}
BIG_SIGMA = 0.45
ATM, TRANSIT, SUBSCRIPTION = "atm", "transit", "subscription"
N_POS_MERCHANTS = 24_000
N_ONLINE_PER_CATEGORY = 40
# Price level of a country relative to the US (market prices of a common basket, rounded;
# after the World Bank ICP price-level index, PPP / exchange rate). Unlisted: 0.5.
PRICE_LEVEL: dict[str, float] = {
    "US": 1.0, "CA": 0.85, "MX": 0.5, "CU": 0.45, "PA": 0.55, "PR": 0.9, "BR": 0.55,
    "AR": 0.45, "CL": 0.6, "PE": 0.5, "CO": 0.4, "VE": 0.4, "EC": 0.5, "UY": 0.7, "PY": 0.4,
    "GB": 0.95, "IE": 1.05, "FR": 0.9, "DE": 0.85, "NL": 0.95, "BE": 0.9, "LU": 1.05,
    "CH": 1.35, "AT": 0.9, "ES": 0.75, "PT": 0.65, "IT": 0.8, "GR": 0.65, "DK": 1.1,
    "SE": 0.95, "NO": 1.15, "FI": 0.95, "IS": 1.2, "PL": 0.5, "CZ": 0.6, "HU": 0.5,
    "RO": 0.45, "BG": 0.4, "RS": 0.45, "HR": 0.55, "UA": 0.3, "RU": 0.4, "TR": 0.35,
    "LV": 0.6, "LT": 0.55, "EE": 0.65, "IL": 1.05, "AE": 0.7, "QA": 0.7, "SA": 0.6,
    "JO": 0.5, "LB": 0.5, "IR": 0.25, "EG": 0.25, "MA": 0.4, "TN": 0.35, "NG": 0.4,
    "GH": 0.35, "KE": 0.45, "ET": 0.35, "SN": 0.45, "ZA": 0.5, "JP": 0.8, "KR": 0.75,
    "CN": 0.55, "HK": 0.8, "TW": 0.55, "PH": 0.45, "TH": 0.45, "VN": 0.4, "MY": 0.4,
    "SG": 0.85, "ID": 0.4, "IN": 0.3, "PK": 0.28, "BD": 0.35, "NP": 0.3, "LK": 0.35,
    "UZ": 0.3, "KZ": 0.4, "AU": 1.0, "NZ": 0.95,
}
# Median amounts are scaled by this so the world-wide median stays where it was with one
# price level (the holders' cities' mean price level is well below the US one).
PRICE_CALIBRATION = 2.3
TRANSIT_FARES = np.array([1.0, 1.0, 1.25, 1.5, 2.0, 2.0, 2.5, 2.75, 3.0])  # 2013 US-level fares


@dataclass(frozen=True)
class Categories:
    name: tuple[str, ...]
    mu: np.ndarray  # log of the median amount
    sigma: np.ndarray
    big_share: np.ndarray  # share of big purchases (BIG_TICKETS)
    big_mu: np.ndarray  # log of their median
    share: np.ndarray  # sums to 1 (everyday spend; 0 for subscriptions: billed, not chosen)
    online_max: np.ndarray
    hours: np.ndarray  # int8 index into HOUR_KINDS

    def id(self, name: str) -> int:
        return self.name.index(name)


@dataclass(frozen=True)
class Merchants:
    merchant_id: pa.Array  # string per merchant
    name_id: np.ndarray  # int32 per merchant, index into ``names`` (names may repeat)
    names: pa.Array  # distinct merchant names
    category: np.ndarray  # int16
    lat: np.ndarray  # float64 shop location (online shops: their city, unused)
    lon: np.ndarray
    pos_start: np.ndarray  # int64 [city * C + category] -> first merchant of that pool
    pos_count: np.ndarray  # int64 pool sizes
    online_start: np.ndarray  # int64 [category]
    online_count: np.ndarray


@dataclass(frozen=True)
class World:
    """Cards, merchants, categories, cities and the time-zone table of one seed."""

    seed: int
    start_year: int
    end_year: int
    cities: Cities
    categories: Categories
    cards: Cards
    merchants: Merchants
    tz: OffsetTable
    price: np.ndarray  # float64 price level per city (its country's)
    fare: np.ndarray  # float64 transit fare per city (USD 2013)
    metro_km: np.ndarray  # float64 spread of shops and homes around each city
    gateway: np.ndarray  # int32 per city: the country's largest city (mobile IP gateways)
    last4_pool: pa.Array  # "0000" .. "9999"

    @property
    def n_cards(self) -> int:
        return len(self.cards)

    def user_id(self, idx: np.ndarray) -> np.ndarray:
        """Public user ids (int64) of card indexes."""
        return np.asarray(idx, dtype=np.int64) + 100_001


_WORLDS: dict[tuple[int, int, int, int], World] = {}  # the last few worlds built or adopted
_KEEP = 4


def build_world(seed: int, n_cards: int, start_year: int = 2000, end_year: int = 2025) -> World:
    """The world of ``seed`` with ``n_cards`` cards issued around start_year..end_year
    (built once per process and kept; see ``adopt_world``)."""
    key = (seed, n_cards, start_year, end_year)
    if key not in _WORLDS:
        world = _build_world(*key)
        adopt_world(world)
    return _WORLDS[key]


def adopt_world(world: World) -> None:
    """Keep ``world`` (built here or elsewhere, e.g. unpickled) as ``build_world``'s answer
    for its key; the oldest of more than ``_KEEP`` worlds is dropped."""
    _WORLDS[(world.seed, world.n_cards, world.start_year, world.end_year)] = world
    while len(_WORLDS) > _KEEP:
        _WORLDS.pop(next(iter(_WORLDS)))


def _build_world(seed: int, n_cards: int, start_year: int, end_year: int) -> World:
    if n_cards < 1:
        raise ValueError("n_cards must be >= 1")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0707]))
    cities = load_cities()
    cats = _categories()
    metro_km = 3.0 + 5.0 * np.sqrt(cities.weight / cities.weight.max() * 31.0)
    cards = make_cards(rng, n_cards, start_year, end_year, cities.weight, cities.lat,
                       cities.lon, metro_km, cats.share)
    merchants = _merchants(rng, seed, cities, cats, metro_km)
    price = np.asarray([PRICE_LEVEL.get(c, 0.5) for c in cities.country])
    fare = np.round(rng.choice(TRANSIT_FARES, len(cities)) * np.sqrt(price) * 4) / 4
    return World(seed, start_year, end_year, cities, cats, cards, merchants,
                 offset_table(cities.zones), price, np.maximum(fare, 0.5), metro_km,
                 _gateways(cities), string_array([f"{i:04d}" for i in range(10_000)]))


def _gateways(c: Cities) -> np.ndarray:
    best: dict[int, int] = {}
    for i, country in enumerate(c.country_id.tolist()):
        if country not in best or c.weight[i] > c.weight[best[country]]:
            best[country] = i
    return np.asarray([best[k] for k in c.country_id.tolist()], dtype=np.int32)


def _categories() -> Categories:
    name, _mcc, median, sigma, share, online, hours = zip(*_CATEGORIES, strict=True)
    s = np.asarray(share)
    big = [BIG_TICKETS.get(n, (0.0, 1.0)) for n in name]
    return Categories(
        name=name, mu=np.log(np.asarray(median) * PRICE_CALIBRATION), sigma=np.asarray(sigma),
        big_share=np.asarray([b[0] for b in big]),
        big_mu=np.log(np.asarray([b[1] for b in big]) * PRICE_CALIBRATION),
        share=s / s.sum(), online_max=np.asarray(online),
        hours=np.asarray([HOUR_KINDS.index(h) for h in hours], dtype=np.int8),
    )


_COMPANY_SUFFIXES = ("Inc", "and Sons", "LLC", "Group", "PLC", "Ltd")


def company_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` company names in Faker's en_US forms ("Smith LLC", "Ortiz-Reyes", "Hall, Diaz
    and Moore") from its weighted surnames, drawn with numpy (Faker's own ``company()`` costs
    80 µs a name: a third of the world's build, on every run's start-up)."""
    from faker.providers.person.en_US import Provider  # the surname table only

    names = list(Provider.last_names)
    weight = np.fromiter(Provider.last_names.values(), dtype=np.float64, count=len(names))
    pick = rng.choice(len(names), size=(n, 3), p=weight / weight.sum()).tolist()
    form = rng.choice(3, size=n, p=[0.6, 0.25, 0.15]).tolist()
    suffix = rng.integers(0, len(_COMPANY_SUFFIXES), n).tolist()
    out = []
    for (a, b, c), f, s in zip(pick, form, suffix, strict=True):
        if f == 0:
            out.append(f"{names[a]} {_COMPANY_SUFFIXES[s]}")
        elif f == 1:
            out.append(f"{names[a]}-{names[b]}")
        else:
            out.append(f"{names[a]}, {names[b]} and {names[c]}")
    return out


def _merchants(rng: np.random.Generator, seed: int, cities: Cities, cats: Categories,
               metro_km: np.ndarray) -> Merchants:
    n_city, n_cat = len(cities), len(cats.name)
    pos_share = cats.share * (1.0 - cats.online_max * 0.5)
    pos_share[cats.online_max >= 1.0] = 0.0
    expected = np.outer(cities.weight, pos_share / pos_share.sum()) * N_POS_MERCHANTS
    counts = np.where(pos_share[None, :] > 0, np.maximum(1, rng.poisson(expected)), 0).ravel()
    online_count = np.where(cats.online_max > 0, N_ONLINE_PER_CATEGORY, 0)
    n_pos = int(counts.sum())
    category = np.concatenate([np.tile(np.arange(n_cat), n_city).repeat(counts),
                               np.arange(n_cat).repeat(online_count)]).astype(np.int16)
    city = np.concatenate([np.arange(n_city).repeat(n_cat).repeat(counts),
                           np.zeros(int(online_count.sum()), dtype=np.int64)])
    lat, lon = spread(rng, cities.lat[city], cities.lon[city], metro_km[city])
    companies = company_names(np.random.default_rng(np.random.SeedSequence([seed, 0xC0])),
                              4_000)
    picks = rng.integers(0, len(companies), len(category))
    names = [f"{companies[p]} {cats.name[c].replace('_', ' ').title()}"
             for p, c in zip(picks.tolist(), category.tolist(), strict=True)]
    unique = {name: i for i, name in enumerate(dict.fromkeys(names))}  # first-seen order
    return Merchants(
        merchant_id=string_array([f"M{i:07d}" for i in range(len(category))]),
        name_id=np.asarray([unique[x] for x in names], dtype=np.int32),
        names=string_array(list(unique)),
        category=category, lat=lat, lon=lon,
        pos_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        pos_count=counts.astype(np.int64),
        online_start=(n_pos + np.concatenate([[0], np.cumsum(online_count)[:-1]])).astype(np.int64),
        online_count=online_count.astype(np.int64),
    )
