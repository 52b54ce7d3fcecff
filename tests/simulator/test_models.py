"""Unit tests of the simulator's building blocks: volume, cards, devices, trips, money, fraud."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import build_world, default_cards
from simulator.behaviour import recurring_bills, transit_bursts
from simulator.cards import DENSITY_PER_DAY, REISSUE_YEARS, YEAR_S, active_fraction
from simulator.cities import haversine_km, load_cities
from simulator.events import transaction_ids
from simulator.history import month_window, rng_for, weights
from simulator.models import DAY_S, amounts, inflation, sample_cards
from simulator.scenarios import plan_incidents, scenario_shares
from simulator.travel import Trips, trips_of_month
from simulator.volume import rows_per_month


@pytest.fixture(scope="module")
def world():
    return build_world(11, 3_000)


def test_cities_are_real_places_with_zones():
    c = load_cities()
    assert 150 <= len(c) <= 200
    assert len(set(c.name)) == len(c)
    ny, london = c.name.index("New York"), c.name.index("London")
    km = haversine_km(c.lat[ny], c.lon[ny], c.lat[london], c.lon[london])
    assert 5_500 < km < 5_600
    assert abs(c.weight.sum() - 1) < 1e-9


def test_default_cards_give_the_target_density():
    for rows in (10_000, 4_700_000, 47_000_000):
        n = default_cards(rows, 2000, 2025)
        months = rows_per_month(rows, 2000, 2025)
        share = active_fraction(2000, 2025)
        density = np.asarray(months) / (n * share * 30.44)
        assert 0.7 * DENSITY_PER_DAY <= np.median(density) <= 1.3 * DENSITY_PER_DAY
    assert default_cards(47_000_000, 2000, 2025) == pytest.approx(
        10 * default_cards(4_700_000, 2000, 2025), rel=0.01)


def test_cards_live_and_are_reissued(world):
    c = world.cards
    assert (np.diff(c.issue_s) >= 0).all() and (c.close_s > c.issue_s).all()
    card = np.array([5, 5, 5])
    t = c.issue_s[5] + np.array([0, int(REISSUE_YEARS * YEAR_S) + 1, 1])
    last4 = c.last4_at(card, t)
    assert last4[0] == last4[2] != last4[1]
    rates = c.rate
    assert np.quantile(rates, 0.1) < 0.5 and np.quantile(rates, 0.99) > 4  # heavy tail


def test_devices_change_and_some_are_shared_in_a_household(world):
    c = world.cards
    shared = np.flatnonzero(c.household != np.arange(len(c)))
    assert 0.1 < len(shared) / len(c) < 0.4
    a, b = shared[0], c.household[shared[0]]
    t = np.array([c.issue_s[a] + 10**6])
    slot0 = np.zeros(1, dtype=np.int64)
    assert c.device_at(1, np.array([a]), t, slot0) == c.device_at(1, np.array([b]), t, slot0)
    card = np.full(200, 7)
    t = c.issue_s[7] + np.arange(200) * 30 * DAY_S
    assert len(np.unique(c.device_at(1, card, t, np.zeros(200, dtype=np.int64)))) > 3


def test_incidents_never_take_more_than_half_the_rows_and_the_mix_drifts():
    rng = rng_for(1, 2, 3)
    for n in (0, 1, 9, 40, 1_000, 100_000):
        lens = plan_incidents(rng, n, 2010)
        assert sum(int(x.sum()) for x in lens) <= n // 2
        assert (lens[1] >= 5).all()  # fast card testing: bursts of 5 or more
    early, late = scenario_shares(2000), scenario_shares(2025)
    assert early[0] > 5 * late[0]  # counterfeit fades with chip cards
    assert late[3] > 3 * early[3]  # account takeover grows with online banking


def test_sample_cards_follow_the_open_weights(world):
    win = month_window(world, 2020, 3)
    cum = weights(world, win)
    cards = sample_cards(rng_for(5), cum, 200_000)
    assert (np.diff(cards) >= 0).all()
    open_ = (world.cards.issue_s < win.end_s) & (world.cards.close_s > win.start_s)
    assert open_[cards].all()
    counts = np.bincount(cards, minlength=world.n_cards)
    w = np.diff(np.concatenate([[0], cum]))
    assert np.corrcoef(counts, w)[0, 1] > 0.9


def test_amounts_cash_fares_price_levels_and_inflation(world):
    rng = rng_for(7)
    k, c = world.categories, world.cities
    n = 40_000
    cards = rng.integers(0, world.n_cards, n).astype(np.int32)
    grocery = np.full(n, k.id("grocery"), dtype=np.int16)
    us = np.full(n, c.name.index("New York"), dtype=np.int32)
    dhaka = np.full(n, c.name.index("Dhaka"), dtype=np.int32)
    ny_2025 = np.median(amounts(world, rng, 2025, cards, grocery, us))
    assert np.median(amounts(world, rng, 2025, cards, grocery, dhaka)) < 0.5 * ny_2025
    assert np.median(amounts(world, rng, 2000, cards, grocery, us)) < 0.65 * ny_2025
    assert inflation(2025) / inflation(2000) == pytest.approx(322.0 / 172.2)
    atm = np.full(n, k.id("atm"), dtype=np.int16)
    assert (amounts(world, rng, 2020, cards, atm, us) % 2000 == 0).all()
    transit = np.full(n, k.id("transit"), dtype=np.int16)
    assert len(np.unique(amounts(world, rng, 2020, cards, transit, us))) == 1


def test_trips_are_mostly_domestic_and_never_pay_on_the_way(world):
    trips = trips_of_month(world, (2019 - 1970) * 12)
    away = np.flatnonzero(trips.index >= 0)
    c = world.cities
    dest = trips.dest[trips.index[away]]
    domestic = c.country_id[dest] == c.country_id[world.cards.home[away]]
    assert len(away) > 50 and domestic.mean() > 0.5
    assert (trips.travel_s >= 3600 * 0.5).all() and len(trips.travel_s) == len(away)
    one = Trips(np.array([0], np.int32), np.array([5], np.int32), np.array([10 * DAY_S]),
                np.array([15 * DAY_S]), np.array([8 * 3600]))
    t0, t1 = 10 * DAY_S, 15 * DAY_S
    ts = np.array([t0 - 60, t0 + 3600, t0 + 9 * 3600, t1 + 3600, t1 + 9 * 3600])
    new_ts, city, there = one.apply(rng_for(1), np.zeros(5, dtype=np.int32), ts,
                                    np.zeros(5, dtype=np.int32))
    # on the way out: paid before leaving; on the way back: paid before leaving the trip city
    assert city.tolist() == [0, 0, 5, 5, 0] and there.tolist() == [False, False, True, True,
                                                                     False]
    assert new_ts[1] < t0 and new_ts[3] < t1


def test_bills_recur_monthly_at_home_and_transit_taps_come_in_bursts(world):
    win = month_window(world, 2024, 5)
    cum = weights(world, win)
    bills = recurring_bills(world, rng_for(3), win, 1_000_000)
    assert len(bills) > 0 and (bills.channel == 1).all() and (bills.device == -1).all()
    assert ((bills.cents % 100) == 99).all()
    assert (bills.city == world.cards.home[bills.user]).all()
    taps = transit_bursts(world, rng_for(4), win, cum, 1_000_000)
    assert len(taps) > 0 and world.cards.commuter[taps.user].all()
    assert len(np.unique(taps.cents)) < 200


def test_transaction_ids_are_fixed_width_and_sorted():
    ids = transaction_ids("202401-", 998, 4).to_pylist()
    assert ids == ["202401-0000000998", "202401-0000000999", "202401-0000001000",
                   "202401-0000001001"]


def test_month_window_covers_the_utc_month(world):
    win = month_window(world, 2024, 2)
    assert win.end_s - win.start_s == 29 * DAY_S
