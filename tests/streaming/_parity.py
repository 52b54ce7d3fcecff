"""Live ≡ backtest ≡ replay: read each decider's per-transaction decisions into one shape and
compare them (shared by tests/streaming/test_parity_rules_kafka.py and bench/bench_parity.py).

One shape: ``transaction_id``, ``rules_fired`` (list of rule ids, file order), ``score``,
``flagged``, sorted by transaction_id.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
SHAPE = {"transaction_id": pl.String(), "rules_fired": pl.List(pl.String()),
         "score": pl.Float64(), "flagged": pl.Boolean()}


def from_lake(transactions: Path) -> pl.DataFrame:
    """Decisions of the live consumer: the lake v2 columns of every lake file."""
    files = sorted(p for p in transactions.rglob("*.parquet") if not p.name.startswith("."))
    frame = pl.read_parquet(files, columns=list(SHAPE), hive_partitioning=False)
    return frame.cast(SHAPE).sort("transaction_id")


def from_flags(flags: pl.DataFrame, rule_ids: tuple[str, ...]) -> pl.DataFrame:
    """Decisions of a ``--flags-out`` table (one Boolean per rule id) or ``reference_decisions``."""
    listed = [pl.when(pl.col(r)).then(pl.lit(r)) for r in rule_ids]
    return flags.select("transaction_id", rules_fired=pl.concat_list(listed).list.drop_nulls(),
                        score=pl.col("score").cast(pl.Float64),
                        flagged=pl.col("flagged")).cast(SHAPE).sort("transaction_id")


def differences(a: pl.DataFrame, b: pl.DataFrame) -> int:
    """Transactions missing on one side or decided differently."""
    j = a.join(b, on="transaction_id", how="full", suffix="_b", coalesce=True)
    bad = (pl.col("rules_fired") != pl.col("rules_fired_b")) | (
        pl.col("score") != pl.col("score_b")) | (pl.col("flagged") != pl.col("flagged_b"))
    return int(j.select((bad.fill_null(True)).sum()).item())


def run_replay(lake: Path, rules: Path, out: Path) -> None:
    _run("streaming.replay", "--input", str(lake), "--flags-out", str(out), "--rules",
         str(rules), "--quiet")


def backtest_takes_rules() -> bool:
    """Whether ``batch.backtest`` decides rule sets yet (``--rules``)."""
    help_text = subprocess.run([sys.executable, "-m", "batch.backtest", "--help"], cwd=ROOT,
                               capture_output=True, text=True).stdout
    return "--rules" in help_text


def run_backtest(lake: Path, rules: Path, out: Path) -> None:
    _run("batch.backtest", "--input", str(lake), "--flags-out", str(out), "--rules",
         str(rules), "--quiet")


def _run(module: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}): {proc.stderr[-2000:]}")
