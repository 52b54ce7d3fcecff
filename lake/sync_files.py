"""Per-file steps of lake.sync: find local files, list remote objects, compare, upload one.

Comparison: one listing per source gives each object's size and ETag. For a single-part upload
the ETag IS the MD5 of the content, so the common case needs no extra request; when it is not
(multipart upload, SSE-KMS, another tool) the MD5 we store in the object's user metadata
(``x-amz-meta-fraudlake-md5``) is read with one HEAD. Files up to ``MEMORY_UPLOAD_LIMIT`` are
read once, hashed and uploaded from those same bytes (one PUT, so ETag = MD5 and the stored
checksum always matches the content); larger ones are hashed from disk, uploaded in parts, and
deleted again if they changed meanwhile.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import s3fs

from lake.layout import is_hidden, remote_name
from lake.s3 import S3Location
from lake.sync_cache import Md5Cache, Stamp

MD5_META = "fraudlake-md5"
MEMORY_UPLOAD_LIMIT = 64 * 2**20
#: Other tools' names for unfinished files (this project's own are hidden: ``lake.layout``).
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".inprogress", ".crdownload", ".swp")


@dataclass(frozen=True)
class LocalFile:
    path: Path
    remote: str  # s3fs path: bucket/key
    size: int
    mtime: float
    stamp: Stamp  # (size, mtime_ns, inode) at scan time: the hash cache key


@dataclass(frozen=True)
class RemoteObject:
    size: int
    etag: str  # without quotes


@dataclass(frozen=True)
class Outcome:
    file: LocalFile
    status: str  # uploaded | unchanged | would_upload | gone | failed
    reason: str = ""  # new | changed | the error
    hashed: bool = False  # the file was read and hashed (not answered by the cache)



@dataclass(frozen=True)
class Scan:
    ready: tuple[LocalFile, ...] = ()
    settling: tuple[LocalFile, ...] = ()
    ignored: tuple[str, ...] = field(default=())  # remote paths of temp files


def is_temp_name(rel: PurePosixPath) -> bool:
    """A name a writer uses while a file is not finished (or hidden bookkeeping)."""
    if any(is_hidden(part) for part in rel.parts):
        return True
    name = rel.name.lower()
    return name.endswith(TEMP_SUFFIXES) or ".tmp" in name or name.endswith("~")


def scan_source(root: Path, dest: S3Location, now: float, settle_seconds: float) -> Scan:
    """Classify every file below ``root`` as ready, settling (too recent) or temp."""
    ready: list[LocalFile] = []
    settling: list[LocalFile] = []
    ignored: list[str] = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            rel = PurePosixPath(path.relative_to(root).as_posix())
            remote = dest.path(remote_name(root), str(rel))
            if is_temp_name(rel):
                ignored.append(remote)
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # renamed or compacted away while we walked
                continue
            f = LocalFile(path, remote, st.st_size, st.st_mtime, Stamp.of(st))
            (settling if now - st.st_mtime < settle_seconds else ready).append(f)
    return Scan(tuple(sorted(ready, key=lambda f: f.remote)), tuple(settling), tuple(ignored))


def list_remote(fs: s3fs.S3FileSystem, root: str) -> dict[str, RemoteObject]:
    """Every object below ``root`` (an s3fs path) with its size and ETag, in one listing."""
    fs.invalidate_cache(root)
    found = fs.find(root, detail=True)
    return {
        name: RemoteObject(int(info.get("size", 0)), str(info.get("ETag", "")).strip('"'))
        for name, info in found.items() if info.get("type") != "directory"
    }


def needs_upload(md5: str, remote: RemoteObject | None,
                 stored_md5: Callable[[], str | None]) -> bool:
    """Upload unless the remote object provably holds these bytes (size checked by the caller)."""
    if remote is None:
        return True
    if remote.etag == md5:
        return False
    return stored_md5() != md5


def sync_file(fs: s3fs.S3FileSystem, f: LocalFile, remote: RemoteObject | None,
              dry_run: bool, cache: Md5Cache | None = None) -> Outcome:
    """Hash one file (or trust the cache), compare it with its remote object, upload if needed."""
    reason = "new" if remote is None else "changed"
    if dry_run and remote is None:
        return Outcome(f, "would_upload", reason)
    try:
        known = cache.get(f.path, f.stamp) if cache is not None and remote is not None else None
        if known and remote is not None and remote.size == f.size and not needs_upload(
                known, remote, lambda: _stored_md5(fs, f.remote)):
            return Outcome(f, "unchanged")
        st = f.path.stat()  # before hashing: a large file replaced meanwhile is detected
        data = f.path.read_bytes() if st.st_size <= MEMORY_UPLOAD_LIMIT else None
        md5 = hashlib.md5(data).hexdigest() if data is not None else _md5_of(f.path)  # noqa: S324
        size = len(data) if data is not None else st.st_size
        if cache is not None:
            cache.put(f.path, Stamp.of(st), md5)
        if remote is not None and remote.size == size and not needs_upload(
                md5, remote, lambda: _stored_md5(fs, f.remote)):
            return Outcome(f, "unchanged", hashed=True)
        if dry_run:
            return Outcome(f, "would_upload", reason, hashed=True)
        meta = {"Metadata": {MD5_META: md5}}
        if data is not None:
            fs.pipe_file(f.remote, data, **meta)
        else:
            _put_large(fs, f, st, meta)
        return Outcome(f, "uploaded", reason, hashed=True)
    except FileNotFoundError:
        return Outcome(f, "gone")  # deleted locally (e.g. compacted) after the scan
    except Exception as exc:  # one bad file must not stop the others; reported at the end
        return Outcome(f, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])


def _md5_of(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - a checksum, not security
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 2**20):
            h.update(chunk)
    return h.hexdigest()


def _stored_md5(fs: s3fs.S3FileSystem, remote: str) -> str | None:
    return fs.metadata(remote, refresh=True).get(MD5_META)


def _put_large(fs: s3fs.S3FileSystem, f: LocalFile, before: os.stat_result, meta: dict) -> None:
    """Multipart upload from disk; dropped again if the file changed since it was hashed."""
    fs.put_file(str(f.path), f.remote, **meta)
    after = f.path.stat()
    if (before.st_size, before.st_mtime_ns, before.st_ino) != (
            after.st_size, after.st_mtime_ns, after.st_ino):
        fs.rm_file(f.remote)
        raise OSError(f"{f.path} changed during upload; it will be retried next run")

