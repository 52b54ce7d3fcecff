"""lake.sync against moto's S3 server on loopback (real HTTP, no mocks of S3 calls)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import duckdb
import pytest

from lake import sync_files as sync_mod
from lake.layout import HIVE_TYPES
from lake.s3 import S3Location
from lake.sync import MD5_META, RemoteObject, is_temp_name, main, needs_upload, sync
from tests.lake._lakedata import write_history, write_live

MONTHS = [(2023, 12), (2024, 1), (2024, 2)]


@pytest.fixture
def local(tmp_path: Path) -> dict[str, Path]:
    """storage/historical (3 months) + storage/lake (2 live files), all settled."""
    hist, lake = tmp_path / "historical", tmp_path / "lake"
    write_history(hist, MONTHS)
    write_live(lake, 2024, 2, 0)
    write_live(lake, 2024, 3, 20)
    old = time.time() - 3600
    for path in tmp_path.rglob("*.parquet"):
        os.utime(path, (old, old))
    return {"historical": hist, "lake": lake}


def _sync(local: dict[str, Path], fs, bucket: str, **kw):
    kw.setdefault("settle_seconds", 0)
    return sync([local["historical"], local["lake"]], S3Location(bucket, "fl/v1"), fs,
                progress=False, **kw)


def _objects(bucket: str, endpoint: str) -> dict[str, str]:
    """key -> ETag, straight from the S3 API (not through s3fs's cache)."""
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2")
    return {o["Key"]: o["ETag"].strip('"') for page in pages.paginate(Bucket=bucket)
            for o in page.get("Contents", [])}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324


def test_first_sync_uploads_all_with_mirrored_keys_then_second_uploads_nothing(
        local, s3, s3_bucket, s3_endpoint):
    first = _sync(local, s3, s3_bucket)
    assert (first.uploaded, first.unchanged, first.failed) == (5, 0, ())
    objects = _objects(s3_bucket, s3_endpoint)
    expected = {f"fl/v1/{name}/{p.relative_to(root).as_posix()}": _md5(p)
                for name, root in local.items() for p in root.rglob("*.parquet")}
    assert objects == expected  # keys mirror the local layout, ETag = MD5 of content
    assert "fl/v1/historical/year=2024/month=01/part-0.parquet" in objects
    assert any(k.startswith("fl/v1/lake/transactions/year=2024/month=03/") for k in objects)
    second = _sync(local, s3, s3_bucket)
    assert (second.uploaded, second.unchanged, second.would_upload) == (0, 5, ())


def test_changed_partition_is_reuploaded_even_at_same_size(local, s3, s3_bucket, s3_endpoint):
    _sync(local, s3, s3_bucket)
    jan = local["historical"] / "year=2024/month=01/part-0.parquet"
    write_history(local["historical"], [(2024, 2)], rows=60)  # rewritten, different size
    data = bytearray(jan.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    jan.write_bytes(bytes(data))
    report = _sync(local, s3, s3_bucket)
    assert report.uploaded == 2 and report.unchanged == 3
    objects = _objects(s3_bucket, s3_endpoint)
    assert objects["fl/v1/historical/year=2024/month=01/part-0.parquet"] == _md5(jan)


def test_dry_run_lists_and_uploads_nothing(local, s3, s3_bucket, s3_endpoint, capsys):
    report = _sync(local, s3, s3_bucket, dry_run=True)
    assert report.uploaded == 0 and len(report.would_upload) == 5
    assert _objects(s3_bucket, s3_endpoint) == {}
    code = main(["--source", str(local["historical"]), "--dest", f"s3://{s3_bucket}/p",
                 "--endpoint-url", s3_endpoint, "--settle-seconds", "0", "--dry-run", "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 3
    assert all(line.startswith("would upload s3://") for line in out)
    assert _objects(s3_bucket, s3_endpoint) == {}


def test_files_being_written_are_never_uploaded(local, s3, s3_bucket, s3_endpoint):
    folder = local["lake"] / "transactions/year=2024/month=03"
    (folder / ".transactions-p0-o1.parquet.tmp").write_bytes(b"half")
    (folder / "part-9.parquet.tmp").write_bytes(b"half")
    (local["historical"] / "_staging").mkdir()
    (local["historical"] / "_staging/part-0.parquet").write_bytes(b"half")
    fresh = write_live(local["lake"], 2024, 3, 40)  # just written: still settling
    report = _sync(local, s3, s3_bucket, settle_seconds=60)
    assert report.uploaded == 5 and report.settling == 1 and report.ignored == 3
    keys = _objects(s3_bucket, s3_endpoint)
    assert not any(".tmp" in k or "_staging" in k or fresh.name in k for k in keys)
    old = time.time() - 120
    os.utime(fresh, (old, old))
    later = _sync(local, s3, s3_bucket, settle_seconds=60)
    assert later.uploaded == 1 and fresh.name in "".join(_objects(s3_bucket, s3_endpoint))


def test_failures_mid_run_are_reported_and_resumed(local, s3, s3_bucket, s3_endpoint, monkeypatch):
    real_pipe, calls = s3.pipe_file, []

    def flaky_pipe(path, data, **kw):
        calls.append(path)
        if len(calls) > 2:
            raise ConnectionError("connection reset")
        return real_pipe(path, data, **kw)

    monkeypatch.setattr(s3, "pipe_file", flaky_pipe)
    broken = _sync(local, s3, s3_bucket, workers=1)
    assert broken.uploaded == 2 and len(broken.failed) == 3
    assert "ConnectionError" in broken.failed[0]
    monkeypatch.setattr(s3, "pipe_file", real_pipe)
    resumed = _sync(local, s3, s3_bucket)
    assert (resumed.uploaded, resumed.unchanged, resumed.failed) == (3, 2, ())
    assert len(_objects(s3_bucket, s3_endpoint)) == 5


def test_killed_sync_resumes_uploading_only_what_is_missing(tmp_path, s3, s3_bucket, s3_endpoint):
    src = tmp_path / "many"
    for i in range(120):
        folder = src / f"year=2024/month={i % 12 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"part-{i:03d}.bin").write_bytes(os.urandom(256 * 1024))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lake.sync", "--source", str(src), "--dest", f"s3://{s3_bucket}/k",
         "--endpoint-url", s3_endpoint, "--settle-seconds", "0", "--workers", "1", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(_objects(s3_bucket, s3_endpoint)) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    present = _objects(s3_bucket, s3_endpoint)
    if len(present) == 120:  # a race this test needs to win, not a defect of lake.sync
        pytest.skip("precondition lost: the sync finished before it could be killed")
    assert len(present) >= 10
    report = sync([src], S3Location(s3_bucket, "k"), s3, settle_seconds=0, progress=False)
    assert report.uploaded == 120 - len(present) and report.unchanged == len(present)
    final = _objects(s3_bucket, s3_endpoint)
    assert final == {f"k/many/{p.relative_to(src).as_posix()}": _md5(p) for p in src.rglob("*.bin")}


def test_multipart_etag_falls_back_to_stored_checksum(local, s3, s3_bucket, s3_endpoint):
    """An object whose ETag is not an MD5 (multipart) is judged by its fraudlake-md5 metadata."""
    big = local["historical"] / "year=2024/month=03/part-0.parquet"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(5 * 2**20) + os.urandom(2**20))
    client, key = boto3.client("s3", endpoint_url=s3_endpoint), "fl/v1/historical/" \
        "year=2024/month=03/part-0.parquet"
    for meta in ({MD5_META: _md5(big)}, {}):
        mpu = client.create_multipart_upload(Bucket=s3_bucket, Key=key, Metadata=meta)
        data, parts = big.read_bytes(), []
        for n, chunk in enumerate((data[:5 * 2**20], data[5 * 2**20:]), start=1):
            r = client.upload_part(Bucket=s3_bucket, Key=key, PartNumber=n,
                                   UploadId=mpu["UploadId"], Body=chunk)
            parts.append({"PartNumber": n, "ETag": r["ETag"]})
        client.complete_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=mpu["UploadId"],
                                         MultipartUpload={"Parts": parts})
        assert "-" in _objects(s3_bucket, s3_endpoint)[key]
        report = _sync(local, s3, s3_bucket)
        big_uploaded = _objects(s3_bucket, s3_endpoint)[key] == _md5(big)
        assert big_uploaded == (not meta)  # with the stored checksum: skipped; without: uploaded
        assert report.uploaded == (5 if meta else 1)  # first pass: the 5 others, not the big one


def test_needs_upload_decision():
    def stored(value):
        return lambda: value

    assert needs_upload("aa", None, stored(None))
    assert not needs_upload("aa", RemoteObject(1, "aa"), stored(None))
    assert not needs_upload("aa", RemoteObject(1, "x-2"), stored("aa"))
    assert needs_upload("aa", RemoteObject(1, "x-2"), stored("bb"))
    assert needs_upload("aa", RemoteObject(1, "x-2"), stored(None))


def test_temp_names():
    from pathlib import PurePosixPath as P

    assert is_temp_name(P("year=2024/month=01/.part-0.parquet"))
    assert is_temp_name(P("_tmp/part-0.parquet")) and is_temp_name(P("a/part-0.parquet.tmp"))
    assert is_temp_name(P("a/x.tmp-1234.parquet"))
    assert not is_temp_name(P("year=2024/month=01/part-0.parquet"))


def test_delete_only_when_asked(local, s3, s3_bucket, s3_endpoint):
    _sync(local, s3, s3_bucket)
    gone = next((local["lake"] / "transactions").rglob("*.parquet"))
    gone.unlink()
    kept = _sync(local, s3, s3_bucket)
    assert len(kept.remote_only) == 1 and len(_objects(s3_bucket, s3_endpoint)) == 5
    assert "--delete" in kept.summary()
    deleted = _sync(local, s3, s3_bucket, delete=True)
    assert deleted.deleted == 1 and len(_objects(s3_bucket, s3_endpoint)) == 4


def test_duckdb_reads_the_synced_lake_back(local, s3, s3_bucket):
    _sync(local, s3, s3_bucket)
    con = duckdb.connect()
    con.register_filesystem(s3)
    types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in HIVE_TYPES.items()) + "}"

    def count(glob: str) -> list[tuple]:
        return con.sql(
            f"select year, month, count(*), sum(amount) from read_parquet('{glob}', "
            f"hive_partitioning=true, union_by_name=true, hive_types={types}) "
            "group by all order by all").fetchall()

    def local_count(root: Path) -> list[tuple]:
        return count(str(root) + "/**/*.parquet")

    remote_hist = count(f"s3://{s3_bucket}/fl/v1/historical/**/*.parquet")
    remote_live = count(f"s3://{s3_bucket}/fl/v1/lake/transactions/**/*.parquet")
    assert remote_hist == local_count(local["historical"])
    assert [r[:3] for r in remote_hist] == [(2023, 12, 50), (2024, 1, 50), (2024, 2, 50)]
    assert remote_live == local_count(local["lake"] / "transactions")
    assert sum(r[2] for r in remote_live) == 40


@pytest.mark.parametrize("argv, message", [
    (["--dest", "http://bucket/x"], "not an s3:// URI"),
    (["--dest", "s3://B_ad/x"], "bad bucket name"),
    (["--source", "/nonexistent/dir", "--dest", "s3://bucket-ok/x"], "not a directory"),
    (["--dest", "s3://bucket-ok/x", "--workers", "0"], "--workers"),
    (["--dest", "s3://bucket-ok/x", "--workers", "many"], "not a whole number"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, message, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "FRAUDLAKE_S3_URI": ""}
    proc = subprocess.run([sys.executable, "-m", "lake.sync", *argv], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_missing_bucket_and_missing_dest(local, s3_endpoint, capsys, monkeypatch):
    monkeypatch.delenv("FRAUDLAKE_S3_URI", raising=False)
    from fraudlake.cli import run

    assert run(main, ["--source", str(local["lake"]), "--quiet"]) == 2
    assert "no destination" in capsys.readouterr().err
    code = run(main, ["--source", str(local["lake"]), "--dest", "s3://no-such-bucket-here/x",
                      "--endpoint-url", s3_endpoint, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bucket not found" in err[0]


def test_cli_smoke_uses_env_defaults(local, s3_bucket, s3_endpoint, capsys, monkeypatch):
    monkeypatch.setenv("FRAUDLAKE_S3_URI", f"s3://{s3_bucket}/envprefix")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("HISTORY_DIR", str(local["historical"]))
    monkeypatch.setenv("LAKE_DIR", str(local["lake"]))
    assert main(["--settle-seconds", "0", "--quiet"]) == 0
    assert "uploaded 5 file(s)" in capsys.readouterr().err
    assert sorted({k.split("/")[1] for k in _objects(s3_bucket, s3_endpoint)}) == [
        "historical", "lake"]
    assert sync_mod.MEMORY_UPLOAD_LIMIT >= 2**20


def test_large_files_stream_from_disk_and_a_file_changed_mid_upload_is_dropped(
        local, s3, s3_bucket, s3_endpoint, monkeypatch):
    monkeypatch.setattr(sync_mod, "MEMORY_UPLOAD_LIMIT", 1024)  # every file takes the disk path
    first = _sync(local, s3, s3_bucket)
    assert first.uploaded == 5 and _sync(local, s3, s3_bucket).unchanged == 5
    victim = local["historical"] / "year=2024/month=02/part-0.parquet"
    victim.write_bytes(victim.read_bytes() + b"more")
    os.utime(victim, (time.time() - 3600,) * 2)
    real_put = s3.put_file

    def put_while_writer_rewrites(lpath, rpath, **kw):
        real_put(lpath, rpath, **kw)
        Path(lpath).write_bytes(b"rewritten by a writer during the upload")

    monkeypatch.setattr(s3, "put_file", put_while_writer_rewrites)
    report = _sync(local, s3, s3_bucket)
    assert report.uploaded == 0 and len(report.failed) == 1 and "changed during upload" in \
        report.failed[0]
    assert "fl/v1/historical/year=2024/month=02/part-0.parquet" not in _objects(s3_bucket,
                                                                               s3_endpoint)


def test_hash_cache_skips_rereading_unchanged_files(local, s3, s3_bucket, tmp_path):
    from lake.sync_cache import Md5Cache

    path = tmp_path / "cache/md5.json"
    first = _sync(local, s3, s3_bucket, cache=Md5Cache(path))
    assert first.uploaded == 5 and first.hashed == 5 and path.exists()
    again = _sync(local, s3, s3_bucket, cache=Md5Cache(path))
    assert (again.unchanged, again.hashed) == (5, 0)  # nothing read from disk
    jan = local["historical"] / "year=2024/month=01/part-0.parquet"
    data = bytearray(jan.read_bytes())
    data[100] ^= 0x01
    tmp = jan.with_name(".part-0.parquet.tmp")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, jan)  # how writers replace a file: new inode
    os.utime(jan, (time.time() - 3600,) * 2)
    feb = local["historical"] / "year=2024/month=02/part-0.parquet"
    os.utime(feb, (time.time() - 7200,) * 2)  # touched, same bytes
    third = _sync(local, s3, s3_bucket, cache=Md5Cache(path))
    assert (third.uploaded, third.unchanged, third.hashed) == (1, 4, 2)
    path.write_text("{not json")  # a broken cache only costs hashing
    assert _sync(local, s3, s3_bucket, cache=Md5Cache(path)).hashed == 5
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    unwritable = _sync(local, s3, s3_bucket, cache=Md5Cache(blocked / "md5.json"))
    assert unwritable.unchanged == 5 and unwritable.failed == ()
