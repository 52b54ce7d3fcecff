"""Write a whole output folder atomically: a temp folder beside it, then one rename.

``write_folder(out, files, owned)`` writes every file (relative path -> text) into
``.<out name>.<hex>.tmp`` next to ``out``, fsyncs them, and only then puts the folder in place:
a rename when ``out`` does not exist, else an atomic exchange (Linux ``renameat2``
``RENAME_EXCHANGE``; two renames where the file system lacks it) after which the old folder is
removed. A failure at any point (disk full, read-only, a crash) leaves the old folder as it was
and no temp folder behind; the ``OSError`` propagates (exit 1 at the entry point).

An existing ``out`` is replaced only when it is empty or holds nothing but entries named in
``owned`` (what an earlier run wrote): ``FolderInUse`` otherwise, before anything is written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class FolderInUse(ValueError):
    """``out`` holds entries this writer does not own; the message names one."""


def check_replaceable(out: Path, owned: Collection[str]) -> None:
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in owned)
    if foreign:
        raise FolderInUse(f"{out} holds {foreign[0]!r}, which this tool did not write; choose "
                          "a new or empty folder")


def write_folder(out: Path, files: Mapping[str, str], owned: Collection[str]) -> list[Path]:
    """Replace ``out`` with exactly ``files`` (see the module docstring); the final paths."""
    check_replaceable(out, owned)
    created = _make_parents(out.parent)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.mkdir()
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        if out.exists():
            _exchange(tmp, out)  # tmp now holds the old folder
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            _rmdir_quietly(folder)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return [out / rel for rel in files]


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically where the kernel can, else by two renames."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is not None:
        if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(b))
    aside = b.with_name(f".{b.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    created = []
    try:
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
    except BaseException:
        for p in reversed(created):
            _rmdir_quietly(p)
        raise
    return created


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
