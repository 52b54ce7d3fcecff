"""FerretDB's storage backend: SQLite by default, or a private PostgreSQL cluster by env."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import MongoClient

from fraudlake import services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_backend_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDLAKE_FERRETDB_BACKEND", raising=False)
    assert services.ferretdb_backend() == "sqlite"
    assert [s.name for s in services.servers("mongo")] == ["mongo"]
    monkeypatch.setenv("FRAUDLAKE_FERRETDB_BACKEND", "postgresql")
    monkeypatch.setenv("FRAUDLAKE_POSTGRES_PORT", "55999")
    assert [s.name for s in services.servers("all", "up")] == ["kafka", "mongo", "postgres"]
    assert [s.name for s in services.servers("all")] == ["kafka", "mongo", "postgres", "trino"]
    assert services.postgres_server().address == "postgres://postgres@127.0.0.1:55999/"
    monkeypatch.setenv("FRAUDLAKE_FERRETDB_BACKEND", "mysql")
    with pytest.raises(services.ServiceError, match="sqlite or postgresql"):
        services.ferretdb_backend()


def test_cli_rejects_unknown_backend() -> None:
    proc = subprocess.run([sys.executable, "-m", "fraudlake.services", "status", "mongo"],
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "FRAUDLAKE_FERRETDB_BACKEND": "oracle"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "oracle" in proc.stderr


@pytest.mark.services
@pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                    reason="PostgreSQL is not installed (scripts/system-deps.sh)")
def test_ferretdb_on_postgresql_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private cluster (own port, own folder), FerretDB on it, a document in and out, and
    ``down`` of both; the default SQLite servers of the session are not touched."""
    monkeypatch.setenv("FRAUDLAKE_FERRETDB_BACKEND", "postgresql")
    monkeypatch.setenv("FRAUDLAKE_POSTGRES_PORT", str(free_port()))
    mongo, pg = services.mongo_server(free_port()), services.postgres_server()
    try:
        started = services.up(mongo)
        assert started.started and services.is_ready(pg)
        with MongoClient(mongo.address, serverSelectionTimeoutMS=5_000) as client:
            coll = client["pgcheck"]["docs"]
            coll.insert_many([{"_id": f"t{i}", "user_id": i} for i in range(5)])
            assert [d["_id"] for d in coll.find({"user_id": 3})] == ["t3"]
            plan = coll.find({"user_id": 3}).explain()
            assert plan.get("filterPushdown") is True  # equality goes down to PostgreSQL
    finally:
        services.down(mongo)
        services.down(pg)
        for server in (mongo, pg):  # this test's own folders (random ports)
            shutil.rmtree(server.pid_file.parent / f"data-{server.port}", ignore_errors=True)
    assert not services.is_ready(mongo) and not services.is_ready(pg)
