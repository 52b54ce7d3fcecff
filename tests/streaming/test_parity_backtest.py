"""Parity: the stream engine (via streaming.replay) flags exactly what the backtest SQL flags."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from batch.backtest import main as backtest_main
from fraudlake.cli import run
from streaming.replay import main as replay_main
from tests.streaming._stream_events import random_events


def _write_shuffled(df: pl.DataFrame, folder: Path, parts: int = 4) -> None:
    folder.mkdir(parents=True)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=2)
    for i in range(parts):
        shuffled.gather_every(parts, offset=i).write_parquet(folder / f"part-{i}.parquet")


@pytest.mark.parametrize(("seed", "overrides"), [
    (1, []),
    (2, ["high_frequency.window_seconds=300", "high_frequency.count=3"]),
    (3, ["unusual_hour.start_hour=22", "unusual_hour.end_hour=4",
         "geo_mismatch.distance_km=1", "geo_mismatch.speed_kmh=30"]),
])
def test_replay_flags_equal_backtest_flags(tmp_path: Path, seed: int,
                                           overrides: list[str]) -> None:
    df = random_events(4000, n_users=25, seed=seed, span_s=6 * 3600)
    _write_shuffled(df, tmp_path / "in")
    sets = [arg for o in overrides for arg in ("--set", o)]
    stream_out, sql_out = tmp_path / "stream.parquet", tmp_path / "sql.parquet"
    assert run(replay_main, ["--input", str(tmp_path / "in"), "--flags-out", str(stream_out),
                             "--batch-rows", "250", "--quiet", *sets]) == 0
    assert backtest_main(["--input", str(tmp_path / "in"), "--flags-out", str(sql_out),
                          "--quiet", *sets]) == 0
    stream = pl.read_parquet(stream_out).sort("transaction_id")
    sql = pl.read_parquet(sql_out).sort("transaction_id")
    common = [c for c in stream.columns if c in sql.columns]  # score once the SQL side has it
    assert len(common) >= 6
    stream, sql = stream.select(common), sql.select(common)
    assert stream.height == df.height and stream["high_frequency"].sum() > 0
    assert stream.equals(sql)
