"""S3 locations and the s3fs filesystem, built from settings.

Credentials come from the standard AWS chain (env vars, shared config/credentials files, SSO,
instance/container roles): we never pass keys, botocore finds them. ``endpoint_url`` (flag
``--endpoint-url`` or env ``AWS_ENDPOINT_URL``) points at an S3-compatible store (MinIO, moto,
Ceph …) instead of AWS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import s3fs

#: Env var holding the default destination, e.g. ``s3://my-bucket/fraudlake``.
S3_URI_ENV = "FRAUDLAKE_S3_URI"
#: Standard AWS SDK env var for a custom endpoint (also honoured by botocore itself).
ENDPOINT_ENV = "AWS_ENDPOINT_URL"


@dataclass(frozen=True)
class S3Location:
    """A bucket plus a key prefix (no leading/trailing slash; may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """Parse ``s3://bucket[/prefix]``; ValueError names what is wrong."""
        text = uri.strip()
        if not text.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not _valid_bucket(bucket):
            raise ValueError(f"bad bucket name in {uri!r}")
        prefix = prefix.strip("/")
        if "//" in prefix:
            raise ValueError(f"empty path segment in {uri!r}")
        return cls(bucket, prefix)

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def path(self, *parts: str) -> str:
        """The s3fs path (``bucket/key``) of ``parts`` below the prefix."""
        key = self.key(*parts)
        return f"{self.bucket}/{key}" if key else self.bucket

    def uri(self, *parts: str) -> str:
        return f"s3://{self.path(*parts)}"


def _valid_bucket(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return 3 <= len(name) <= 63 and set(name) <= allowed and name[0].isalnum() \
        and name[-1].isalnum()


@dataclass(frozen=True)
class S3Settings:
    """Where synced data goes. Secrets are not held here: the AWS chain supplies them."""

    uri: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        e = os.environ if env is None else env
        return cls(uri=e.get(S3_URI_ENV) or None, endpoint_url=e.get(ENDPOINT_ENV) or None)


def make_filesystem(endpoint_url: str | None = None, **kwargs: Any) -> s3fs.S3FileSystem:
    """A fresh (uncached) s3fs filesystem using the default AWS credential chain.

    ``kwargs`` go to ``S3FileSystem`` (e.g. ``max_concurrency``); tests may pass ``key``/``secret``.
    """
    options: dict[str, Any] = dict(kwargs)
    client_kwargs: dict[str, Any] = dict(options.pop("client_kwargs", None) or {})
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    return s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True, **options)
