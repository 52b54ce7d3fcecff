"""Incremental, parallel, resumable upload of the local lake to S3.

    python -m lake.sync --source storage/historical --source storage/lake --dest s3://bucket/prefix

Keys mirror the local layout below each source's folder name:
``storage/historical/year=2024/month=03/part-0.parquet`` → ``s3://bucket/prefix/historical/year=2024/month=03/part-0.parquet``.

Unchanged files are skipped by size + MD5: the ETag of a single-part upload is the content's
MD5; otherwise the MD5 stored in the object's metadata decides (details in lake/sync_files.py).
A local hash cache (lake/sync_cache.py) spares re-reading files whose size/mtime/inode did not
change, so a no-op re-sync costs one listing per source.

Resumable: every object appears atomically (PUT, or CompleteMultipartUpload), so a killed run
leaves complete objects or none; re-running uploads only what is missing or changed. (Abandoned
multipart parts are invisible; an AbortIncompleteMultipartUpload lifecycle rule cleans them.)

Never uploads a file still being written: hidden/underscore/temp names (``.x``, ``_x``, ``*.tmp``)
are ignored and files modified in the last ``--settle-seconds`` wait for the next run. Writers in
this project replace files by atomic rename, so an open file is one consistent version.
Remote objects with no local file (e.g. after compaction) are only deleted with ``--delete``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import s3fs
from tqdm import tqdm

from fraudlake.cli import (
    ArgumentParser,
    UsageError,
    check_output_file,
    int_range_arg,
    non_negative_float_arg,
    run,
)
from fraudlake.settings import S3_ENDPOINT_ENV as ENDPOINT_ENV
from fraudlake.settings import S3_URI_ENV, Settings
from fraudlake.settings import SYNC_CACHE_ENV as CACHE_ENV
from lake.layout import remote_name
from lake.s3 import S3Location, make_filesystem
from lake.sync_cache import Md5Cache, default_path
from lake.sync_files import (  # noqa: F401 - re-exported: the public API of lake.sync
    MD5_META,
    LocalFile,
    Outcome,
    RemoteObject,
    is_temp_name,
    list_remote,
    needs_upload,
    scan_source,
    sync_file,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    uploaded: int = 0
    uploaded_bytes: int = 0
    unchanged: int = 0
    would_upload: tuple[str, ...] = ()
    settling: int = 0
    ignored: int = 0
    deleted: int = 0
    remote_only: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    hashed: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def summary(self) -> str:
        mib = self.uploaded_bytes / 2**20
        verb = "would upload" if self.dry_run else "uploaded"
        count = len(self.would_upload) if self.dry_run else self.uploaded
        text = (f"sync: {verb} {count} file(s) ({mib:.1f} MiB), {self.unchanged} unchanged, "
                f"{self.settling} settling, {self.ignored} temp ignored, {self.hashed} hashed")
        if self.deleted or (self.dry_run and self.remote_only):
            text += f", {'would delete' if self.dry_run else 'deleted'} " \
                    f"{self.deleted or len(self.remote_only)}"
        elif self.remote_only:
            text += f", {len(self.remote_only)} remote-only kept (use --delete)"
        if self.failed:
            text += f", {len(self.failed)} FAILED"
        return text + f" in {self.seconds:.1f} s"



def sync(sources: Sequence[Path], dest: S3Location, fs: s3fs.S3FileSystem, *, workers: int = 8,
         settle_seconds: float = 10.0, dry_run: bool = False, delete: bool = False,
         progress: bool = True, now: float | None = None,
         cache: Md5Cache | None = None) -> SyncReport:
    """Upload what is new or changed below each source to ``dest/<source name>/…``.

    ``cache`` (optional) remembers local MD5s so unchanged files are not re-read next time.
    """
    start = time.monotonic()
    sources = [Path(os.path.abspath(src)) for src in sources]  # "." gets its folder's name
    _check_sources(sources)
    scans = [scan_source(src, dest, time.time() if now is None else now, settle_seconds)
             for src in sources]
    remote = _list_all(fs, [dest.path(remote_name(src)) for src in sources])
    ready = [f for s in scans for f in s.ready]
    try:
        outcomes = _run_parallel(fs, ready, remote, workers, dry_run, progress, cache)
    finally:  # keep what was hashed, even when interrupted
        if cache is not None and not dry_run:
            cache.save(sources)
    local = {f.remote for s in scans for f in (*s.ready, *s.settling)} | {
        r for s in scans for r in s.ignored}
    remote_only = tuple(sorted(set(remote) - local))
    if delete and remote_only and not dry_run:
        fs.rm(list(remote_only))
    done = [o for o in outcomes if o.status == "uploaded"]
    return SyncReport(
        uploaded=len(done), uploaded_bytes=sum(o.file.size for o in done) + (
            sum(o.file.size for o in outcomes if o.status == "would_upload")),
        unchanged=sum(o.status in ("unchanged", "gone") for o in outcomes),
        would_upload=tuple(o.file.remote for o in outcomes if o.status == "would_upload"),
        settling=sum(len(s.settling) for s in scans), ignored=sum(len(s.ignored) for s in scans),
        deleted=len(remote_only) if delete and not dry_run else 0, remote_only=remote_only,
        failed=tuple(f"{o.file.remote}: {o.reason}" for o in outcomes if o.status == "failed"),
        hashed=sum(o.hashed for o in outcomes),
        seconds=time.monotonic() - start, dry_run=dry_run,
    )


def _check_sources(sources: Sequence[Path]) -> None:
    if not sources:
        raise UsageError("no source directory to sync")
    names = [remote_name(s) for s in sources]
    for src in sources:
        if not src.is_dir():
            raise UsageError(f"source is not a directory: {src}")
        if names.count(remote_name(src)) > 1:
            raise UsageError(f"two sources share the folder name {remote_name(src)!r}")


def _list_all(fs: s3fs.S3FileSystem, roots: Iterable[str]) -> dict[str, RemoteObject]:
    remote: dict[str, RemoteObject] = {}
    for root in roots:
        try:
            remote.update(list_remote(fs, root))
        except FileNotFoundError:
            raise UsageError(f"bucket not found: s3://{root.split('/')[0]}") from None
        except Exception as exc:  # credentials, permissions, endpoint: name it in one line
            raise UsageError(f"cannot list s3://{root}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return remote


def _run_parallel(fs: s3fs.S3FileSystem, files: list[LocalFile], remote: dict[str, RemoteObject],
                  workers: int, dry_run: bool, progress: bool,
                  cache: Md5Cache | None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    bar = tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, file=sys.stderr,
               desc="sync", disable=None if progress else True)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync")
    try:
        futures = [pool.submit(sync_file, fs, f, remote.get(f.remote), dry_run, cache)
                   for f in files]
        for fut in as_completed(futures):
            outcome = fut.result()
            outcomes.append(outcome)
            bar.update(outcome.file.size)
            bar.set_postfix(uploaded=sum(o.status == "uploaded" for o in outcomes), refresh=False)
    finally:  # on Ctrl-C: stop queued uploads, let running ones finish (each is atomic)
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return outcomes


def build_parser() -> ArgumentParser:
    settings = Settings.from_env()
    p = ArgumentParser(prog="python -m lake.sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", type=Path, metavar="DIR",
                   help="local folder to sync, repeatable; its folder name becomes the key prefix "
                        f"(default: {settings.history_dir} and {settings.lake_dir}, from env "
                        "HISTORY_DIR / LAKE_DIR, those that exist)")
    p.add_argument("--dest", default=settings.s3_uri, metavar="s3://BUCKET/PREFIX",
                   help=f"destination (env {S3_URI_ENV})")
    p.add_argument("--endpoint-url", default=settings.s3_endpoint_url,
                   help=f"S3-compatible endpoint instead of AWS (env {ENDPOINT_ENV}); credentials "
                        "always come from the standard AWS chain (env keys, profiles, roles)")
    p.add_argument("--workers", type=int_range_arg(1, 256), default=8,
                   help="parallel uploads (default 8)")
    p.add_argument("--settle-seconds", type=non_negative_float_arg, default=10.0,
                   help="skip files modified less than this many seconds ago (default 10)")
    p.add_argument("--dry-run", action="store_true", help="list what would change, upload nothing")
    p.add_argument("--delete", action="store_true",
                   help="delete remote objects whose local file is gone (e.g. after compaction)")
    p.add_argument("--hash-cache", type=Path, default=settings.sync_hash_cache,
                   help="file remembering local MD5s by (size, mtime, inode) so unchanged files "
                        f"are not re-read (env {CACHE_ENV}; default {default_path()})")
    p.add_argument("--no-hash-cache", action="store_true", help="hash every file every run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.dest:
        raise UsageError(f"no destination: pass --dest s3://bucket/prefix or set {S3_URI_ENV}")
    try:
        dest = S3Location.parse(args.dest)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.workers < 1 or not 0 <= args.settle_seconds < float("inf"):
        raise UsageError("--workers must be >= 1 and --settle-seconds >= 0")
    for source in args.source or []:
        if not source.is_dir():
            raise UsageError(f"--source {source}: not a directory")
    if not args.no_hash_cache and args.hash_cache:
        check_output_file(args.hash_cache, "--hash-cache")
    sources = args.source or [d for d in (Settings.from_env().history_dir,
                                          Settings.from_env().lake_dir) if d.is_dir()]
    fs = make_filesystem(args.endpoint_url)
    cache = None if args.no_hash_cache else Md5Cache(Path(args.hash_cache or default_path()))
    report = sync(sources, dest, fs, workers=args.workers, settle_seconds=args.settle_seconds,
                  dry_run=args.dry_run, delete=args.delete, progress=not args.quiet, cache=cache)
    if args.dry_run:
        for remote in report.would_upload:
            print(f"would upload s3://{remote}")
        for remote in report.remote_only if args.delete else ():
            print(f"would delete s3://{remote}")
    for line in report.failed:
        log.error("failed: s3://%s", line)
    log.info("%s", report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(run(main))
