"""S3 locations and the s3fs filesystem, built from settings.

Credentials come from the standard AWS chain (env vars, shared config/credentials files, SSO,
instance/container roles): we never pass keys, botocore finds them. ``endpoint_url`` (flag
``--endpoint-url`` or env ``AWS_ENDPOINT_URL``) points at an S3-compatible store (MinIO, moto,
Ceph …) instead of AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import s3fs


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


def make_filesystem(endpoint_url: str | None = None, **kwargs: Any) -> s3fs.S3FileSystem:
    """A fresh (uncached) s3fs filesystem using the default AWS credential chain.

    ``kwargs`` go to ``S3FileSystem`` (e.g. ``max_concurrency``); tests may pass ``key``/``secret``.
    """
    options: dict[str, Any] = dict(kwargs)
    client_kwargs: dict[str, Any] = dict(options.pop("client_kwargs", None) or {})
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    return s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True, **options)
