"""The live simulator: the history's cards, trips, bills and fraud on a compressed clock.

``simulate(world, end, count, seed)`` yields Polars frames of contract-typed events in event
time order. The events cover the span that ``count`` payments take at the world's density
(``DENSITY_PER_DAY`` per open card per day, with the day/hour rhythm of each card's city), at
least one day, ending at ``end`` (now, for the producer): event time starts in the past and
never runs ahead of the wall clock. How fast the frames are sent (``--rate``) changes only the
wall clock, never the events: the stream at 0 or 200k events/s is the same stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import polars as pl

from simulator.cards import DENSITY_PER_DAY
from simulator.events import to_frame
from simulator.history import generate_window, rng_for, weights
from simulator.models import DAY_S, Window
from simulator.world import World

LIVE_STREAM = 1 << 21  # generator stream tag, apart from the history's (year, month) keys
EARLIEST = datetime(1991, 1, 1, tzinfo=UTC)  # the time-zone tables start in 1990


def rows_per_day(world: World, end_s: int) -> float:
    """Expected payments per day of the cards open in the 30 days before ``end_s``."""
    open_rate = world.cards.rate * world.cards.open_share(end_s - 30 * DAY_S, end_s)
    return max(DENSITY_PER_DAY * float(open_rate.sum()), 1e-9)


def live_span(world: World, end: datetime, count: int) -> tuple[int, int]:
    """(start, end) UTC seconds of the simulated span ``count`` events take (>= one day)."""
    end_s = int(end.timestamp())
    if rows_per_day(world, end_s) < 1e-6:
        raise ValueError(f"none of the {world.n_cards:,} cards is open at {end:%Y-%m-%d}: "
                         "use more cards")
    days = max(1.0, count / rows_per_day(world, end_s))
    start_s = end_s - int(math.ceil(days * DAY_S))
    if start_s < EARLIEST.timestamp():
        raise ValueError(f"{count:,} events need {days:,.0f} days of {world.n_cards:,} cards "
                         "(at a realistic density): ask for fewer events or more cards")
    return start_s, end_s


def simulate(world: World, end: datetime, count: int, seed: int,
             chunk_rows: int = 10_000) -> Iterator[pl.DataFrame]:
    """``count`` events ending at ``end``, in frames of ``chunk_rows`` (the last may be short).

    Deterministic for (world, end, count, seed, chunk_rows). Transaction ids are
    ``L<end yyyymmddHHMMSS>-<seed>-<seq:010d>``: a replay of the same stream gets the same ids,
    another end or seed never collides; in event-time order.
    """
    if chunk_rows < 1 or count < 0:
        raise ValueError("chunk_rows must be > 0 and count >= 0")
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    if count == 0:
        return
    start_s, end_s = live_span(world, end, count)
    per_day = rows_per_day(world, end_s)
    days = (end_s - start_s) / DAY_S
    n_win = max(1, math.floor(days / max(1.0, math.ceil(chunk_rows / per_day))))
    edges = np.linspace(start_s, end_s, n_win + 1).astype(np.int64)
    counts = np.diff(np.floor(np.linspace(0, count, n_win + 1)).astype(np.int64))
    prefix = f"L{end.astimezone(UTC):%Y%m%d%H%M%S}-{seed}-"
    pending: list[pl.DataFrame] = []
    held = first = 0
    for w in range(n_win):
        s, e, n = int(edges[w]), int(edges[w + 1]), int(counts[w])
        if n == 0:
            continue
        win = Window(s, e, datetime.fromtimestamp(s, UTC).year, world.tz.grid(s, e))
        ev = generate_window(world, rng_for(seed, LIVE_STREAM, w), win, n, weights(world, win))
        frame = to_frame(world, ev, prefix, first, win.tz)
        first += n
        pending.append(frame)
        held += n
        while held >= chunk_rows:
            buf = pl.concat(pending)
            yield buf.head(chunk_rows)
            pending, held = [buf.slice(chunk_rows)], held - chunk_rows
    if held:
        yield pl.concat(pending)
