"""Bad command-line input for every entry point: exit code 2, exactly ONE line on stderr naming
the problem (no traceback, no usage dump), and nothing written anywhere.

Each case runs in a fresh working directory holding only the inputs it names, with no service
variables in the environment; "nothing written" = that directory is exactly what it was before
(default outputs such as ``storage/`` are relative, so they would appear there; the
"unwritable" outputs lie under a file, so they can never be created). The first case of each
entry point, and every case of the commands that talk to servers, runs as a real
``python -m <module>`` subprocess (on a small thread pool); the others call ``main(argv)``
in-process through ``fraudlake.cli.run``, exactly what ``python -m`` does, to keep the table
within a few tens of seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import polars as pl
import pytest

from fraudlake.cli import run
from tests.streaming._kafka_data import make_events

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "MONGO_URI", "S3_URI", "FRAUDLAKE_S3_URI",
               "LAKE_DIR", "HISTORY_DIR", "LOCAL_FLAGS_PATH", "DASHBOARD_CACHE_DIR",
               "CONSUMER_METRICS", "AWS_ENDPOINT_URL")
UNWRITABLE = "in/events.parquet/sub"  # under a file: cannot be created, even by root
SUBPROCESS_ONLY = {"streaming.consume", "streaming.produce", "fraudlake.services",
                   "streaming.rules"}


@dataclass(frozen=True)
class Outcome:
    code: int | str | None
    stderr: str
    how: str  # "subprocess" or "in-process"


@dataclass(frozen=True)
class Case:
    module: str
    argv: tuple[str, ...]
    names: str  # a fragment the one error line must contain (case-insensitive)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.module} {' '.join(self.argv)}"[:90]


def case(module: str, *argv: str, names: str, **env: str) -> Case:
    return Case(module, argv, names, tuple(env.items()))


ROWS = ("--rows", "100")
EV = ("--input", "in/events.parquet")
CASES: list[Case] = [
    # batch.generate_history
    case("batch.generate_history", names="--rows"),
    case("batch.generate_history", "--rows", "-5", names="-5"),
    case("batch.generate_history", "--rows", "lots", names="lots"),
    case("batch.generate_history", *ROWS, "--out", "h", "--bogus", names="--bogus"),
    case("batch.generate_history", *ROWS, "--out", "h", "--users", "0", names="--users"),
    case("batch.generate_history", *ROWS, "--out", "h", "--workers", "0", names="--workers"),
    case("batch.generate_history", *ROWS, "--out", "h", "--start-year", "2025",
         "--end-year", "2000", names="year"),
    case("batch.generate_history", *ROWS, "--out", "h", "--start-year", "20x5", names="20x5"),
    case("batch.generate_history", *ROWS, "--out", "in", names="in"),  # exists
    case("batch.generate_history", "--rows", "1e30", "--out", "h", names="--rows"),
    case("batch.generate_history", *ROWS, "--out", "h", "--users", "1e15", names="--users"),
    case("batch.generate_history", *ROWS, "--out", "h", "--workers", "1000", names="--workers"),
    case("batch.generate_history", *ROWS, "--out", UNWRITABLE, names="in/events.parquet"),
    # batch.backtest
    case("batch.backtest", "--input", "missing/lake", names="missing/lake"),
    case("batch.backtest", *EV, "--set", "high_amount.nope=1", names="high_amount.nope"),
    case("batch.backtest", *EV, "--set", "high_frequency.count=many", names="many"),
    case("batch.backtest", *EV, "--set", "threshold", names="threshold"),
    case("batch.backtest", *EV, "--chunk-rows", "0", names="--chunk-rows"),
    case("batch.backtest", *EV, "--threads", "-1", names="--threads"),
    case("batch.backtest", *EV, "--memory-limit", "lots", names="lots"),
    case("batch.backtest", *EV, "--report", f"{UNWRITABLE}/r.json", names="in/events.parquet"),
    case("batch.backtest", *EV, "--flags-out", f"{UNWRITABLE}/f.parquet",
         names="in/events.parquet"),
    case("batch.backtest", "--input", "in/not-parquet.txt", names="not-parquet"),
    # queries
    case("queries", "no_such_query", *EV, names="no_such_query"),
    case("queries", "flags", *EV, "--set", "geo_mismatch.speed=fast",
         names="geo_mismatch.speed"),
    case("queries", "flags", *EV, "--param", "oops", names="oops"),
    case("queries", "flags", *EV, "--format", "xml", names="xml"),
    case("queries", "flags", *EV, "--format", "parquet", names="--out"),
    case("queries", "flags", "--input", "missing.parquet", names="missing.parquet"),
    case("queries", "flags", *EV, "--format", "csv", "--out", f"{UNWRITABLE}/x.csv",
         names="in/events.parquet"),
    case("queries", "flags", *EV, "--dialect", "oracle", names="oracle"),
    # streaming.produce / consume (no broker needed: they fail before connecting)
    case("streaming.produce", "--count", "10", names="KAFKA_BOOTSTRAP_SERVERS"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--count", "-3", names="-3"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--rate", "-1", names="--rate"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--rate", "fast", names="fast"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--count", "5", "--duration", "3",
         names="--duration"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--compression", "zip",
         names="zip"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--users", "0", names="--users"),
    case("streaming.consume", names="KAFKA_BOOTSTRAP_SERVERS"),
    # streaming.rules (the rule control topic): validated before any broker is needed
    case("streaming.rules", "list", names="KAFKA_BOOTSTRAP_SERVERS"),
    case("streaming.rules", "publish", "missing.toml", names="missing.toml"),
    case("streaming.rules", "publish", "in/events.parquet", names="not UTF-8"),
    case("streaming.rules", "--bootstrap", "127.0.0.1:1", "--timeout", "0", "list",
         names="--timeout"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--batch-size", "0",
         names="--batch-size"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--timeout", "-1", names="timeout"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--poll-timeout", "nan",
         names="--poll-timeout"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--set", "x.y=1", names="x.y"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--rules", "in/not-parquet.txt",
         names="not-parquet.txt: not valid TOML"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--set",
         "high_amount.threshold=x", names="rule 'high_amount': threshold"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--lake", "in/events.parquet",
         names="in/events.parquet"),
    case("streaming.consume", "--bootstrap", "127.0.0.1:1", "--max-messages", "1.5",
         names="1.5"),
    # streaming.replay
    case("streaming.replay", *EV, names="--flags-out"),
    case("streaming.replay", *EV, "--flags-out", "out/flags.json", names="flags.json"),
    case("streaming.replay", "--input", "missing", "--flags-out", "out/f.parquet",
         names="missing"),
    case("streaming.replay", *EV, "--flags-out", "out/f.parquet", "--set", "a=b",
         names="unknown rule 'a'"),
    case("streaming.replay", *EV, "--flags-out", "out/f.parquet", "--batch-rows", "0",
         names="--batch-rows"),
    case("streaming.replay", *EV, "--flags-out", f"{UNWRITABLE}/f.parquet",
         names="in/events.parquet"),
    case("streaming.replay", *EV, "--flags-out", "out/f.parquet", "--rules", "in/none.toml",
         names="in/none.toml: no such rule set file"),
    # streaming.demo
    case("streaming.demo", "--count", "10", "--lake", "out/lake", "--rules",
         "in/not-parquet.txt", names="not-parquet.txt: not valid TOML"),
    case("streaming.demo", "--count", "0", "--lake", "out/lake", names="--count"),
    case("streaming.demo", "--count", "10", "--rate", "0", "--lake", "out/lake", names="--rate"),
    case("streaming.demo", "--count", "10", "--lake", "in/events.parquet", names="--lake"),
    case("streaming.demo", "--count", "10", "--lake", "out/lake", "--flags-db", "in",
         names="--flags-db"),
    case("streaming.demo", "--count", "10", "--lake", "out/lake", "--set",
         "unusual_hour.start_hour=25", names="start_hour"),
    case("streaming.demo", "--count", "10", "--lake", f"{UNWRITABLE}/lake",
         names="in/events.parquet"),
    # lake.*
    case("lake.sync", "--source", "in", names="--dest"),
    case("lake.sync", "--source", "in", "--dest", "http://bucket/x", names="http://bucket/x"),
    case("lake.sync", "--source", "in", "--dest", "s3://bucket-x/p", "--workers", "0",
         names="--workers"),
    case("lake.sync", "--source", "missing", "--dest", "s3://bucket-x/p", names="missing"),
    case("lake.compact", "--lake", "missing", names="missing"),
    case("lake.compact", "--lake", "in", "--min-age", "-1", names="--min-age"),
    case("lake.compact", "--lake", "in", "--target-rows", "0", names="--target-rows"),
    case("lake.export", "--source", "mongo", names="MONGO_URI"),
    case("lake.export", "--source", "local", "--lookback-seconds", "-1",
         "--filtered-dir", "out/f", "--exported-dir", "out/e", names="--lookback-seconds"),
    case("lake.export", "--source", "local", "--filtered-dir", "out/f", "--exported-dir",
         "out/e", names="flag store", LOCAL_FLAGS_PATH="missing/flags.sqlite"),
    case("lake.export", "--source", "local", "--filtered-dir", "in/events.parquet",
         "--exported-dir", "out/e", names="in/events.parquet",
         LOCAL_FLAGS_PATH="in/flags.sqlite"),
    case("lake.export", "--source", "mongo", "--filtered-dir", "out/f", "--exported-dir",
         "out/e", names="MONGO_URI", MONGO_URI="notmongo://h"),
    case("lake.athena", "--out", "out/a", names="--location"),
    case("lake.athena", "--location", "s3:/bad", "--out", "out/a", names="s3:/bad"),
    case("lake.athena", "--location", "s3://bucket-x/p", "--database", "Bad-Name", "--out", "out/a",
         names="Bad-Name"),
    case("lake.athena", "--location", "s3://bucket-x/p", "--years", "2100,2000", "--out", "out/a",
         names="--years"),
    case("lake.athena", "--location", "s3://bucket-x/p", "--out", "in/events.parquet",
         names="in/events.parquet"),
    case("lake.athena", "--location", "s3://bucket-x/p", "--out", UNWRITABLE,
         names="in/events.parquet"),
    # issue 16, data loss: an output that is, contains or lies inside an input is refused
    case("batch.backtest", *EV, "--flags-out", "in/events.parquet", names="overlaps the input"),
    case("batch.backtest", "--input", "in/h", "--report", "in/h/r.json", names="overlaps"),
    case("batch.backtest", "--input", "in/h/year=2024/*/*.parquet", "--flags-out",
         "in/h/year=2024/f.parquet", names="overlaps"),
    case("batch.backtest", *EV, "--sweep", "high_amount.threshold=100:200:50", "--plot",
         "in/events.parquet", names="--plot"),
    case("batch.backtest", *EV, "--rules", "in/r.toml", "--report", "in/r.toml", names="--report"),
    case("streaming.replay", *EV, "--flags-out", "in/events.parquet", names="overlaps"),
    case("streaming.replay", "--input", "in/h", "--flags-out", "in/h/f.parquet", names="overlaps"),
    case("queries", "flags", *EV, "--format", "parquet", "--out", "in/events.parquet",
         names="overlaps"),
    case("lake.export", "--source", "local", "--filtered-dir", "in", "--exported-dir", "out/e",
         names="overlaps", LOCAL_FLAGS_PATH="in/good.sqlite"),
    case("dashboard.baseline", "--history-dir", "in/h", "--cache-dir", "in/h/c", names="overlaps"),
    case("batch.generate_history", *ROWS, "--out", ".", "--overwrite", names="working folder"),
    case("batch.generate_history", *ROWS, "--out", "..", "--overwrite", names="working folder"),
    # issue 16, out-of-range numbers (parse time; nothing created first)
    case("batch.generate_history", *ROWS, "--out", "h", "--seed", "99999999999999999999999",
         names="--seed"),
    case("streaming.demo", "--count", "10", "--seed", "-1", "--lake", "out/lake", "--flags-db",
         "out/f.sqlite", names="--seed"),
    case("streaming.demo", "--count", "10", "--lake", "out/lake", "--flags-db", "out/f.sqlite",
         "--set", "high_amount.threshold=nan", names="threshold"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--count", "10", "--rate", "1e-300",
         names="--rate"),
    case("streaming.produce", "--bootstrap", "127.0.0.1:1", "--count", "10", "--seed", "-1",
         names="--seed"),
    case("batch.backtest", *EV, "--set", "geo_mismatch.min_hours=nan", names="min_hours"),
    case("batch.backtest", *EV, "--set", "geo_mismatch.distance_km=-1", names="distance_km"),
    case("streaming.replay", *EV, "--flags-out", "out/f.parquet", "--set",
         "high_amount.threshold=nan", names="threshold"),
    case("queries", "flags", *EV, "--set", "high_amount.threshold=inf", names="threshold"),
    case("lake.export", "--source", "local", "--lookback-seconds", "1e308", "--filtered-dir",
         "out/f", "--exported-dir", "out/e", names="--lookback-seconds",
         LOCAL_FLAGS_PATH="in/good.sqlite"),
    case("lake.export", "--exported-dir", "out/e", "--filtered-dir", "out/f", "--source",
         "local", names="cannot read flags", LOCAL_FLAGS_PATH="in/flags.sqlite"),
    case("lake.compact", "--lake", "in", "--min-age", "inf", names="--min-age"),
    case("simulator.audit", "missing", names="missing"),
    case("simulator.audit", names="LAKE_PATH"),
    # dashboard, services
    case("dashboard.baseline", "--history-dir", "missing", "--cache-dir", "out/c",
         names="missing"),
    case("dashboard.baseline", "--history-dir", "in/events.parquet", "--cache-dir", "out/c",
         names="in/events.parquet"),
    case("dashboard.baseline", "--history-dir", "in/h", "--cache-dir", "in/events.parquet",
         names="in/events.parquet"),
    case("dashboard.baseline", "--history-dir", "in", "--cache-dir", "out/c",
         names="year=YYYY/month=MM"),
    case("dashboard.users", "--file", "out/u.txt", "add", "bad name!", "--password-stdin",
         names="user name"),
    case("dashboard.users", "--file", "out/u.txt", "remove", "alice", names="remove"),
    case("fraudlake.services", "sideways", names="sideways"),
    case("fraudlake.services", "up", "redis", names="redis"),
    case("fraudlake.services", "up", "--timeout", "-5", names="--timeout"),
    case("fraudlake.services", "status", names="FRAUDLAKE_KAFKA_PORT",
         FRAUDLAKE_KAFKA_PORT="ninety"),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _workdir(tmp: Path) -> Path:
    """An empty folder with inputs: in/events.parquet (a few valid events), in/h/ (a one-month
    hive history), in/flags.sqlite (not a database), in/not-parquet.txt."""
    tmp.mkdir(parents=True)
    (tmp / "in").mkdir()
    events = make_events(40)
    events.write_parquet(tmp / "in" / "events.parquet")
    (tmp / "in" / "h" / "year=2024" / "month=01").mkdir(parents=True)
    events.write_parquet(tmp / "in" / "h" / "year=2024" / "month=01" / "part-0.parquet")
    (tmp / "in" / "flags.sqlite").write_text("not sqlite")
    (tmp / "in" / "not-parquet.txt").write_text("hello")
    (tmp / "in" / "r.toml").write_bytes((ROOT / "rules" / "default.toml").read_bytes())
    with sqlite3.connect(tmp / "in" / "good.sqlite") as con:  # an (empty) local flag store
        con.execute("CREATE TABLE flags (transaction_id TEXT PRIMARY KEY, flagged_at TEXT)")
    con.close()
    return tmp


def _run(c: Case, cwd: Path) -> Outcome:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    env.update({"PYTHONPATH": str(ROOT), **dict(c.env)})
    proc = subprocess.run([sys.executable, "-m", c.module, *c.argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    return Outcome(proc.returncode, proc.stderr, "subprocess")


def _run_in_process(c: Case, cwd: Path) -> Outcome:
    """``main(argv)`` the way ``python -m`` runs it (``fraudlake.cli.run`` around it), in
    ``cwd``; stderr captured."""
    module = importlib.import_module("queries.__main__" if c.module == "queries" else c.module)
    err = io.StringIO()
    old = os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err):
            try:
                code = run(module.main, list(c.argv))
            except SystemExit as exc:  # argparse errors
                code = exc.code
    finally:
        os.chdir(old)
        for sig, handler in handlers.items():  # entry points may install their own
            signal.signal(sig, handler)
    return Outcome(code, err.getvalue(), "in-process")


def _in_subprocess(c: Case, first_of_module: bool) -> bool:
    """At least one subprocess per entry point; all cases of the commands that could start
    servers or connect if a check regressed; cases that need environment variables."""
    return (first_of_module or bool(c.env) or c.module in SUBPROCESS_ONLY
            or any(name in os.environ for name in SERVICE_ENV))


class _Named(Protocol):
    """A case of a command: its test id and the module it runs."""

    @property
    def id(self) -> str: ...

    @property
    def module(self) -> str: ...


C = TypeVar("C", bound=_Named)
R = TypeVar("R")


def run_cases(cases: Sequence[C], one: Callable[[int, C, bool], tuple[str, R]],
              in_subprocess: Callable[[C, bool], bool]) -> dict[str, R]:
    """Every case once, ``one(index, case, in_subprocess)`` → (id, result). The cases
    ``in_subprocess(case, first of its command)`` picks run on a small thread pool while the
    others run one by one in this process; id → result."""
    seen: set[str] = set()
    plan = []
    for i, c in enumerate(cases):
        plan.append((i, c, in_subprocess(c, c.module not in seen)))
        seen.add(c.module)
    with ThreadPoolExecutor(max(2, min(6, (os.cpu_count() or 2) * 2))) as pool:
        futures = [pool.submit(one, i, c, True) for i, c, sub in plan if sub]
        done = dict(one(i, c, False) for i, c, sub in plan if not sub)
        done.update(f.result() for f in futures)
    return done


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[Outcome, bool]]:
    """Every case run once: id → (outcome, whether its folder is unchanged)."""
    base = tmp_path_factory.mktemp("cli")

    def one(i: int, c: Case, sub: bool) -> tuple[str, tuple[Outcome, bool]]:
        cwd = _workdir(base / f"c{i}")
        before = _snapshot(cwd)
        outcome = (_run if sub else _run_in_process)(c, cwd)
        return c.id, (outcome, _snapshot(cwd) == before)

    return run_cases(CASES, one, _in_subprocess)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(c: Case, results) -> None:
    out, unchanged = results[c.id]
    lines = out.stderr.splitlines()
    assert out.code == 2, (out.how, out.stderr[-2000:])
    assert len(lines) == 1, (out.how, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and "usage:" not in out.stderr
    assert c.names.lower() in lines[0].lower(), lines[0]
    assert unchanged, "the command wrote into its working directory"


def test_every_entry_point_is_covered() -> None:
    """Each module with a ``main(argv)`` and a ``__main__`` guard appears in the table."""
    found = set()
    for folder in ("batch", "streaming", "lake", "queries", "dashboard", "fraudlake",
                   "simulator"):
        for path in (ROOT / folder).glob("*.py"):
            text = path.read_text()
            if "def main(argv" in text and '__name__ == "__main__"' in text:
                mod = f"{folder}.{path.stem}"
                found.add("queries" if mod == "queries.__main__" else mod)
    assert found <= {c.module for c in CASES}, found - {c.module for c in CASES}
    assert len(found) >= 13
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "two cases share an id (results are keyed by it)"


def test_a_good_small_run_still_works(tmp_path: Path) -> None:
    """The same harness on valid input: exit 0 and the output written (the checks above are not
    passing because the commands cannot run at all)."""
    cwd = _workdir(tmp_path / "w")
    out = _run(case("streaming.replay", *EV, "--flags-out", "out/f.parquet", "--quiet",
                    names=""), cwd)
    assert out.code == 0, out.stderr
    assert pl.read_parquet(cwd / "out" / "f.parquet").height == 40


def test_shared_checks(tmp_path: Path) -> None:
    import argparse

    from fraudlake.cli import (
        UsageError,
        check_output_dir,
        check_output_file,
        non_negative_float_arg,
        positive_float_arg,
    )

    for bad in ("nan", "inf", "-1", "0", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float_arg(bad)
    assert positive_float_arg("0.5") == 0.5 and non_negative_float_arg("0") == 0.0
    (tmp_path / "file").write_text("x")
    check_output_file(tmp_path / "new" / "deeper" / "out.csv", "--out")  # creatable: fine
    check_output_dir(tmp_path / "new" / "dir", "--dir")
    for fn, path in ((check_output_file, tmp_path), (check_output_file, tmp_path / "file" / "x"),
                     (check_output_dir, tmp_path / "file")):
        with pytest.raises(UsageError, match="--flag"):
            fn(path, "--flag")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the checks write nothing
