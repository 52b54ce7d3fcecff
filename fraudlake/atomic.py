"""Atomic file writes: a temp file beside the target, fsync, rename.

A crash leaves the old file or the new one, never half of one. Temp names are
``.<name>.<random>.tmp`` (``temp_path``; ``temp_target`` reads one back): hidden, so lake readers
(``lake.layout.is_data_file``), ``lake.sync`` and ``lake.compact`` skip them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_GLOB = ".*.tmp"  #: every temp file of an atomic write in a folder
_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]+\.tmp$")


def temp_path(path: Path) -> Path:
    """A fresh temp name beside ``path``: ``.<name>.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def temp_target(temp: Path) -> Path | None:
    """The file a temp file of ``replacing`` was going to become (None: not such a temp name)."""
    m = _TEMP.match(temp.name)
    return temp.with_name(m["name"]) if m else None


@contextmanager
def replacing(path: Path, *, sync_dir: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; on success fsync it and rename it over ``path``.

    On an error the temp file is removed and ``path`` is untouched. ``sync_dir`` also fsyncs
    the folder so the rename itself survives a power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if sync_dir:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
