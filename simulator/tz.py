"""Vectorised UTC offsets: per-zone transition tables, looked up with one ``searchsorted``.

``OffsetTable.offset_min(zone_id, epoch_s)`` gives the real offset (DST included) of each zone
at each instant without any per-row Python. The tables are built once from the tz database via
Polars (daily samples find the days with a change, a 15-minute grid inside those days finds
the instant) and cover 1990–2045.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import polars as pl

TABLE_START = datetime(1990, 1, 1, tzinfo=UTC)
TABLE_END = datetime(2045, 1, 1, tzinfo=UTC)
_BASE_S = int(TABLE_START.timestamp())
_ZONE_SHIFT = 33  # key = zone_id << 33 | seconds since TABLE_START (272 years of room)
_STEP_S = 15 * 60


@dataclass(frozen=True)
class OffsetTable:
    """All transitions of some zones as one sorted key array and the offset after each."""

    zones: tuple[str, ...]
    keys: np.ndarray  # int64, sorted
    offsets: np.ndarray  # int32 minutes east of UTC, valid from the matching key on

    def offset_min(self, zone_id: np.ndarray, epoch_s: np.ndarray) -> np.ndarray:
        """Offset in minutes of ``zones[zone_id]`` at each UTC instant (seconds since epoch)."""
        rel = np.clip(np.asarray(epoch_s, dtype=np.int64) - _BASE_S, 0, (1 << _ZONE_SHIFT) - 1)
        q = (np.asarray(zone_id, dtype=np.int64) << _ZONE_SHIFT) | rel
        return self.offsets[np.searchsorted(self.keys, q, side="right") - 1]


    def grid(self, start_s: int, end_s: int) -> OffsetGrid:
        """A dense 15-minute table over [start_s - 2 days, end_s + 2 days) for fast lookups."""
        lo = (start_s - 2 * 86_400) // _STEP_S * _STEP_S
        n_slots = (end_s + 2 * 86_400 - lo) // _STEP_S + 1
        zone_of_key = self.keys >> _ZONE_SHIFT
        first = np.searchsorted(self.keys, (np.arange(len(self.zones)) << _ZONE_SHIFT)
                                | (lo - _BASE_S), side="right") - 1
        table = np.repeat(self.offsets[first][:, None], n_slots, axis=1).astype(np.int16)
        slot = ((self.keys & ((1 << _ZONE_SHIFT) - 1)) + _BASE_S - lo) // _STEP_S
        for k in np.flatnonzero((slot > 0) & (slot < n_slots)):  # a few changes per month
            table[zone_of_key[k], slot[k]:] = self.offsets[k]
        return OffsetGrid(int(lo), table)


@dataclass(frozen=True)
class OffsetGrid:
    """Offsets of every zone at every 15 minutes of a span (transitions lie on that grid)."""

    start_s: int
    table: np.ndarray  # int16 (zones, slots)

    def offset_min(self, zone_id: np.ndarray, epoch_s: np.ndarray) -> np.ndarray:
        slot = (np.asarray(epoch_s, dtype=np.int64) - self.start_s) // _STEP_S
        if slot.size and (slot.min() < 0 or slot.max() >= self.table.shape[1]):
            raise ValueError("instant outside the offset grid")
        return self.table[zone_id, slot]


def _offsets(ts: pl.Series, zone: str) -> np.ndarray:
    local = ts.dt.convert_time_zone(zone)
    return (local.dt.base_utc_offset() + local.dt.dst_offset()).dt.total_minutes().to_numpy()


def zone_transitions(zone: str) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, offset minutes) of one zone: the offset at TABLE_START, then changes."""
    day_s = np.arange(_BASE_S, int(TABLE_END.timestamp()) + 1, 86_400, dtype=np.int64)
    off = _offsets(_from_epoch(day_s), zone)
    changed = np.flatnonzero(off[1:] != off[:-1]) + 1
    steps = np.arange(0, 86_400 + 1, _STEP_S, dtype=np.int64)
    grid = (day_s[changed - 1][:, None] + steps[None, :]).ravel()
    goff = _offsets(_from_epoch(grid), zone).reshape(len(changed), len(steps))
    first_new = np.argmax(goff != goff[:, :1], axis=1)
    starts = np.concatenate([[_BASE_S], day_s[changed - 1] + steps[first_new]])
    values = np.concatenate([[off[0]], goff[np.arange(len(changed)), first_new]])
    return starts.astype(np.int64), values.astype(np.int32)


def _from_epoch(seconds: np.ndarray) -> pl.Series:
    return pl.from_epoch(pl.Series(seconds), time_unit="s").dt.replace_time_zone("UTC")


@lru_cache(maxsize=8)
def offset_table(zones: tuple[str, ...]) -> OffsetTable:
    """The transition table of ``zones`` (cached per process)."""
    keys, offsets = [], []
    for zid, zone in enumerate(zones):
        starts, values = zone_transitions(zone)
        keys.append((np.int64(zid) << _ZONE_SHIFT) | (starts - _BASE_S))
        offsets.append(values)
    return OffsetTable(zones, np.concatenate(keys), np.concatenate(offsets))
