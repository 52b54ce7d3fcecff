"""A wall-clock live feed of the simulated world (``streaming.demo --follow``).

Event time = wall time here, so the density stays realistic by scaling the population with the
rate (DESIGN.md "Live event time"): ``cards_for_rate`` picks the number of cards whose open
cards pay ``rate`` times a second on average (~1.6 payments per open card per day, with each
city's day/night rhythm, so the instantaneous rate swings around the mean). The feed is a chain
of one-day segments of ``simulator.simulate``, the first starting at ``start``; ``LiveFeed.due``
hands out the events whose time has come and never one from the future.

The simulator clamps into a window's first and last second the events its processes place
outside it (a pile-up of hundreds on a day-long window of this many cards, which would read as
bursts to the velocity rules); the feed drops those two seconds of each segment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl

from simulator import World, build_world, simulate
from simulator.stream import rows_per_day

PROBE_CARDS = 20_000  # a world this size measures the per-card density of a seed
DAY = timedelta(days=1)


def world_for(seed: int, cards: int, when: datetime) -> World:
    """The history's world (same processes and years) as it stands at ``when``."""
    return build_world(seed, cards, 2000, max(when.year, 2001))


def cards_for_rate(seed: int, rate: float, when: datetime) -> int:
    """Cards whose realistic density gives ``rate`` events per second on average at ``when``."""
    probe = rows_per_day(world_for(seed, PROBE_CARDS, when), int(when.timestamp()))
    return max(1, math.ceil(PROBE_CARDS * rate * 86_400 / probe))


def day_segments(world: World, seed: int, start: datetime) -> Iterator[pl.DataFrame]:
    """Endless frames in event-time order: day k covers [start + k days, start + k+1 days]."""
    k = 0
    while True:
        end = start + (k + 1) * DAY
        count = math.floor(rows_per_day(world, int(end.timestamp())))  # exactly one day's span
        edges = [end - DAY, end - timedelta(seconds=1)]
        for frame in simulate(world, end, count, seed + k):
            kept = frame.filter(~pl.col("ts").dt.truncate("1s").is_in(edges))
            if kept.height:
                yield kept
        k += 1


class LiveFeed:
    """The simulated world's events as their time comes (see the module docstring)."""

    def __init__(self, seed: int, rate: float, start: datetime | None = None) -> None:
        when = start or datetime.now(UTC)
        self.cards = cards_for_rate(seed, rate, when)
        world = world_for(seed, self.cards, when)  # seconds for a large world: start after it
        self.start = (start or datetime.now(UTC)).replace(microsecond=0)
        self._frames = day_segments(world, seed, self.start)
        self._pending = next(self._frames)

    def due(self, now: datetime) -> pl.DataFrame:
        """The events with ``ts <= now`` not handed out yet, in event-time order."""
        parts = []
        while self._pending["ts"].max() <= now:  # type: ignore[operator]
            parts.append(self._pending)
            self._pending = next(self._frames)
        split = self._pending["ts"].search_sorted(now, side="right")
        parts.append(self._pending.head(split))
        self._pending = self._pending.slice(split)
        if self._pending.is_empty():
            self._pending = next(self._frames)
        return pl.concat(parts)
