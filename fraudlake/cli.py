"""CLI conventions shared by every entry point.

Bad input: one line on stderr naming the problem, exit code 2, nothing written. The
environment failing (disk full, read-only target, a server away past its budget): one line,
exit code 1. ``run`` is the one top-level handler that turns every error into that line; the
traceback is shown only with ``--debug`` or ``FRAUDLAKE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from argparse import SUPPRESS
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fraudlake.errors import EnvironmentFailure, InputError
from fraudlake.logs import LEVELS
from fraudlake.logs import configure as configure_logging
from fraudlake.settings import DEBUG_ENV, LOG_LEVEL_ENV, debug_from_env, log_level_from_env

EXIT_USAGE = 2
EXIT_ENVIRONMENT = 1
_MAX_MESSAGE = 400


class UsageError(Exception):
    """Bad input from the command line or the files it names: exit 2 with a one-line message."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2 (no usage dump), and gives
    every entry point ``--log-level``: logging is configured once the arguments are parsed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser (same class) must not overwrite the value given
        # before the subcommand with its own default
        self.add_argument("--log-level", type=str.upper, choices=LEVELS, default=SUPPRESS,
                          help=f"log level (env {LOG_LEVEL_ENV}; default INFO)")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]  # typeshed overloads it on the namespace type; one signature suffices here
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        level = getattr(parsed, "log_level", None) or log_level_from_env()
        if level.upper() not in LEVELS:
            self.error(f"{LOG_LEVEL_ENV}={level!r}: not one of {', '.join(LEVELS)}")
        configure_logging(level)
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_COUNT = re.compile(r"^[0-9][0-9_]*(\.[0-9]+)?([eE][+]?[0-9]+)?$")


#: Largest count any flag accepts (counts are rows, events, seconds: far below this).
MAX_COUNT = 10**15


def count_arg(text: str) -> int:
    """Parse a non-negative whole count: 47e6, 47000000, 47_000_000, 4.7e7 (at most 1e15)."""
    t = text.strip()
    if not _COUNT.match(t):
        raise argparse.ArgumentTypeError(f"not a whole non-negative number: {text!r}")
    digits = t.replace("_", "")
    value = float(digits) if ("e" in t.lower() or "." in t) else int(digits)
    if not math.isfinite(value) or value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"out of range: {text!r} (at most {MAX_COUNT:.0e})")
    if value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def int_range_arg(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number within ``low..high`` (the range is in the message)."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}: {text!r}")
        return value
    return parse


def float_range_arg(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number within ``[low, high]`` (``(low, high]`` when open)."""
    def parse(text: str) -> float:
        value = _finite(text)
        if not ((value > low if low_open else value >= low) and value <= high):
            lo = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"must be within {lo}{low:g}, {high:g}]: {text!r}")
        return value
    return parse


#: The simulators' seeds: a whole number within 0..2^32-1.
MAX_SEED = 2**32 - 1


def seed_arg(text: str) -> int:
    """An argparse type for ``--seed``: a whole number within ``0..2^32-1``."""
    return int_range_arg(0, MAX_SEED)(text)


def positive_count_arg(text: str) -> int:
    value = count_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main``: UsageError → one line, exit 2; any other error → one line naming what
    failed, exit 1 (or 2 for unreadable input data); ``--debug`` (removed from the arguments)
    or ``FRAUDLAKE_DEBUG=1`` lets the traceback through instead."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or debug_enabled()
    args = [a for a in args if a != "--debug"]
    if not debug:
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's inf/NaN arithmetic notes
    try:
        return main(args)
    except (UsageError, InputError) as exc:
        _say(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            raise
        code, message = describe_failure(exc)
        _say(message)
        return code


def debug_enabled() -> bool:
    return debug_from_env()


def _say(message: str) -> None:
    print(f"{_prog()}: error: {one_line(message)}", file=sys.stderr)


def one_line(message: str) -> str:
    """The first non-blank line of ``message``, at most a few hundred characters."""
    first = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    return first if len(first) <= _MAX_MESSAGE else first[: _MAX_MESSAGE - 1] + "…"


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an error that escaped an entry point."""
    if isinstance(exc, EnvironmentFailure):
        return EXIT_ENVIRONMENT, str(exc)
    if isinstance(exc, OSError):
        return EXIT_ENVIRONMENT, os_error_text(exc)
    if isinstance(exc, MemoryError):
        return EXIT_ENVIRONMENT, "out of memory"
    if _OS_ERROR.search(str(exc)):  # an engine reporting a disk failure, e.g. "(os error 28)"
        return EXIT_ENVIRONMENT, one_line(str(exc))
    if _is_bad_data(exc):
        return EXIT_USAGE, f"cannot read the input data: {one_line(str(exc))}"
    return EXIT_ENVIRONMENT, (f"unexpected {type(exc).__name__}: {one_line(str(exc))} "
                              f"(rerun with --debug or {DEBUG_ENV}=1 for the traceback)")


_OS_ERROR = re.compile(r"\((?:os error|errno) \d+\)|\[errno \d+\]", re.IGNORECASE)


def os_error_text(exc: OSError) -> str:
    """``<path>: <reason>`` for an OS error, e.g. ``out/f.parquet: No space left on device``."""
    reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def _is_bad_data(exc: BaseException) -> bool:
    """Errors of the data engines that mean the input data is unreadable or invalid."""
    module = (type(exc).__module__ or "").lstrip("_")
    name = type(exc).__name__
    if module.startswith("duckdb"):
        return name not in ("OutOfMemoryException", "InterruptException", "IOException")
    if module.startswith(("polars", "pyarrow")):
        return name in ("ComputeError", "ArrowInvalid", "ArrowTypeError", "InvalidOperationError",
                        "SchemaError", "ShapeError", "ColumnNotFoundError")
    return False


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
        if os.statvfs(probe).f_flag & os.ST_RDONLY:  # the environment, not the argument
            raise EnvironmentFailure(f"{flag} {shown}: {probe}: Read-only file system")
        raise UsageError(f"{flag} {shown}: folder {probe} is not writable")


def check_disjoint(output: Path | str, inputs: Sequence[Path | str], flag: str) -> None:
    """Raise UsageError when ``output`` is an input, contains one or lies inside one (writing
    it would replace or mix with the data being read)."""
    out = _resolved(output)
    for given in inputs:
        text = str(given)
        if "://" in text:
            continue
        inp = _resolved(_glob_root(text))
        if out == inp or inp.is_relative_to(out) or out.is_relative_to(inp):
            raise UsageError(f"{flag} {output}: overlaps the input {given} "
                             "(refusing to overwrite or mix with the data being read)")


def check_not_precious(output: Path | str, flag: str) -> None:
    """Raise UsageError when replacing the folder ``output`` would delete the working folder,
    one of its ancestors, the home folder or this code's own checkout."""
    out = _resolved(output)
    code = Path(__file__).resolve().parents[1]
    for name, folder in (("the working folder", Path.cwd()), ("the home folder", Path.home()),
                         ("the fraudlake code", code)):
        if folder.resolve().is_relative_to(out):
            raise UsageError(f"{flag} {output}: would replace {name} {folder.resolve()} "
                             "(refusing to delete it)")


def _glob_root(text: str) -> str:
    """The part of a glob before its first wildcard component (the text itself if none)."""
    parts = Path(text).parts
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return str(Path(*parts[:i])) if i else "."
    return text


def _resolved(path: Path | str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()
