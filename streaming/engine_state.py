"""The rule engine's per-user state rows, kept so one micro-batch costs O(batch), not O(state).

``UserRows`` holds rows of ``STATE_SCHEMA`` sorted by ``(user_id, _ts, transaction_id)`` in two
tables: a large *base* and a small *overlay* of recently updated users, which supersedes the
base for those users. Looking a batch's users up is a binary search in each; replacing their
rows rewrites only the overlay (a linear ``merge_sorted``); the overlay is folded into the base
when it grows past ``max(merge_rows, base / 8)`` rows, so the O(state) copy is amortised over
many batches. ``EngineState`` is the portable snapshot (rows + watermark) with atomic Parquet
I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from fraudlake.atomic import replacing

KEY = ["user_id", "_ts", "transaction_id"]
STATE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(), "_ts": pl.Int64(), "transaction_id": pl.String(),
    "lat": pl.Float64(), "lon": pl.Float64(),
    "high_frequency": pl.Boolean(), "geo_mismatch": pl.Boolean(),
}


@dataclass(frozen=True)
class EngineState:
    """What a consumer needs to carry the engine across a restart (see ``RuleEngine.restore``).

    Restore it into an engine with the same rule parameters it was taken with.
    """

    rows: pl.DataFrame  # STATE_SCHEMA, sorted by (user_id, _ts, transaction_id)
    watermark: int | None  # largest ts seen, epoch microseconds

    def write(self, path: Path) -> None:
        """Atomically write the state as Parquet (temp file + fsync + rename)."""
        meta = {"watermark": "" if self.watermark is None else str(self.watermark)}
        with replacing(path) as tmp:
            self.rows.write_parquet(tmp, metadata=meta)

    @classmethod
    def read(cls, path: Path) -> EngineState:
        meta = pq.read_metadata(path).metadata or {}
        mark = meta.get(b"watermark", b"").decode()
        return cls(pl.read_parquet(path), int(mark) if mark else None)


def _ranges(sorted_users: np.ndarray, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.searchsorted(sorted_users, users, side="left"),
            np.searchsorted(sorted_users, users, side="right"))


def _take(frame: pl.DataFrame, lo: np.ndarray, hi: np.ndarray) -> pl.DataFrame:
    """Rows ``lo[i]:hi[i]`` for every i, in order."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return frame.head(0)
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    idx = np.repeat(lo - starts, lens) + np.arange(total)
    return frame.select(pl.all().gather(pl.Series(idx, dtype=pl.Int64)))


def _mask(n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Boolean mask of length n, true inside any ``lo[i]:hi[i]``."""
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, lo, 1)
    np.add.at(marks, hi, -1)
    return np.cumsum(marks[:n]) > 0


class UserRows:
    """Sorted per-user state rows: base + overlay (see the module docstring)."""

    def __init__(self, rows: pl.DataFrame | None = None, merge_rows: int = 50_000) -> None:
        empty = pl.DataFrame(schema=STATE_SCHEMA)
        base = (empty if rows is None
                else rows.select(list(STATE_SCHEMA)).cast(pl.Schema(STATE_SCHEMA)))
        self._set_base(base.sort(KEY))
        self._set_overlay(empty)
        self.merge_rows = merge_rows

    def _set_base(self, frame: pl.DataFrame) -> None:
        self._base, self._base_u = frame, frame["user_id"].to_numpy()

    def _set_overlay(self, frame: pl.DataFrame) -> None:
        self._over, self._over_u = frame, frame["user_id"].to_numpy()

    def rows_of(self, users: np.ndarray) -> pl.DataFrame:
        """The current rows of ``users`` (sorted unique int64), grouped by user."""
        lo, hi = _ranges(self._over_u, users)
        in_over = hi > lo
        b_lo, b_hi = _ranges(self._base_u, users[~in_over])
        return pl.concat([_take(self._over, lo[in_over], hi[in_over]),
                          _take(self._base, b_lo, b_hi)])

    def replace(self, users: np.ndarray, rows: pl.DataFrame) -> None:
        """Make ``rows`` (sorted by KEY) the complete state of ``users`` (sorted unique)."""
        drop = _mask(len(self._over_u), *_ranges(self._over_u, users))
        kept = self._over.filter(pl.Series(~drop))
        self._set_overlay(kept.merge_sorted(rows.select(list(STATE_SCHEMA)), key="user_id"))
        if self._over.height > max(self.merge_rows, self._base.height // 8):
            self.merge()

    def merge(self) -> None:
        """Fold the overlay into the base (O(state))."""
        if self._over.is_empty():
            return
        over_users = np.unique(self._over_u)
        shadowed = _mask(len(self._base_u), *_ranges(self._base_u, over_users))
        rest = self._base.filter(pl.Series(~shadowed))
        self._set_base(rest.merge_sorted(self._over, key="user_id"))
        self._set_overlay(self._over.head(0))

    def filter_all(self, keep: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        """Merge, then keep the base rows where ``keep(user_ids, ts)`` is true."""
        self.merge()
        mask = keep(self._base_u, self._base["_ts"].to_numpy())
        self._set_base(self._base.filter(pl.Series(mask)))

    def frame(self) -> pl.DataFrame:
        """All current rows, sorted (merges the overlay first)."""
        self.merge()
        return self._base

    @property
    def height(self) -> int:
        return self.frame().height

    def n_users(self) -> int:
        return int(self.frame()["user_id"].n_unique())
