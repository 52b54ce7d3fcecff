"""Bad input by class, over every entry point (issue 16), beside the case table of
``test_cli_bad_input.py`` (which also holds the output-overlaps-input cases):

- numbers: every typed flag of every entry point's parser, fuzzed with nan, inf, -inf, 1e400,
  -1, text and the empty string: each is refused at parse time (argparse: one line, exit 2);
- bad data that passes the schema check (``_bad_data``: scrambled pages, a decimal(38,2) amount
  beyond decimal(18,2), a uint64 user_id above 2^63, years 1 and 9999, lat = inf, a truncated
  file) through backtest (both engines), replay, queries, dashboard.baseline, simulator.audit
  and lake.compact: the decision per case below, never a traceback, a hang or a NumPy warning,
  and nothing written on a refusal (the first case of each command and the ones that could hang
  as real processes, the others in-process through ``fraudlake.cli.run``);
- servers away: produce, consume, rules against a closed Kafka port and export against a closed
  MongoDB port: one line, exit 1, within the retry budget; a client setting librdkafka refuses:
  one line, exit 2; nothing written either way (no flag store, no lake).

Subprocess cases run on a small thread pool; the parser fuzz runs in-process.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
from tests.reliability import _bad_data  # noqa: E402
from tests.reliability.test_cli_bad_input import (  # noqa: E402
    SERVICE_ENV,
    _run_in_process,
    _snapshot,
    _workdir,
    case,
    run_cases,
)


def _entry_points() -> tuple[str, ...]:
    """Every module with a ``main(argv)`` and a ``__main__`` guard (as test_cli_bad_input)."""
    found = []
    for folder in ("batch", "streaming", "lake", "queries", "dashboard", "fraudlake",
                   "simulator"):
        for path in sorted((ROOT / folder).glob("*.py")):
            text = path.read_text()
            if "def main(argv" in text and '__name__ == "__main__"' in text:
                found.append(f"{folder}.{path.stem}")
    return tuple(found)


ENTRY_POINTS = _entry_points()
BAD_NUMBERS = ("nan", "inf", "-inf", "1e400", "-1", "many", "", "0x10")
#: A log record on stderr (``fraudlake.logs.FORMAT``): progress, not the one error line.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (DEBUG|INFO) \S+: ")


def message_lines(stderr: str) -> list[str]:
    """stderr without the DEBUG/INFO log records: the lines a failure may print (one)."""
    return [line for line in stderr.strip().splitlines() if not _LOG_LINE.match(line)]


# --- numbers: every typed flag ----------------------------------------------------------------

class _Captured(BaseException):
    """Raised in place of parsing, carrying the parser (BaseException: ``run`` lets it by)."""


def _parser(module: str) -> argparse.ArgumentParser:
    """The entry point's parser, as its ``main`` builds it."""
    mod = importlib.import_module(module)
    real = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign]
    try:
        getattr(mod, "_main", mod.main)([])
    except _Captured as got:
        return got.args[0]
    finally:
        argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
    raise AssertionError(f"{module}: main never parsed its arguments")


def _typed_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _typed_actions(sub)
        elif action.type is not None and action.type not in (str, Path) and not action.choices:
            yield action


NUMERIC_FLAGS = [(m, a) for m in ENTRY_POINTS for a in _typed_actions(_parser(m))]


def test_the_fuzz_sees_the_numeric_flags() -> None:
    names = {f"{m} {a.option_strings[0]}" for m, a in NUMERIC_FLAGS}
    assert {"batch.generate_history --rows", "streaming.demo --seed", "lake.compact --min-age",
            "lake.export --lookback-seconds", "streaming.produce --rate"} <= names
    assert len(NUMERIC_FLAGS) >= 30


@pytest.mark.parametrize("module,action", NUMERIC_FLAGS,
                         ids=[f"{m} {a.option_strings[0]}" for m, a in NUMERIC_FLAGS])
def test_every_numeric_flag_refuses_bad_numbers(module: str, action: argparse.Action) -> None:
    """Non-finite, overflowing, negative or non-numbers: the flag's type refuses each (argparse
    then prints one line and exits 2 before anything runs); a raw ``float`` would take nan."""
    assert action.type not in (float, int), f"{module} {action.option_strings}: unbounded type"
    for text in BAD_NUMBERS:
        with pytest.raises((argparse.ArgumentTypeError, ValueError, TypeError)):
            action.type(text)


