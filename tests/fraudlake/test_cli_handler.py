"""The one top-level handler (fraudlake.cli.run) and the shared validators."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import duckdb
import pytest

from fraudlake.cli import (
    UsageError,
    check_disjoint,
    count_arg,
    float_range_arg,
    int_range_arg,
    run,
)


def _raiser(exc: BaseException):
    def main(argv):
        raise exc
    return main


def _one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_disk_full_is_one_line_exit_1_naming_the_path(capsys) -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "out/flags.parquet")
    assert run(_raiser(exc), []) == 1
    line = _one_error_line(capsys)
    assert "out/flags.parquet: No space left on device" in line and "Traceback" not in line


def test_bad_data_from_the_engine_is_exit_2(capsys) -> None:
    con = duckdb.connect()

    def main(argv):
        con.execute("select cast('x' as integer)").fetchall()
        return 0
    assert run(main, []) == 2
    assert "cannot read the input data" in _one_error_line(capsys)


def test_unexpected_error_is_one_line_with_a_hint_and_debug_shows_the_traceback(
        capsys, monkeypatch) -> None:
    monkeypatch.delenv("FRAUDLAKE_DEBUG", raising=False)
    assert run(_raiser(KeyError("boom")), []) == 1
    line = _one_error_line(capsys)
    assert "unexpected KeyError" in line and "--debug" in line
    with pytest.raises(KeyError):
        run(_raiser(KeyError("boom")), ["--debug"])
    monkeypatch.setenv("FRAUDLAKE_DEBUG", "1")
    with pytest.raises(KeyError):
        run(_raiser(KeyError("boom")), [])


def test_debug_flag_is_removed_before_parsing() -> None:
    seen = []
    assert run(lambda argv: seen.append(argv) or 0, ["--x", "--debug"]) == 0
    assert seen == [["--x"]]


def test_usage_error_multiline_becomes_one_line(capsys) -> None:
    assert run(_raiser(UsageError("first\nsecond")), []) == 2
    assert _one_error_line(capsys).endswith("first")


@pytest.mark.parametrize("text", ["1e400", "inf", "nan", "-1", "1.5", "1e16", "x", ""])
def test_count_arg_refuses_out_of_range_and_junk(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        count_arg(text)


def test_count_arg_accepts() -> None:
    assert count_arg("47e6") == 47_000_000 and count_arg("1_000") == 1000


def test_range_args_name_the_range() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"0\.\.10"):
        int_range_arg(0, 10)("11")
    with pytest.raises(argparse.ArgumentTypeError, match=r"\(0, 5\]"):
        float_range_arg(0, 5, low_open=True)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        float_range_arg(0, 5)("inf")
    assert float_range_arg(0, 5)("2.5") == 2.5


def test_output_overlapping_an_input_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "in"
    (data / "year=2024").mkdir(parents=True)
    f = data / "year=2024" / "a.parquet"
    f.write_bytes(b"x")
    for out in (f, data, data / "year=2024" / "flags.parquet", tmp_path):
        with pytest.raises(UsageError, match="overlaps the input"):
            check_disjoint(out, [str(data)], "--flags-out")
    check_disjoint(tmp_path / "flags.parquet", [str(data)], "--flags-out")
    check_disjoint(tmp_path / "x", ["s3://b/p"], "--out")
