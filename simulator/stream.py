"""The live simulator: the history's holders, merchants and scenarios, at a chosen rate.

``simulate(world, start, count, seed, events_per_second)`` yields Polars frames of
contract-typed events whose ``ts`` run from ``start`` in steps of ``1 / events_per_second``
(strictly increasing across frames, so per-user order is ts order too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from simulator.events import concat, to_polars, to_table
from simulator.history import rng_for
from simulator.models import US, Window, genuine
from simulator.scenarios import group_payments, inject, plan_incidents
from simulator.world import World

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIVE_STREAM = 1 << 21  # generator stream tag, apart from the history's (year, month) keys


def simulate(world: World, start: datetime, count: int, seed: int, events_per_second: float,
             chunk_rows: int = 10_000) -> Iterator[pl.DataFrame]:
    """``count`` events from ``start`` at ``events_per_second``, in frames of ``chunk_rows``.

    Deterministic for (world, start, count, seed, events_per_second, chunk_rows). Transaction
    ids are ``L<start yyyymmddHHMMSSffffff>-<seed>-<seq:010d>``: a replay of the same stream
    gets the same ids, another start or seed never collides; sortable within a stream.
    """
    if events_per_second <= 0 or chunk_rows < 1 or count < 0:
        raise ValueError("events_per_second and chunk_rows must be > 0, count >= 0")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start_us = (start - EPOCH) // timedelta(microseconds=1)
    prefix = f"L{start.astimezone(UTC):%Y%m%d%H%M%S%f}-{seed}-"
    for chunk, first in enumerate(range(0, count, chunk_rows)):
        n = min(chunk_rows, count - first)
        ts = start_us + np.rint((first + np.arange(n)) * (US / events_per_second)).astype(np.int64)
        win = Window(int(ts[0] // US), max(int(ts[-1] // US) + 1, int(ts[0] // US) + 1),
                     start.year, world.n_users, False, world.tz)
        rng = rng_for(seed, LIVE_STREAM, chunk)
        special = concat([inject(world, rng, win, plan_incidents(rng, n)),
                          group_payments(world, rng, win, n)])
        ev = concat([genuine(world, rng, win, n - len(special)), special])
        order = np.argsort(ev.ts + rng.integers(0, US, n), kind="stable")  # shuffle ties
        ev = replace(ev.take(order), ts=ts)
        yield to_polars(to_table(world, ev, prefix, first))

