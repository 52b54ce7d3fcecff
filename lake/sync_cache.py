"""A local MD5 cache for lake.sync, so a re-sync does not re-read unchanged files.

An entry is trusted only while the file's (size, mtime_ns, inode) are exactly what they were
when it was hashed. Writers in this project replace files by atomic rename (new inode), so a
rewritten file never matches a stale entry; only an in-place rewrite that restores both size
and nanosecond mtime could fool it (then pass ``--no-hash-cache``). The cache is an
optimisation: a missing, unreadable or unwritable cache file just means files get hashed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fraudlake.atomic import write_text
from fraudlake.settings import user_cache_dir

log = logging.getLogger(__name__)



def default_path() -> Path:
    return user_cache_dir() / "fraudlake" / "sync-md5.json"


@dataclass(frozen=True)
class Stamp:
    size: int
    mtime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


class Md5Cache:
    """Thread-safe map of absolute path -> (stamp, md5), loaded from and saved to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._old: dict[str, list] = self._load(path)
        self._seen: dict[str, list] = {}

    @staticmethod
    def _load(path: Path) -> dict[str, list]:
        try:
            data = json.loads(path.read_text())
            return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 4}
        except (OSError, ValueError, AttributeError):
            return {}

    def get(self, path: Path, stamp: Stamp) -> str | None:
        """The MD5 recorded for exactly this version of ``path``, if any (and keep it)."""
        key = str(path)
        entry = self._old.get(key)
        if entry is None or entry[:3] != [stamp.size, stamp.mtime_ns, stamp.ino]:
            return None
        with self._lock:
            self._seen[key] = entry
        return str(entry[3])

    def put(self, path: Path, stamp: Stamp, md5: str) -> None:
        with self._lock:
            self._seen[str(path)] = [stamp.size, stamp.mtime_ns, stamp.ino, md5]

    def save(self, roots: Sequence[Path]) -> None:
        """Write entries seen this run; drop old ones below ``roots`` (those files are gone)."""
        prefixes = tuple(str(r).rstrip("/") + "/" for r in roots)
        kept = {k: v for k, v in self._old.items() if not k.startswith(prefixes)}
        kept.update(self._seen)
        try:
            write_text(self.path, json.dumps(kept, separators=(",", ":")))
        except OSError as exc:
            log.warning("sync: hash cache not saved (%s: %s)", self.path, exc.strerror or exc)
