"""The project's error bases: library code raises these, entry points map them to exit codes.

``InputError`` = fixable in the arguments or the input data (``fraudlake.cli.run`` prints its
one line and exits 2, exactly like a ``UsageError``). Environment failures (a server away past
its budget, a disk that refuses a write) are other exceptions, handled by each entry point.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (a path with no data, a file without the core columns, a bad setting); the
    message is one line naming what is wrong. Entry points exit 2 on it."""
