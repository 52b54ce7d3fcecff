"""The rule engine's per-user state rows, kept so one micro-batch costs O(batch), not O(state).

``UserRows`` holds each user's state rows (sorted by ``(user_id, ts_us, transaction_id)``)
contiguously in one append-only table plus a sorted index user → (start, length). Looking a
batch's users up is a binary search and one gather; replacing their rows appends the new rows
and repoints the index (the old rows become garbage); when the garbage outgrows
``max(merge_rows, live rows)`` the table is compacted (one gather in user order), so the
O(state) copy is amortised over many batches and a micro-batch costs O(its users' rows).
``EngineState`` is the portable snapshot (rows + watermark + the id of the rule set it was
taken under) with atomic Parquet I/O.

The columns are the key ``KEY`` plus whatever the engine's rule set needs (``state_schema``);
the table only relies on the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from fraudlake.atomic import replacing

KEY = ["user_id", "ts_us", "transaction_id"]
KEY_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.Int64(), "ts_us": pl.Int64(), "transaction_id": pl.String(),
}


@dataclass(frozen=True)
class EngineState:
    """What a consumer needs to carry the engine across a restart (see ``RuleEngine.restore``).

    Restore it into an engine with the same rule set (``rule_set_id``) it was taken with.
    """

    rows: pl.DataFrame  # KEY + the rule set's state columns, sorted by KEY
    watermark: int | None  # largest ts seen, epoch microseconds
    rule_set_id: str = ""

    def write(self, path: Path) -> None:
        """Atomically write the state as Parquet (temp file + fsync + rename)."""
        meta = {"watermark": "" if self.watermark is None else str(self.watermark),
                "fraudlake.rule_set_id": self.rule_set_id}
        with replacing(path) as tmp:
            self.rows.write_parquet(tmp, metadata=meta)

    @classmethod
    def read(cls, path: Path) -> EngineState:
        meta = pq.read_metadata(path).metadata or {}
        mark = meta.get(b"watermark", b"").decode()
        return cls(pl.read_parquet(path), int(mark) if mark else None,
                   meta.get(b"fraudlake.rule_set_id", b"").decode())


def _gather_ranges(lo: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Row numbers ``lo[i] .. lo[i] + lens[i] - 1`` for every i, in order."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    return np.repeat(lo - starts, lens) + np.arange(total)


class UserRows:
    """Per-user state rows: an append-only table + a sorted user index (see the module
    docstring)."""

    def __init__(self, schema: dict[str, pl.DataType], rows: pl.DataFrame | None = None,
                 merge_rows: int = 50_000) -> None:
        self.schema = dict(schema)
        self.merge_rows = merge_rows
        empty = pl.DataFrame(schema=self.schema)
        base = (empty if rows is None
                else rows.select(list(self.schema)).cast(pl.Schema(self.schema)))
        self._set_table(base.sort(KEY))

    def _set_table(self, table: pl.DataFrame) -> None:
        """A table whose rows are all live and grouped by user, in user order."""
        self._rows = table.rechunk()
        user = table["user_id"].to_numpy()
        self._users, first, counts = np.unique(user, return_index=True, return_counts=True)
        self._start = first.astype(np.int64)
        self._len = counts.astype(np.int64)
        self._live = table.height

    def rows_of(self, users: np.ndarray) -> pl.DataFrame:
        """The current rows of ``users`` (sorted unique int64), grouped by user."""
        n = len(self._users)
        pos = np.searchsorted(self._users, users)
        found = pos < n
        found[found] = self._users[pos[found]] == users[found]
        pos = pos[found]
        idx = _gather_ranges(self._start[pos], self._len[pos])
        if not len(idx):
            return self._rows.head(0)
        return self._rows[pl.Series(idx, dtype=pl.Int64)]

    def replace(self, users: np.ndarray, rows: pl.DataFrame) -> None:
        """Make ``rows`` (sorted by KEY) the complete state of ``users`` (sorted unique)."""
        rows = rows.select(list(self.schema))
        keep = ~np.isin(self._users, users)
        new_users, first, counts = np.unique(rows["user_id"].to_numpy(), return_index=True,
                                             return_counts=True)
        all_users = np.concatenate([self._users[keep], new_users])
        order = np.argsort(all_users, kind="stable")
        self._users = all_users[order]
        self._start = np.concatenate([self._start[keep],
                                      first.astype(np.int64) + self._rows.height])[order]
        self._len = np.concatenate([self._len[keep], counts.astype(np.int64)])[order]
        self._live = int(self._len.sum())
        self._rows = self._rows.vstack(rows) if rows.height else self._rows
        if self._rows.height - self._live > max(self.merge_rows, self._live):
            self.merge()

    def merge(self) -> None:
        """Drop the garbage: one gather of the live rows in user order (O(state))."""
        if self._rows.height == self._live and self._rows.n_chunks() == 1:
            return
        idx = _gather_ranges(self._start, self._len)
        self._set_table(self._rows[pl.Series(idx, dtype=pl.Int64)])

    def filter_all(self, keep: Callable[[pl.DataFrame], np.ndarray]) -> None:
        """Compact, then keep the rows where ``keep(rows)`` is true."""
        self.merge()
        mask = keep(self._rows)
        self._set_table(self._rows.filter(pl.Series(mask)))

    def frame(self) -> pl.DataFrame:
        """All current rows, sorted (compacts first)."""
        self.merge()
        return self._rows

    @property
    def height(self) -> int:
        return self._live

    def n_users(self) -> int:
        return len(self._users)
