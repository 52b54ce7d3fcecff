"""Benchmark lake.sync against a naive re-upload, both on a moto S3 server on loopback.

    .venv/bin/python -m bench.bench_sync [--input DIR] [--files 300] [--file-kib 512]

Without --input it writes a synthetic hive-partitioned folder (random bytes, like Parquet
parts). Baseline, measured in the same run: the seed-style "upload everything every time"
(`s3fs.put(dir, recursive=True)`, which batches uploads concurrently itself). Ours: first
sync, a no-op re-sync, a re-sync after 2% of the files changed, and the first sync with
1 worker (parallelism ratio), plus a no-op re-sync with a warm hash cache.
moto runs in this process and is CPU-bound on a shared 2-core machine, so absolute numbers are
noisy and pessimistic for parallelism (real S3 is latency-bound: more workers help more there).
Writes bench/results/sync.md and sync.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import boto3

from lake.s3 import S3Location, make_filesystem
from lake.sync import sync
from lake.sync_cache import Md5Cache

ROOT = Path(__file__).resolve().parents[1]


def synthetic(root: Path, files: int, kib: int) -> Path:
    src = root / "historical"
    for i in range(files):
        folder = src / f"year={2000 + i % 26}/month={i % 12 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{i:05d}.parquet").write_bytes(os.urandom(kib * 1024))
    old = time.time() - 3600
    for p in src.rglob("*.parquet"):
        os.utime(p, (old, old))
    return src


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path,
                    help="folder to sync, copied first and never modified (default: synthetic)")
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--file-kib", type=int, default=512)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    for b in ("naive", "ours", "ours1"):
        client.create_bucket(Bucket=f"bench-{b}")
    fs = make_filesystem(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        if args.input:  # work on a private copy: the run rewrites 2% of the files
            src = Path(tmp) / args.input.resolve().name
            shutil.copytree(args.input, src)
        else:
            src = synthetic(Path(tmp), args.files, args.file_kib)
        files = [p for p in src.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)

        def naive():
            return fs.put(str(src), f"bench-naive/x/{src.name}", recursive=True)

        def ours(bucket: str, workers: int, cache: Md5Cache | None = None):
            return sync([src], S3Location(bucket, "x"), fs, workers=workers, settle_seconds=0,
                        cache=cache,
                        progress=False)

        naive_first, _ = timed(naive)
        naive_again, _ = timed(naive)
        first, r1 = timed(lambda: ours("bench-ours", args.workers))
        noop, r2 = timed(lambda: ours("bench-ours", args.workers))
        cache_file = Path(tmp) / "md5-cache.json"
        ours("bench-ours", args.workers, Md5Cache(cache_file))  # fills the hash cache
        cached, r4 = timed(lambda: ours("bench-ours", args.workers, Md5Cache(cache_file)))
        changed = files[:: 50][: max(1, len(files) // 50)]  # 2% of the files
        for p in changed:
            p.write_bytes(os.urandom(p.stat().st_size))
            os.utime(p, (time.time() - 3600,) * 2)
        partial, r3 = timed(lambda: ours("bench-ours", args.workers))
        single, _ = timed(lambda: ours("bench-ours1", 1))
    server.stop()
    assert r1.uploaded == len(files) and r2.uploaded == 0 and r3.uploaded == len(changed)
    assert r4.uploaded == 0 and r4.hashed == 0
    res = {
        "files": len(files), "mib": round(total / 2**20, 1), "workers": args.workers,
        "naive_first_s": round(naive_first, 2), "naive_again_s": round(naive_again, 2),
        "sync_first_s": round(first, 2), "sync_noop_s": round(noop, 2),
        "sync_noop_hash_cache_s": round(cached, 2),
        "ratio_noop_cache_vs_naive_again": round(naive_again / cached, 1),
        "sync_2pct_changed_s": round(partial, 2), "sync_first_1_worker_s": round(single, 2),
        "ratio_first_vs_naive": round(naive_first / first, 2),
        "ratio_noop_vs_naive_again": round(naive_again / noop, 1),
        "ratio_2pct_vs_naive_again": round(naive_again / partial, 1),
        "ratio_workers_vs_1": round(single / first, 2),
    }
    out = ROOT / "bench/results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sync.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# lake.sync benchmark", "",
        f"`.venv/bin/python -m bench.bench_sync` — {res['files']} files, {res['mib']} MiB, moto "
        "S3 server in-process on loopback, 2 shared cores (noisy; moto is CPU-bound, real S3 is "
        "latency-bound).", "",
        "| run | seconds | vs naive |", "|---|---|---|",
        f"| naive `fs.put(recursive)` first | {res['naive_first_s']} | 1.0 |",
        f"| naive `fs.put(recursive)` again (re-uploads all) | {res['naive_again_s']} | 1.0 |",
        f"| lake.sync first ({args.workers} workers) | {res['sync_first_s']} | "
        f"{res['ratio_first_vs_naive']}x faster |",
        f"| lake.sync again, nothing changed | {res['sync_noop_s']} | "
        f"{res['ratio_noop_vs_naive_again']}x faster |",
        f"| lake.sync again, nothing changed, hash cache warm | {res['sync_noop_hash_cache_s']} | "
        f"{res['ratio_noop_cache_vs_naive_again']}x faster |",
        f"| lake.sync again, 2% of files changed | {res['sync_2pct_changed_s']} | "
        f"{res['ratio_2pct_vs_naive_again']}x faster |",
        f"| lake.sync first, 1 worker | {res['sync_first_1_worker_s']} | "
        f"parallel speed-up {res['ratio_workers_vs_1']}x |", "",
    ]
    (out / "sync.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
