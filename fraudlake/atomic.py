"""Atomic file writes: a temp file beside the target, fsync, rename.

A crash leaves the old file or the new one, never half of one. Temp names are
``.<name>.<random>.tmp`` (``temp_path``; ``temp_target`` reads one back): hidden, so lake readers
(``lake.layout.is_data_file``), ``lake.sync`` and ``lake.compact`` skip them.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
import sqlite3
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
    tmp = temp_path(path)
    try:
        with naming(path):
            path.parent.mkdir(parents=True, exist_ok=True)
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


_ERRNO = re.compile(r"(?:os error|errno)\s*(\d+)", re.IGNORECASE)
_SQLITE = {"database or disk is full": errno_codes.ENOSPC,
           "attempt to write a readonly database": errno_codes.EROFS}


def os_error(exc: BaseException, path: Path | str) -> OSError | None:
    """``exc`` as an ``OSError`` naming ``path`` when it is a disk/OS failure reported without
    a path (Arrow's ``[errno 28]``, Polars' ``(os error 28)``, SQLite's "disk is full");
    None when it is not an OS failure."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return exc
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None and isinstance(exc, sqlite3.OperationalError):
        code = next((c for text, c in _SQLITE.items() if text in str(exc)), None)
    if code is None:
        m = _ERRNO.search(str(exc))
        code = int(m[1]) if m else None
    if code is None:
        code = _disk_state(path)  # a writer that hides the errno ("Invalid thrift: transport")
    if code is None:
        return exc if isinstance(exc, OSError) else None
    return OSError(code, os.strerror(code), str(path))


#: A write failing with less free space than this on its disk is taken as "disk full".
_NEARLY_FULL = 1 << 20


def _disk_state(path: Path | str) -> int | None:
    """ENOSPC / EROFS when the disk of ``path`` is (nearly) full or read-only, else None."""
    probe = Path(path).parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return errno_codes.EROFS
    return errno_codes.ENOSPC if st.f_bavail * st.f_frsize < _NEARLY_FULL else None


@contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Re-raise a disk failure inside the block as an ``OSError`` naming ``path`` (so the
    one-line message says which file could not be written)."""
    try:
        yield
    except Exception as exc:
        err = os_error(exc, path)
        if err is None or err is exc:
            raise
        raise err from exc


def new_folders(*paths: Path) -> list[Path]:
    """The folders among ``paths`` and their ancestors that do not exist yet, deepest first
    (what a failed run should remove again, with ``remove_empty``)."""
    out: list[Path] = []
    for path in paths:
        p = Path(os.path.abspath(path))
        while not p.exists() and p.parent != p:
            if p not in out:
                out.append(p)
            p = p.parent
    return sorted(out, key=lambda f: len(f.parts), reverse=True)


def remove_empty(folders: list[Path], leftovers: tuple[str, ...] = ()) -> None:
    """Remove each folder (deepest first) if it holds nothing but ``leftovers`` names."""
    for folder in folders:
        for name in leftovers:
            (folder / name).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass
