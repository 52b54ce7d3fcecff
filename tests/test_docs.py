"""The README stays true (after sqlite-utils' ``tests/test_docs.py``): its command reference is
what the commands' parsers say, every flag of every command is in it, and every environment
variable the code reads is in the variables table — read from the code, not from a list.

Environment variables are read in ``fraudlake/settings.py`` only (a test below holds that), so
the variables are the UPPER_CASE names that module spells.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from scripts import command_reference as ref

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SETTINGS = ROOT / "fraudlake" / "settings.py"
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
#: Read by the code but set by the platform, not by a user of this project (``PATH``: extended
#: for a child process).
NOT_OURS = {"XDG_CACHE_HOME", "PATH"}


def readme_reference() -> str:
    start, end = README.find(ref.BEGIN), README.find(ref.END)
    assert start >= 0 and end > start, "README.md has no generated command reference"
    return README[start:end + len(ref.END)]


def test_command_reference_is_what_the_parsers_say() -> None:
    assert readme_reference() == ref.table(), (
        "README's command reference is stale: run .venv/bin/python -m scripts.command_reference "
        "--write")


@pytest.mark.parametrize("module", ref.entry_points())
def test_every_flag_of_every_command_is_in_the_readme(module: str) -> None:
    parser = ref.parser_of(module)
    if parser is None:
        assert f"`python -m {module}`" in readme_reference()
        return
    parsers = [("", parser), *((f" {name}", sub) for name, _h, sub in ref.subcommands(parser))]
    for suffix, p in parsers:
        row = next((line for line in readme_reference().splitlines()
                    if line.startswith(f"| `python -m {module}{suffix}` |")), "")
        assert row, f"no row for python -m {module}{suffix} in the README's command reference"
        missing = [f for f in ref.flags(p) if f"`{f}`" not in row]
        assert not missing, f"python -m {module}{suffix}: flags missing from its row: {missing}"
    common = {s for a in parser._actions for s in a.option_strings} & set(ref.COMMON_FLAGS)
    assert common <= {f.strip("`") for f in re.findall(r"`--[a-z-]+`", readme_reference())}


def env_vars() -> set[str]:
    return {n.value for n in ast.walk(ast.parse(SETTINGS.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and ENV_NAME.match(n.value)} - NOT_OURS


def test_every_environment_variable_is_in_the_readme() -> None:
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    missing = sorted(n for n in env_vars() if f"`{n}`" not in table)
    assert not missing, f"environment variables missing from the README table: {missing}"


def test_environment_is_read_in_fraudlake_settings_only() -> None:
    """No module but ``fraudlake/settings.py`` reads a variable (``os.environ[...]``,
    ``os.environ.get``, ``os.getenv``); copying the whole environment for a child is fine."""
    readers = []
    for package in ref.PACKAGES + ("notebooks", "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if _reads_env(node):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not readers, f"read the environment through fraudlake.settings: {readers}"


def _reads_env(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = ast.unparse(node.func.value)
        name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else ""
        return ((owner == "os.environ" and node.func.attr == "get") or (
            owner == "os" and node.func.attr == "getenv")) and name not in NOT_OURS
    return (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ")


def test_the_discovery_finds_what_it_should() -> None:
    """Guards the test itself: known commands, flags and variables are found."""
    assert {"streaming.consume", "lake.sync", "queries", "streaming.rules"} <= set(
        ref.entry_points())
    assert "--group-instance-id" in ref.flags(ref.parser_of("streaming.consume"))
    assert {"MONGO_URI", "KAFKA_RETRY_SECONDS", "FRAUDLAKE_S3_URI", "DASHBOARD_SYNC",
            "FRAUDLAKE_KAFKA_PORT", "FRAUDLAKE_LOG_LEVEL"} <= env_vars()
    assert _reads_env(ast.parse('os.environ.get("X")').body[0].value)
    assert not _reads_env(ast.parse('{**os.environ, "A": "1"}').body[0].value)
