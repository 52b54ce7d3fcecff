"""Atomic file writes: a temp file beside the target, fsync, rename.

A crash leaves the old file or the new one, never half of one. Temp names are
``.<name>.<random>.tmp``: hidden, and skipped by lake readers, ``lake.sync`` and ``lake.compact``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, *, sync_dir: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; on success fsync it and rename it over ``path``.

    On an error the temp file is removed and ``path`` is untouched. ``sync_dir`` also fsyncs
    the folder so the rename itself survives a power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
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