# --- bad data that passes the schema check ----------------------------------------------------

#: kind → exit code of the commands that decide or aggregate a whole input: 2 = refused with
#: one line (the data cannot be read exactly), 0 = processed.
DECISION = {"scrambled": 2, "wide_decimal": 2, "huge_user_id": 2, "truncated": 2,
            "extreme_years": 0, "infinite_lat": 0}
#: The aggregate-only readers read a wide decimal / an unsigned id as they are (no decision
#: depends on the exact type), so they process what the deciders refuse.
AGGREGATES_READ = {"wide_decimal", "huge_user_id"}


@dataclass(frozen=True)
class DataCase:
    module: str
    argv: tuple[str, ...]  # "{D}" = the bad input folder (hive), "{O}" = an output folder
    kind: str

    @property
    def id(self) -> str:
        return f"{self.module} {' '.join(self.argv[:3])} [{self.kind}]"

    def expected(self) -> int:
        if self.module == "lake.compact":
            return 0  # the bad file is left alone and counted
        if self.module in ("dashboard.baseline", "simulator.audit") and \
                self.kind in AGGREGATES_READ:
            if not (self.module == "dashboard.baseline" and self.kind == "huge_user_id"):
                return 0
        return DECISION[self.kind]


def _data_cases() -> list[DataCase]:
    out = []
    for kind in _bad_data.FILES:
        out += [DataCase("batch.backtest", ("--input", "{D}", "--quiet"), kind),
                DataCase("batch.backtest", ("--input", "{D}", "--quiet", "--engine", "sql",
                                            "--flags-out", "{O}/f.parquet"), kind),
                DataCase("streaming.replay", ("--input", "{D}", "--quiet", "--flags-out",
                                              "{O}/f.parquet"), kind),
                DataCase("queries", ("flags", "--input", "{D}", "--format", "csv", "--out",
                                     "{O}/q.csv"), kind),
                DataCase("dashboard.baseline", ("--history-dir", "{D}", "--cache-dir", "{O}/c"),
                         kind),
                DataCase("simulator.audit", ("{D}",), kind),
                DataCase("lake.compact", ("--lake", "{L}", "--min-files", "2"), kind)]
    return out


DATA_CASES = _data_cases()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture(scope="module")
def data_outcomes(tmp_path_factory) -> dict[str, tuple[int | str, str, bool, float]]:
    base = tmp_path_factory.mktemp("bad-data")

    def one(i: int, c: DataCase, sub: bool):
        folder = base / f"c{i}"
        data = folder / "in" / "year=2024" / "month=01"
        data.mkdir(parents=True)
        _bad_data.FILES[c.kind](data / "part-0.parquet")
        _bad_data.lake_with(folder / "lake", _bad_data.FILES[c.kind], files=5)
        (folder / "out").mkdir()
        before = _snapshot(folder / "out")
        argv = [a.replace("{D}", str(folder / "in")).replace("{O}", str(folder / "out"))
                .replace("{L}", str(folder / "lake")) for a in c.argv]
        t0 = time.monotonic()
        if not sub:  # main(argv) through fraudlake.cli.run, as python -m does
            out = _run_in_process(case(c.module, *argv, names=""), folder)
            code, err = out.code, out.stderr
        else:
            try:
                proc = subprocess.run([sys.executable, "-m", c.module, *argv], cwd=folder,
                                      env=_env(), capture_output=True, text=True, timeout=120)
                code, err = proc.returncode, proc.stderr
            except subprocess.TimeoutExpired:
                code, err = "timeout", ""
        return c.id, (code, err, _snapshot(folder / "out") == before, time.monotonic() - t0)

    # a real process for the first case of each command and for every case that could hang
    # (years 1 and 9999); the others in-process, one by one, while those run on a thread pool
    return run_cases(DATA_CASES, one, lambda c, first: first or c.kind == "extreme_years")


