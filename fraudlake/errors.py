"""The project's error bases: library code raises these, entry points map them to exit codes.

``InputError`` = fixable in the arguments or the input data (``fraudlake.cli.run`` prints its
one line and exits 2, exactly like a ``UsageError``). ``EnvironmentFailure`` = the environment
failed (a server away past its retry budget, a disk that refuses a write): ``run`` prints its
one line and exits 1.
"""

from __future__ import annotations


class EnvironmentFailure(Exception):
    """The environment failed (a server unreachable past its budget, a disk full): exit 1 with
    a one-line message."""


class InputError(ValueError):
    """Bad input (a path with no data, a file without the core columns, a bad setting); the
    message is one line naming what is wrong. Entry points exit 2 on it."""
