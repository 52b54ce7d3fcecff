"""CLI conventions shared by every entry point.

Bad input: one line on stderr naming the problem, exit code 2, nothing written.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, overload

from fraudlake.errors import InputError
from fraudlake.logs import LEVELS, LOG_LEVEL_ENV
from fraudlake.logs import configure as configure_logging

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line or the files it names: exit 2 with a one-line message."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2 (no usage dump), and gives
    every entry point ``--log-level``: logging is configured once the arguments are parsed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--log-level", type=str.upper, choices=LEVELS,
                          default=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
                          help=f"log level (env {LOG_LEVEL_ENV}; default INFO)")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]  # typeshed overloads it on the namespace type; one signature suffices here
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        configure_logging(parsed.log_level)
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


@overload
def env_default(name: str) -> str | None: ...
@overload
def env_default(name: str, default: str) -> str: ...
def env_default(name: str, default: str | None = None) -> str | None:
    """Default for a flag that falls back to an environment variable."""
    return os.environ.get(name, default)


_COUNT = re.compile(r"^[0-9][0-9_]*(\.[0-9]+)?([eE][+]?[0-9]+)?$")


def count_arg(text: str) -> int:
    """Parse a non-negative whole count: 47e6, 47000000, 47_000_000, 4.7e7."""
    t = text.strip()
    if not _COUNT.match(t):
        raise argparse.ArgumentTypeError(f"not a whole non-negative number: {text!r}")
    value = float(t.replace("_", "")) if ("e" in t.lower() or "." in t) else int(t.replace("_", ""))
    if value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def positive_count_arg(text: str) -> int:
    value = count_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` turning UsageError (and the library's ``InputError``) into a one-line error
    and exit code 2."""
    try:
        return main(argv)
    except (UsageError, InputError) as exc:
        print(f"{_prog()}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _prog() -> str:
    """``python -m batch.backtest`` for module runs, else the script name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fraudlake"


def positive_float_arg(text: str) -> float:
    """A finite number > 0 (rejects nan, inf, 0, negatives)."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def non_negative_float_arg(text: str) -> float:
    """A finite number >= 0 (rejects nan, inf, negatives)."""
    value = _finite(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def check_output_file(path: Path | str, flag: str) -> None:
    """Raise UsageError unless ``path`` can be written as a file: it is not a folder and its
    folder exists or can be created (checked before any work, so nothing is half-written)."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a folder, expected a file path")
    _check_creatable(p.parent, flag, p)


def check_output_dir(path: Path | str, flag: str) -> None:
    """Raise UsageError unless ``path`` is a folder or can be created as one."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: exists and is not a folder")
    _check_creatable(p, flag, p)


def _check_creatable(folder: Path, flag: str, shown: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a writable folder."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():  # a dangling link
            raise UsageError(f"{flag} {shown}: {probe} is a broken symbolic link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{flag} {shown}: cannot create a folder under {probe}, a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {shown}: folder {probe} is not writable")
