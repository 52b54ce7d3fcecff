"""A window of the world as events: fraud incidents, odd-but-genuine behaviour, everyday spend.

``generate_window`` is the one generator behind both clocks: the history cuts time into
calendar months (``generate_month``), the live stream into windows of a day or more ending now
(``simulator.stream``). A month is generated in pieces of at most ``PIECE_ROWS`` rows; every
piece draws from its own generator seeded with ``(seed, year, month, piece)`` (the cards'
dormancy from ``(seed, month)``), so the output never depends on how work is spread over
processes.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from simulator.behaviour import recurring_bills, transit_bursts
from simulator.events import Events, concat, sort_events, to_table
from simulator.models import Window, card_weights, genuine, month_index
from simulator.scenarios import inject, plan_incidents
from simulator.world import World

PIECE_ROWS = 100_000  # bounds memory: a piece's working set is ~280 bytes a row
_DORMANT_TAG = 0xD0


def rng_for(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def month_window(world: World, year: int, month: int) -> Window:
    start = int(datetime(year, month, 1, tzinfo=UTC).timestamp())
    end = start + monthrange(year, month)[1] * 86_400
    return Window(start, end, year, world.tz.grid(start, end))


def weights(world: World, win: Window) -> np.ndarray:
    """Cumulative card weights of a window (dormancy drawn per calendar month)."""
    month = int(month_index(np.array([win.start_s]))[0])
    return card_weights(world, rng_for(world.seed, _DORMANT_TAG, month), win)


def generate_window(world: World, rng: np.random.Generator, win: Window, n: int,
                    cum: np.ndarray, part: int = 0, parts: int = 1) -> Events:
    """Exactly ``n`` events of the window, sorted by ts (``part`` of ``parts``: which cards'
    recurring bills this piece carries)."""
    fraud = inject(world, rng, win, cum, plan_incidents(rng, n, win.year))
    bills = recurring_bills(world, rng, win, n - len(fraud), part, parts)
    bursts = transit_bursts(world, rng, win, cum, n - len(fraud) - len(bills))
    special = concat([fraud, bills, bursts])
    return sort_events(concat([genuine(world, rng, win, cum, n - len(special)), special]))


def generate_month(world: World, seed: int, year: int, month: int,
                   n_rows: int) -> Iterator[pa.Table]:
    """Tables (one per piece, of equal size within one row) holding exactly ``n_rows`` events
    of the month, ts-sorted each."""
    win = month_window(world, year, month)
    cum = weights(world, win)
    parts = max(1, -(-n_rows // PIECE_ROWS))
    first = 0
    for piece in range(parts):
        n = n_rows // parts + (piece < n_rows % parts)
        ev = generate_window(world, rng_for(seed, year, month, piece), win, n, cum, piece, parts)
        table = to_table(world, ev, f"{year:04d}{month:02d}-", first, win.tz)
        del ev  # one piece in memory at a time (the caller drops its table before asking)
        first += n
        yield table
        del table
