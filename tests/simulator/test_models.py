"""Unit tests of the simulator's building blocks (volume curve, incidents, trips, amounts)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import build_world
from simulator.cities import haversine_km, load_cities
from simulator.events import transaction_ids
from simulator.history import month_window, rng_for
from simulator.models import DAY_S, Trips, amounts, sample_users
from simulator.scenarios import plan_incidents
from simulator.volume import active_users, rows_per_month


@pytest.fixture(scope="module")
def world():
    return build_world(11, 2_000)


def test_cities_are_real_places_with_zones():
    c = load_cities()
    assert 150 <= len(c) <= 200
    assert len(set(c.name)) == len(c)
    ny, london = c.name.index("New York"), c.name.index("London")
    km = haversine_km(c.lat[ny], c.lon[ny], c.lat[london], c.lon[london])
    assert 5_500 < km < 5_600
    assert abs(c.weight.sum() - 1) < 1e-9


def test_active_users_grow_to_everyone():
    a = active_users(10_000, 2000, 2025)
    assert a == sorted(a) and a[-1] == 10_000 and 1_400 <= a[0] <= 1_600


def test_rows_per_month_largest_remainder_is_fair():
    parts = rows_per_month(1_000, 2024, 2024)
    assert sum(parts) == 1_000 and max(parts) - min(parts) <= 40
    assert parts[11] == max(parts)  # December peak


def test_incidents_never_take_more_than_half_the_rows():
    rng = rng_for(1, 2, 3)
    for n in (0, 1, 9, 40, 1_000, 100_000):
        lens = plan_incidents(rng, n)
        assert sum(int(x.sum()) for x in lens) <= n // 2
        assert (lens[0] >= 5).all()  # card testing bursts trip high_frequency


def test_sample_users_respects_activity_and_active_prefix(world):
    users = sample_users(world, rng_for(5), 50_000, 500)
    assert users.min() >= 0 and users.max() < 500 and (np.diff(users) >= 0).all()
    counts = np.bincount(users, minlength=500)
    w = np.diff(np.concatenate([[0], world.users.activity_cum[:500]]))
    assert np.corrcoef(counts, w)[0, 1] > 0.9


def test_amounts_are_positive_cents_and_cash_is_in_twenties(world):
    rng = rng_for(7)
    cats = rng.integers(0, len(world.categories.name), 20_000).astype(np.int16)
    users = rng.integers(0, world.n_users, 20_000).astype(np.int32)
    cents = amounts(world, rng, 2020, users, cats)
    assert (cents >= 50).all()
    assert (cents[cats == world.categories.atm] % 2000 == 0).all()


def test_trip_never_pays_in_the_air():
    dest = np.array([5], dtype=np.int32)
    t0, t1, fl = np.array([10 * DAY_S]), np.array([15 * DAY_S]), np.array([8 * 3600])
    trips = Trips(dest, t0, t1, fl)
    ts = np.array([t0[0] - 60, t0[0] + 3600, t0[0] + 7 * 3600, t0[0] + 9 * 3600,
                   t1[0] + 3600, t1[0] + 9 * 3600])
    users = np.zeros(len(ts), dtype=np.int32)
    new_ts, city = trips.apply(rng_for(1), users, ts, np.zeros(len(ts), dtype=np.int32))
    assert city.tolist() == [0, 0, 0, 5, 5, 0]
    assert (new_ts[1:3] < t0[0]).all() and (new_ts[4] < t1[0])
    assert new_ts[3] - new_ts[:3].max() >= fl[0]


def test_transaction_ids_are_fixed_width_and_sorted():
    ids = transaction_ids("202401-", 998, 4).to_pylist()
    assert ids == ["202401-0000000998", "202401-0000000999", "202401-0000001000",
                   "202401-0000001001"]


def test_month_window_covers_the_utc_month(world):
    win = month_window(world, 2024, 2, 100)
    assert win.end_s - win.start_s == 29 * DAY_S and win.shaped
