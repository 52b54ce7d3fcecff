"""S3 fixtures: one moto S3 server on loopback per session, a fresh bucket per test."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
import s3fs

from fraudlake.settings import SYNC_CACHE_ENV as CACHE_ENV
from lake.s3 import make_filesystem

_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (free port), with dummy credentials in the env."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in (*_DUMMY_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE")}
    os.environ.update(_DUMMY_ENV)
    for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(k, None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    # the in-process server's request log is not the CLI's output (werkzeug sets INFO itself)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_endpoint: str) -> s3fs.S3FileSystem:
    """An s3fs filesystem on the moto server, built like the CLI builds it."""
    return make_filesystem(s3_endpoint)


@pytest.fixture(autouse=True)
def _private_hash_cache(tmp_path, monkeypatch) -> None:
    """CLI runs in tests never touch the user's ~/.cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "sync-md5.json"))
