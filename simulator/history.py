"""One month of history: trips, fraud incidents, genuine payments -> a sorted Arrow table.

A month is generated in pieces of at most ``PIECE_ROWS`` rows; every piece draws from its own
generator seeded with ``(seed, year, month, piece)`` (the month's trips from
``(seed, year, month)``), so the output never depends on how work is spread over processes.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from simulator.events import concat, sort_events, to_table
from simulator.models import Window, genuine, plan_trips
from simulator.scenarios import group_payments, inject, plan_incidents
from simulator.world import World

PIECE_ROWS = 1_000_000


def rng_for(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def month_window(world: World, year: int, month: int, active: int) -> Window:
    start = int(datetime(year, month, 1, tzinfo=UTC).timestamp())
    end = start + monthrange(year, month)[1] * 86_400
    return Window(start, end, year, active, True, world.tz.grid(start, end))


def generate_month(world: World, seed: int, year: int, month: int, n_rows: int,
                   active: int) -> Iterator[pa.Table]:
    """Tables (one per piece) holding exactly ``n_rows`` events of the month, ts-sorted each."""
    win = month_window(world, year, month, min(active, world.n_users))
    trips = plan_trips(world, rng_for(seed, year, month, 1 << 20), win)
    for piece, first in enumerate(range(0, n_rows, PIECE_ROWS)):
        n = min(PIECE_ROWS, n_rows - first)
        rng = rng_for(seed, year, month, piece)
        special = concat([inject(world, rng, win, plan_incidents(rng, n)),
                          group_payments(world, rng, win, n)])
        ev = sort_events(concat([genuine(world, rng, win, n - len(special), trips), special]))
        yield to_table(world, ev, f"{year:04d}{month:02d}-", first, win.tz)
