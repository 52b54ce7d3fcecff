"""A rule set's text files (the set itself, its list files) read as UTF-8, with one-line
reasons for what went wrong."""

from __future__ import annotations

from pathlib import Path


class TextFileError(ValueError):
    """A text file that cannot be read; the message is the reason (``no such rule set file``)."""


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; ``what`` names the kind of file in the reasons."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TextFileError(f"no such {what}") from None
    except IsADirectoryError:
        raise TextFileError(f"is a directory, not a {what}") from None
    except OSError as exc:
        raise TextFileError(f"cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TextFileError("not UTF-8 text") from None