@pytest.mark.parametrize("c", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data_is_refused_or_processed(c: DataCase, data_outcomes) -> None:
    code, err, unchanged, _ = data_outcomes[c.id]
    lines = message_lines(err)
    assert code == c.expected(), err[-2000:]
    assert "Traceback" not in err and "Warning" not in err, err[-2000:]
    assert len(lines) <= 1, err[-2000:]  # the error line, or a command's own summary line
    if code == 2:
        assert "error:" in lines[0] and unchanged, (lines, "wrote something")
    if c.module == "lake.compact" and c.kind in ("scrambled", "truncated", "wide_decimal",
                                                 "huge_user_id"):
        assert "left 1 unreadable file(s) alone" in err, err


# --- servers away -----------------------------------------------------------------------------

CLOSED = "127.0.0.1:1"
SERVER_CASES = [
    ("streaming.produce", ("--bootstrap", CLOSED, "--count", "10"), {}, 1, "cannot reach Kafka"),
    ("streaming.consume", ("--bootstrap", CLOSED, "--timeout", "5", "--lake", "out/lake"), {},
     1, "cannot reach Kafka"),
    ("streaming.rules", ("--bootstrap", CLOSED, "--timeout", "3", "list"), {}, 1,
     "cannot use Kafka"),
    ("streaming.produce", ("--bootstrap", CLOSED, "--count", "10"),
     {"KAFKA_SECURITY_PROTOCOL": "bogus"}, 2, "security.protocol"),
    ("streaming.consume", ("--bootstrap", CLOSED, "--lake", "out/lake"),
     {"KAFKA_SECURITY_PROTOCOL": "bogus"}, 2, "security.protocol"),
    ("streaming.rules", ("--bootstrap", CLOSED, "list"), {"KAFKA_SECURITY_PROTOCOL": "bogus"},
     2, "security.protocol"),
    ("streaming.consume", ("--bootstrap", CLOSED, "--lake", "out/lake"),
     {"KAFKA_RETRY_SECONDS": "soon"}, 2, "KAFKA_RETRY_SECONDS"),
    ("streaming.consume", ("--bootstrap", CLOSED, "--lake", "out/lake"),
     {"MONGO_URI": "mongodb://127.0.0.1:99999/"}, 2, "99999"),
    ("lake.export", ("--source", "mongo", "--filtered-dir", "out/f", "--exported-dir", "out/e"),
     {"MONGO_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=2000"}, 1,
     "cannot read flags from MongoDB"),
    ("lake.export", ("--source", "mongo", "--filtered-dir", "out/f", "--exported-dir", "out/e"),
     {"MONGO_URI": "mongodb://127.0.0.1:99999/"}, 2, "99999"),
]
BUDGET_S = 2  # KAFKA_RETRY_SECONDS for the unreachable cases: the probe waits this long


@pytest.fixture(scope="module")
def server_outcomes(tmp_path_factory):
    base = tmp_path_factory.mktemp("servers")

    def one(i: int, case):
        module, argv, env, _, _ = case
        cwd = _workdir(base / f"s{i}")
        before = _snapshot(cwd)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd,
                              env=_env(**{"KAFKA_RETRY_SECONDS": str(BUDGET_S), **env}),
                              capture_output=True, text=True, timeout=120)
        return i, (proc.returncode, proc.stderr, _snapshot(cwd) == before,
                   time.monotonic() - t0)

    with ThreadPoolExecutor(max(2, min(6, (os.cpu_count() or 2) * 2))) as pool:
        return dict(pool.map(lambda a: one(*a), enumerate(SERVER_CASES)))


@pytest.mark.parametrize("i", range(len(SERVER_CASES)),
                         ids=[f"{m} {' '.join(e) or 'unreachable'}"
                              for m, _, e, _, _ in SERVER_CASES])
def test_servers_away_one_line(i: int, server_outcomes) -> None:
    _, _, _, want, fragment = SERVER_CASES[i]
    code, err, unchanged, seconds = server_outcomes[i]
    lines = message_lines(err)
    assert code == want, err[-3000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert fragment in lines[0], lines[0]
    assert unchanged, "wrote something (a flag store, a lake folder, a lock file)"
    assert seconds < BUDGET_S + 60, seconds  # the budget plus interpreter start under load
