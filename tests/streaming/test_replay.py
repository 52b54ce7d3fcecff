"""streaming.replay: Parquet in any order → the same engine → per-transaction flags."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from fraudlake.cli import run
from rules.model import load_rule_set
from streaming.replay import main
from tests.reference_rules import reference_decisions
from tests.streaming._rich import rich_events, rich_rule_set
from tests.streaming._stream_events import random_events


def _split(df: pl.DataFrame, folder: Path) -> None:
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=4)
    (folder / "year=2024" / "month=03").mkdir(parents=True)
    for i in range(3):
        shuffled.gather_every(3, offset=i).write_parquet(
            folder / "year=2024" / "month=03" / f"part-{i}.parquet")


def test_replay_folder_equals_reference(tmp_path: Path) -> None:
    df = random_events(2000, n_users=10, seed=9)
    _split(df, tmp_path / "in")
    out = tmp_path / "flags.parquet"
    assert run(main, ["--input", str(tmp_path / "in"), "--flags-out", str(out),
                      "--batch-rows", "137", "--quiet"]) == 0
    got = pl.read_parquet(out)
    assert got.columns == ["transaction_id", "high_amount", "high_frequency", "unusual_hour",
                           "geo_mismatch", "score", "flagged"]
    ref = reference_decisions(df, load_rule_set())
    assert got.sort("transaction_id").equals(ref.sort("transaction_id"))
    meta = pq.read_metadata(out).metadata
    assert meta[b"fraudlake.rule_set_id"] == load_rule_set().id.encode()


def test_replay_of_a_rich_rule_set_equals_reference(tmp_path: Path) -> None:
    rule_set = rich_rule_set(tmp_path)
    df = rich_events(1500, n_users=12, seed=4)
    _split(df, tmp_path / "in")
    out = tmp_path / "flags.parquet"
    assert run(main, ["--input", str(tmp_path / "in"), "--flags-out", str(out),
                      "--rules", str(tmp_path / "rich.toml"), "--batch-rows", "97",
                      "--quiet"]) == 0
    got = pl.read_parquet(out)
    assert got.columns == ["transaction_id", *rule_set.rule_ids, "score", "flagged"]
    ref = reference_decisions(df, rule_set)
    assert got.sort("transaction_id").equals(ref.sort("transaction_id"))
    assert pq.read_metadata(out).metadata[b"fraudlake.rule_set_id"] == rule_set.id.encode()
    assert 0 < got["flagged"].sum() < got.height


def test_replay_glob_csv_and_overrides(tmp_path: Path) -> None:
    df = random_events(500, n_users=5, seed=1)
    _split(df, tmp_path / "in")
    out = tmp_path / "flags.csv"
    assert run(main, ["--input", str(tmp_path / "in" / "**" / "*.parquet"), "--flags-out",
                      str(out), "--set", "high_amount.threshold=0", "--quiet"]) == 0
    got = pl.read_csv(out)
    assert got.height == 500
    assert got["high_amount"].sum() == df.filter(pl.col("amount") > 0).height


@pytest.mark.parametrize(("args", "message"), [
    (["--input", "{tmp}/nothing"], "--input not found"),
    (["--input", "{tmp}/bad"], "missing core column(s): amount"),
    (["--input", "{tmp}/garbage"], "cannot read Parquet"),
    (["--input", "{tmp}/in", "--set", "nope=1"], "--set"),
    (["--input", "{tmp}/in", "--set", "nope.x=1"], "unknown rule 'nope'"),
    (["--input", "{tmp}/in", "--set", "high_amount.threshold=x"],
     "rule 'high_amount': threshold must be a decimal"),
    (["--input", "{tmp}/in", "--rules", "{tmp}/missing.toml"], "missing.toml: no such"),
    (["--input", "{tmp}/in", "--rules", "{tmp}/bad.toml"],
     "bad.toml: rule 'fast': unknown parameter 'windw'"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    _split(random_events(50, n_users=2, seed=1), tmp_path / "in")
    (tmp_path / "bad").mkdir()
    random_events(5, seed=1).drop("amount").write_parquet(tmp_path / "bad" / "x.parquet")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "x.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "bad.toml").write_text('version = "v"\n[[rule]]\nid = "fast"\n'
                                       'kind = "velocity_count"\nwindw = 5\n')
    out = tmp_path / "out" / "flags.parquet"
    argv = [a.format(tmp=tmp_path) for a in args] + ["--flags-out", str(out), "--quiet"]
    assert run(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() and not out.parent.exists()


def test_bad_output_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(main, ["--input", str(tmp_path), "--flags-out", str(tmp_path / "x.txt")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err


def test_replay_of_empty_input_writes_an_empty_table(tmp_path: Path) -> None:
    random_events(10, seed=1).head(0).write_parquet(tmp_path / "empty.parquet")
    out = tmp_path / "flags.parquet"
    assert run(main, ["--input", str(tmp_path / "empty.parquet"), "--flags-out", str(out),
                      "--quiet"]) == 0
    got = pl.read_parquet(out)
    assert got.height == 0 and got.columns[0] == "transaction_id"
