"""`fraudlake-ferretdb -ping`: the health check of the compose test's MongoDB stand-in.

It speaks the wire protocol itself (one OP_MSG {ping: 1}); here against the real FerretDB of the
test session and against a port where nothing listens.
"""

from __future__ import annotations

import socket
import subprocess

from fraudlake import server_builds


def _ping(address: str) -> subprocess.CompletedProcess[str]:
    binary = server_builds.ferretdb_binary()
    return subprocess.run([str(binary), "-ping", "-listen-addr", address],
                          capture_output=True, text=True, timeout=30)


def test_ping_answers_ok_from_a_running_server(mongo_uri: str) -> None:
    address = mongo_uri.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    proc = _ping(address)
    assert proc.returncode == 0, proc.stderr


def test_ping_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connection is refused
        proc = _ping(f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert proc.stderr.startswith("ferretdb: ping 127.0.0.1:") and "\n" == proc.stderr[-1]
