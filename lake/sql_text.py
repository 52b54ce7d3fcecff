"""Values written into DDL text (Athena's Hive DDL, Trino's DDL): validated, then quoted.

DDL cannot bind parameters, so every identifier and string literal that reaches its text goes
through one of the quoting functions below, and every value from the command line is checked
first (``check_identifier``, ``check_location``): a bad one is refused with a message naming
it, never escaped into something that runs.

- Hive/Athena: identifiers in backquotes (a backquote doubled), string literals in single
  quotes with backslash escapes (Hive's string literal rules: ``\\'`` and ``\\\\``).
- Trino: identifiers in double quotes (``"`` doubled), string literals in single quotes (``'``
  doubled).

S3 locations (``s3://bucket[/prefix]``): the bucket follows AWS's general-purpose bucket naming
rules, each prefix segment uses only AWS's "safe" key characters (letters, digits and
``! - _ . * ( )``) plus ``=`` (hive partition folders), without ``'`` — so a location never
needs escaping, and the escaping is there for defence in depth.
"""

from __future__ import annotations

import re

from lake.s3 import S3Location

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,127}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*()=-]+")
_MAX_KEY_BYTES = 900  # S3 allows 1024; keep room for the lake's own keys below the prefix


class SqlTextError(ValueError):
    """A value that may not be written into SQL text; the message names it and why."""


def check_identifier(name: str, what: str) -> str:
    """``name`` if it is a plain lowercase identifier (Glue/Hive/Trino agree on those)."""
    if not _IDENT.fullmatch(name):
        raise SqlTextError(f"bad {what} {name!r}: use lowercase letters, digits and _, "
                           "starting with a letter or _ (at most 128)")
    return name


def check_bucket(name: str) -> str:
    """``name`` if it is a valid S3 general-purpose bucket name."""
    problem = None
    if not _BUCKET.fullmatch(name):
        problem = ("3-63 characters: lowercase letters, digits, '.' and '-', starting and "
                   "ending with a letter or digit")
    elif ".." in name or ".-" in name or "-." in name:
        problem = "no '..', '.-' or '-.'"
    elif _IP.fullmatch(name):
        problem = "not formatted as an IP address"
    elif name.startswith(_BUCKET_PREFIXES) or name.endswith(_BUCKET_SUFFIXES):
        problem = "a prefix or suffix AWS reserves"
    if problem:
        raise SqlTextError(f"bad S3 bucket name {name!r}: {problem}")
    return name


def check_location(uri: str) -> S3Location:
    """The ``S3Location`` of ``s3://bucket[/prefix]``, bucket and prefix checked (see above)."""
    text = uri.strip()
    if not text.startswith("s3://"):
        raise SqlTextError(f"not an s3:// URI: {uri!r} (expected s3://bucket[/prefix])")
    bucket, _, prefix = text[len("s3://"):].partition("/")
    check_bucket(bucket)
    segments = [s for s in prefix.split("/")]
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash
    for seg in segments:
        if seg in ("", ".", ".."):
            raise SqlTextError(f"bad S3 prefix in {uri!r}: empty, '.' or '..' path segment")
        if not _SEGMENT.fullmatch(seg):
            bad = sorted({c for c in seg if not _SEGMENT.fullmatch(c)})
            raise SqlTextError(f"bad S3 prefix in {uri!r}: character(s) {''.join(bad)!r}; use "
                               "letters, digits and ! - _ . * ( ) =")
    if len(prefix.encode()) > _MAX_KEY_BYTES:
        raise SqlTextError(f"S3 prefix too long in {uri!r} (at most {_MAX_KEY_BYTES} bytes)")
    return S3Location(bucket, "/".join(segments))


def hive_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def hive_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trino_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def trino_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
