"""Data for the notebooks: the project's lake, or a small generated sample when none is given.

``FRAUDLAKE_NOTEBOOK_DATA`` names a storage root holding ``historical/`` (the history written by
``python -m batch.generate_history``) and ``lake/transactions/`` (the live lake written by the
consumer or ``python -m streaming.demo``), e.g. ``storage``. Unset: a small sample is generated
once with the project's own generators into ``$TMPDIR/fraudlake-notebook-sample`` (about 10 s)
and reused, so the notebooks run anywhere.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

import duckdb

from batch.generate_history import HistoryConfig, generate_history
from fraudlake.settings import NOTEBOOK_DATA_ENV, Settings
from lake.layout import HISTORY_NAME, LAKE_NAME, transactions_dir
from queries.staging import connect, open_source, resolve_input

DATA_ENV = NOTEBOOK_DATA_ENV
SAMPLE_ROWS = 150_000
SAMPLE_LIVE_EVENTS = 10_000
_DONE = ".sample-complete"


def data_root() -> Path:
    """The storage root the notebooks read (see the module docstring)."""
    root = Settings.from_env().notebook_data
    if root is not None:
        if not (root / "historical").is_dir():
            raise FileNotFoundError(f"{DATA_ENV}={root}: no historical/ folder there")
        return root
    return ensure_sample(Path(tempfile.gettempdir()) / "fraudlake-notebook-sample")


def ensure_sample(root: Path, rows: int = SAMPLE_ROWS, live_events: int = SAMPLE_LIVE_EVENTS,
                  seed: int = 42) -> Path:
    """Generate a small history (2021–2025) and a short live-lake run under ``root`` once."""
    if (root / _DONE).exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two notebooks opened at once generate it once
        if not (root / _DONE).exists():
            _generate(root, rows, live_events, seed)
    return root


def _generate(root: Path, rows: int, live_events: int, seed: int) -> None:
    from streaming.demo import run_demo

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    generate_history(HistoryConfig(rows=rows, out=root / HISTORY_NAME, seed=seed,
                                   start_year=2021, end_year=2025, users=3_000, workers=1),
                     progress=False)
    run_demo(count=live_events, seed=seed + 1, users=5_000, batch=5_000,
             lake=root / LAKE_NAME, flags_db=root / "flags" / "flags.sqlite", progress=False)
    (root / _DONE).write_text("ok\n")


def history_path(root: Path) -> str:
    return str(root / HISTORY_NAME)


def live_path(root: Path) -> str:
    return str(transactions_dir(root / LAKE_NAME))


def open_lake(path: str) -> duckdb.DuckDBPyConnection:
    """DuckDB with the lake at ``path`` as the staged view ``transactions`` (and raw ``source``),
    exactly as ``batch.backtest`` and ``python -m queries`` read it."""
    con = connect()
    open_source(con, resolve_input(path))
    return con
