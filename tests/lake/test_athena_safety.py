"""lake.athena against hostile input and a full disk (issue 16's classes for the DDL it owns):
locations and names are validated, every value in the DDL is quoted so that it reads back as
exactly itself, and the output folder is written as a whole or not at all."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import polars as pl
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from fraudlake.cli import run
from lake import folder_write
from lake.athena import OWNED, main, render_all
from lake.catalog import TableSpec, athena_ddl, trino_ddl, trino_schema_ddl
from lake.sql_text import (
    SqlTextError,
    check_identifier,
    check_location,
    hive_string,
    trino_string,
)

HOSTILE_LOCATIONS = [
    ("s3://b-1/x'; DROP TABLE y; --", "character"),
    ("s3://bucket-x/p\nq", "character"),
    ("s3://bucket-x/p`q", "character"),
    ('s3://bucket-x/p"q', "character"),
    ("s3://bucket-x/p\\q", "character"),
    ("s3://bucket-x/p q", "character"),
    ("s3://bucket-x/p;q", "character"),
    ("s3://bucket-x/p/../q", "'..'"),
    ("s3://bucket-x//p", "empty"),
    ("s3://Bad_Bucket/p", "bucket"),
    ("s3://ab/p", "bucket"),
    ("s3://a..b/p", "'..'"),
    ("s3://a.-b/p", "'..'"),
    ("s3://192.168.1.10/p", "IP address"),
    ("s3://xn--bucket/p", "reserves"),
    ("s3://bucket--ol-s3/p", "reserves"),
    ("s3://bucket-x/" + "p" * 1000, "too long"),
    ("https://bucket-x/p", "not an s3:// URI"),
]


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = run(main, argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("location, problem", HOSTILE_LOCATIONS)
def test_hostile_location_is_one_line_exit_2_and_nothing_written(location, problem, tmp_path,
                                                                 capsys):
    out = tmp_path / "athena"
    code, err = _run(["--location", location, "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and problem in err[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("database", ["x; drop table y", "a`b", "Fraud", "1abc", "a" * 129,
                                      "fraud lake", "d\u00e9j\u00e0"])
def test_hostile_database_is_exit_2(database, tmp_path, capsys):
    code, err = _run(["--location", "s3://bucket-x/p", "--database", database,
                      "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and len(err) == 1 and "database" in err[0]
    assert not (tmp_path / "a").exists()


def test_good_locations_keep_their_prefix():
    assert check_location("s3://my.bucket-1/a/year=2024/x_y(1)!*/").prefix == \
        "a/year=2024/x_y(1)!*"
    assert check_location("s3://bucket-x").prefix == ""
    with pytest.raises(SqlTextError):
        check_identifier("a-b", "schema")


def _hive_location(ddl: str) -> str:
    create = sqlglot.parse_one(ddl, read="hive")
    props = create.args["properties"].expressions
    return next(p for p in props if isinstance(p, exp.LocationProperty)).this.name


def _trino_property(ddl: str, name: str) -> str:
    create = sqlglot.parse_one(ddl, read="trino")
    props = create.args["properties"].expressions
    return next(p for p in props if p.name == name).args["value"].name


@settings(max_examples=300, deadline=None, database=None)
@given(prefix=st.text(min_size=1, max_size=40))
def test_any_prefix_is_refused_or_reads_back_exactly(prefix):
    """Fuzz: a location is refused, or every DDL holds it as one literal equal to itself."""
    try:
        loc = check_location(f"s3://bucket-x/{prefix}")
    except SqlTextError:
        return
    spec = TableSpec("fraudlake", "history", {"a": pl.Int64()}, loc.uri("t") + "/")
    assert _hive_location(athena_ddl(spec)) == spec.location
    assert _trino_property(trino_ddl(spec), "external_location") == spec.location


@settings(max_examples=200, deadline=None, database=None)
@given(value=st.text(max_size=30))
def test_quoted_literals_read_back_as_themselves(value):
    """The quoting itself (used for local Trino locations too, where any folder name occurs)."""
    assert sqlglot.parse_one(f"SELECT {trino_string(value)}", read="trino") \
        .expressions[0].name == value
    assert sqlglot.parse_one(f"SELECT {hive_string(value)}", read="hive") \
        .expressions[0].name == value


def test_trino_ddl_quotes_a_local_location_with_quotes():
    spec = TableSpec("s", "t", {"a": pl.Int64()}, "local:///it's \"here\"/", partitioned=True)
    assert _trino_property(trino_ddl(spec), "external_location") == spec.location
    assert "= 'local:///it''s \"here\"/'" in trino_ddl(spec)
    assert trino_schema_ddl("s", "hive", "local:///a'b/").endswith("'local:///a''b/')")


# --- the output folder: whole or not at all --------------------------------------------------

@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "64k"):
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:100]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_full_disk_is_exit_1_and_leaves_nothing(tmp_path, capsys):
    with tmpfs(tmp_path / "small") as disk:
        out = disk / "athena"
        code, err = _run(["--location", "s3://bucket-x/p", "--out", str(out)], capsys)
        assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err
        assert list(disk.iterdir()) == []  # no output, no temp folder, no partial file


def test_full_disk_keeps_the_previous_output_whole(tmp_path, capsys):
    with tmpfs(tmp_path / "small") as disk:
        out = disk / "nested" / "athena"
        code, _ = _run(["--location", "s3://bucket-x/old", "--out", str(out),
                        "--no-queries"], capsys)
        assert code == 0
        before = _tree(out)
        assert len(before) == 6 and b"s3://bucket-x/old/" in before["ddl/10_history.sql"]
        code, err = _run(["--location", "s3://bucket-x/new", "--out", str(out)], capsys)
        assert code == 1 and "No space left on device" in err[0]
        assert _tree(out) == before
        assert [p.name for p in (disk / "nested").iterdir()] == ["athena"]


def test_rerun_replaces_the_whole_folder(tmp_path, capsys):
    out = tmp_path / "athena"
    assert _run(["--location", "s3://bucket-x/p", "--out", str(out)], capsys)[0] == 0
    assert (out / "queries").is_dir()
    assert _run(["--location", "s3://bucket-x/q", "--out", str(out), "--no-queries"],
                capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["ddl", "trino"]
    assert b"s3://bucket-x/q/" in (out / "ddl" / "10_history.sql").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["athena"]


def test_a_folder_with_other_files_is_refused_untouched(tmp_path, capsys):
    (tmp_path / "ddl").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _run(["--location", "s3://bucket-x/p", "--out", str(tmp_path)], capsys)
    assert code == 2 and len(err) == 1 and "notes.txt" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddl", "notes.txt"]


def test_a_failed_swap_restores_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "athena"
    files = render_all(check_location("s3://bucket-x/p"), "fraudlake", with_queries=False)
    folder_write.write_folder(out, files, OWNED)
    before = _tree(out)

    def broken(a: Path, b: Path) -> None:
        raise OSError(28, "No space left on device", str(b))

    monkeypatch.setattr(folder_write, "_exchange", broken)
    with pytest.raises(OSError):
        folder_write.write_folder(out, {"ddl/x.sql": "select 1"}, OWNED)
    assert _tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["athena"]


def test_two_rename_fallback_swaps(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("new")
    (b / "f").write_text("old")
    monkeypatch.setattr(folder_write.ctypes, "CDLL", lambda *_, **__: object())  # no renameat2
    folder_write._exchange(a, b)
    assert (b / "f").read_text() == "new" and (a / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_rules_choose_the_rendered_flags_and_the_single_rule_files(tmp_path, capsys):
    out = tmp_path / "athena"
    assert _run(["--location", "s3://bucket-x/p", "--out", str(out), "--rules",
                 "rules/example.toml", "--set", "big_amount.threshold=3000"], capsys)[0] == 0
    flags = (out / "queries" / "rules" / "flags.sql").read_text()
    assert "-- rule set example-1@" in flags and 'r1_threshold = "3000"' in flags
    assert sorted(p.name for p in (out / "queries" / "rules").iterdir()) == ["flags.sql"]
    assert (out / "queries" / "analytics" / "top_flagged_users.sql").exists()
    assert _run(["--location", "s3://bucket-x/p", "--out", str(out)], capsys)[0] == 0
    assert (out / "queries" / "rules" / "high_amount.sql").exists()  # the default set's ids
    code, err = _run(["--location", "s3://bucket-x/p", "--out", str(tmp_path / "b"),
                      "--set", "nope.threshold=1"], capsys)
    assert code == 2 and len(err) == 1 and not (tmp_path / "b").exists()
