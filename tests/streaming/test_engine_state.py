"""UserRows (append-only table + user index) behaves like a plain dict of per-user rows."""

from __future__ import annotations

import numpy as np
import polars as pl

from streaming.engine import RuleEngine
from streaming.engine_state import KEY_SCHEMA, UserRows
from tests.streaming._stream_events import random_batches, random_events

STATE_SCHEMA = {**KEY_SCHEMA, "lat": pl.Float64(), "lon": pl.Float64(),
                "_f_geo": pl.Boolean()}


def _rows(user: int, n: int, t0: int) -> pl.DataFrame:
    return pl.DataFrame({
        "user_id": [user] * n, "ts_us": [t0 + i for i in range(n)],
        "transaction_id": [f"u{user}-{t0 + i}" for i in range(n)], "lat": [0.0] * n,
        "lon": [0.0] * n, "_f_geo": [True] * n,
    }, schema=STATE_SCHEMA)


def test_user_rows_match_a_dict_model() -> None:
    rng = np.random.default_rng(0)
    table = UserRows(STATE_SCHEMA, merge_rows=7)
    model: dict[int, pl.DataFrame] = {}
    for step in range(300):
        users = np.unique(rng.integers(0, 40, rng.integers(1, 6)))
        new = {int(u): _rows(int(u), int(rng.integers(1, 4)), step * 10) for u in users}
        got = table.rows_of(users)
        want = pl.concat([model[u] for u in users.tolist() if u in model] or
                         [pl.DataFrame(schema=STATE_SCHEMA)])
        assert got.sort("user_id", "ts_us").equals(want.sort("user_id", "ts_us"))
        table.replace(users, pl.concat([new[int(u)] for u in users]))
        model.update(new)
    everything = pl.concat(model.values()).sort("user_id", "ts_us", "transaction_id")
    assert table.frame().equals(everything) and table.n_users() == len(model)


def test_engine_with_tiny_overlay_decides_the_same() -> None:
    df = random_events(2000, n_users=25, seed=12)
    batches = random_batches(df, seed=5, max_size=30)
    small = RuleEngine()
    small._state.merge_rows = 5  # compact the table all the time
    default = RuleEngine()
    a = pl.concat([small.process(b) for b in batches])
    b = pl.concat([default.process(b) for b in batches])
    assert a.equals(b) and small.metrics().state_rows == default.metrics().state_rows
