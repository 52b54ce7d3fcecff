"""Who may act on the page: a local users file with salted scrypt password hashes.

Used where no OIDC provider is configured for Streamlit's ``st.login`` (the embedded and
compose default). One user a line, ``name:scrypt:<n>:<r>:<p>:<salt hex>:<hash hex>``; only
hashes are stored, verification is constant-time. Without a signed-in user the page is
read-only. Manage the file (env ``DASHBOARD_USERS_FILE``, default
``storage/dashboard/users.txt``):

    .venv/bin/python -m dashboard.users add alice        # asks for the password twice
    echo "$PW" | .venv/bin/python -m dashboard.users add alice --password-stdin
    .venv/bin/python -m dashboard.users list
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from fraudlake.cli import ArgumentParser, UsageError, run
from fraudlake.settings import DashboardSettings

DEFAULT_USERS_FILE = DashboardSettings.users_file
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
N, R, P = 2**14, 8, 1  # scrypt cost: ~50 ms a check here
MIN_PASSWORD = 8


def users_path(env: dict[str, str] | None = None) -> Path:
    return DashboardSettings.from_env(env).users_file


def hash_password(password: str, salt: bytes | None = None, n: int = N, r: int = R,
                  p: int = P) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt:{n}:{r}:{p}:{salt.hex()}:{digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split(":")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def read_users(path: Path) -> dict[str, str]:
    """name → stored hash; a missing file = no users. Malformed lines are skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    users = {}
    for line in text.splitlines():
        name, sep, stored = line.strip().partition(":")
        if sep and NAME.match(name) and stored.startswith("scrypt:"):
            users[name] = stored
    return users


def verify(path: Path, name: str, password: str) -> bool:
    """True when ``name`` is in the file and the password matches."""
    stored = read_users(path).get(name.strip())
    if stored is None:
        hash_password(password)  # same cost whether or not the user exists
        return False
    return check_password(password, stored)


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace ``name`` (file written atomically, mode 0600)."""
    if not NAME.match(name):
        raise UsageError(f"user name must be letters, digits, . _ @ -: {name!r}")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"password must have at least {MIN_PASSWORD} characters")
    users = read_users(path)
    users[name] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{u}:{h}\n" for u, h in sorted(users.items())))
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m dashboard.users",
                       description="Manage the dashboard's local users file.")
    p.add_argument("--file", type=Path, default=users_path(),
                   help=f"users file (env DASHBOARD_USERS_FILE; default {DEFAULT_USERS_FILE})")
    sub = p.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add a user or set their password")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin")
    sub.add_parser("list", help="list user names")
    args = p.parse_args(argv)
    path = args.file
    if args.cmd == "list":
        for name in sorted(read_users(path)):
            print(name)
        return 0
    if not NAME.match(args.name):
        raise UsageError(f"user name must be letters, digits, . _ @ -: {args.name!r}")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    add_user(path, args.name, password)
    print(f"user {args.name} saved in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
