"""The README stays true: every ``python -m`` command, each of its flags and every environment
variable the code reads are in its tables (after sqlite-utils' ``tests/test_docs.py``).

Found by reading the code, not from a list: entry points are the package modules with a
``__main__`` guard (or a ``__main__.py``); their flags come from the parser they build (every
entry point uses ``fraudlake.cli.ArgumentParser``, captured here at ``parse_known_args``);
environment variables are the UPPER_CASE strings handed to ``os.environ.get``/``getenv``/
``env_default``/``seconds_from_env`` or named by a ``*_ENV`` constant.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import re
from pathlib import Path

import pytest

from fraudlake.cli import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fraudlake", "flagstore", "rules", "streaming", "batch", "lake", "queries", "dashboard")
README = (ROOT / "README.md").read_text()
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$")
ENV_CALLS = {"get", "getenv", "env_default", "seconds_from_env"}
#: Read by the code but set by the platform, not by a user of this project.
NOT_OURS = {"XDG_CACHE_HOME"}


def entry_points() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if path.name == "__main__.py":
                found.append(module.removesuffix(".__main__"))
            elif 'if __name__ == "__main__"' in path.read_text():
                found.append(module)
    return found


class _Captured(BaseException):  # not an Exception: fraudlake.cli.run must not catch it
    def __init__(self, parser: ArgumentParser) -> None:
        self.parser = parser


def parser_of(module: str, monkeypatch: pytest.MonkeyPatch) -> ArgumentParser:
    """The parser ``module``'s main builds, caught before it parses anything."""
    def capture(self: ArgumentParser, *_a: object, **_k: object) -> None:
        raise _Captured(self)

    monkeypatch.setattr(ArgumentParser, "parse_known_args", capture)
    mod = importlib.import_module(module if module != "queries" else "queries.__main__")
    main = getattr(mod, "cli", None) or mod.main
    with contextlib.suppress(SystemExit):
        try:
            main([])
        except _Captured as got:
            return got.parser
    raise AssertionError(f"{module}: main() built no fraudlake.cli.ArgumentParser")


def flags(parser: ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")}


def env_vars() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names |= _env_names(node)
    return names - NOT_OURS


def _env_names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ENV_CALLS and node.args:
            return _strings(node.args[0])
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in targets):
            return _strings(node.value) if node.value is not None else set()
    return set()


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and ENV_NAME.match(n.value)}


def test_every_entry_point_is_in_the_readme() -> None:
    missing = [m for m in entry_points() if f"python -m {m}" not in README]
    assert not missing, f"add these commands to the README's tables: {missing}"


def reference_row(module: str) -> str:
    """The command's row of the README's "Command reference" table."""
    start = f"| `python -m {module}` |"
    section = README.split("### Command reference", 1)[-1].split("\n## ", 1)[0]
    return next((line for line in section.splitlines() if line.startswith(start)), "")


@pytest.mark.parametrize("module", entry_points())
def test_every_flag_is_in_the_readme(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = parser_of(module, monkeypatch)
    row = reference_row(module)
    assert row, f"no row for python -m {module} in the README's command reference"
    missing = sorted(f for f in flags(parser) - {"--help"} if f"`{f}`" not in row)
    assert not missing, f"python -m {module}: flags missing from its README row: {missing}"


def test_every_environment_variable_is_in_the_readme() -> None:
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    missing = sorted(n for n in env_vars() if f"`{n}`" not in table)
    assert not missing, f"environment variables missing from the README table: {missing}"


def test_the_discovery_finds_what_it_should() -> None:
    """Guards the test itself: known commands, flags and variables are found."""
    assert {"streaming.consume", "lake.sync", "queries"} <= set(entry_points())
    assert {"MONGO_URI", "KAFKA_RETRY_SECONDS", "FRAUDLAKE_S3_URI"} <= env_vars()
