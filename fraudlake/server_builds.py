"""How each dev/test server is fetched, built and launched (``fraudlake.services`` runs them).

Kafka: Apache Kafka's own jars from Maven Central (``mvn`` over ``services/kafka/pom.xml``),
its storage formatted once. FerretDB: built with ``go build`` from ``services/ferretdb``.
PostgreSQL (FerretDB's optional backend): Debian's binaries, a private cluster made by
``initdb`` once. Everything lives under ``services/.cache/`` so a second start is fast.
Each ``*_command`` returns the argv of the server process; none of them starts it.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from string import Template
from typing import Any

from fraudlake.settings import services_cache_from_env

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = ROOT / "services"
CACHE_DIR = services_cache_from_env(SERVICES_DIR / ".cache")
HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A server could not be fetched, built or started; the message names what and where to look."""


def _run_tool(cmd: list[str], what: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ServiceError(f"{what}: {cmd[0]!r} not found (run scripts/system-deps.sh)") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise ServiceError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


# --- Kafka -----------------------------------------------------------------------------------

def kafka_libs() -> Path:
    """The broker's runtime jars, fetched by Maven on first use (a stamp marks a full copy)."""
    libs = CACHE_DIR / "kafka" / "libs"
    pom = SERVICES_DIR / "kafka" / "pom.xml"
    stamp = libs / ".complete"
    if stamp.exists() and stamp.stat().st_mtime >= pom.stat().st_mtime:
        return libs
    log.info("services: fetching Kafka jars with mvn (first start only)…")
    cmd = ["mvn", "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
           f"-DoutputDirectory={libs}"]
    _run_tool(cmd, "mvn dependency:copy-dependencies (services/kafka/pom.xml)", pom.parent)
    stamp.touch()
    return libs


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def kafka_command(port: int, base: Path) -> list[str]:
    """A KRaft broker+controller on ``port`` (controller ``port + 1``), data and config in
    ``base``; the storage is formatted on first use."""
    libs = kafka_libs()
    data = base / f"data-{port}"
    props = base / f"server-{port}.properties"
    template = Template((SERVICES_DIR / "kafka" / "server.properties.template").read_text())
    props.write_text(template.substitute(
        kafka_port=port, controller_port=port + 1, log_dirs=data))
    classpath = f"{libs}/*"
    if not (data / "meta.properties").exists():
        _run_tool(["java", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
                   "--ignore-formatted", "-t", _cluster_id(), "-c", str(props)],
                  f"kafka StorageTool format ({data})", base)
    log4j = SERVICES_DIR / "kafka" / "log4j2.properties"
    return ["java", "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={log4j}",
            "-cp", classpath, "kafka.Kafka", str(props)]


# --- FerretDB --------------------------------------------------------------------------------

def ferretdb_binary() -> Path:
    """The FerretDB binary, built with ``go build`` when missing or older than its sources."""
    src = SERVICES_DIR / "ferretdb"
    binary = CACHE_DIR / "bin" / "fraudlake-ferretdb"
    newest = max(p.stat().st_mtime for p in src.iterdir() if p.is_file())
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    log.info("services: building FerretDB with go build (first start only)…")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    go = shutil.which("go") or "/usr/local/go/bin/go"  # the Go tarball's place, often off PATH
    _run_tool([go, "build", "-o", str(binary), "."], "go build (services/ferretdb)", src, env)
    return binary


def ferretdb_command(port: int, data: Path, postgresql_url: str | None = None) -> list[str]:
    """FerretDB on ``port``: SQLite files in ``data``, or the PostgreSQL database at
    ``postgresql_url`` (which must be running)."""
    cmd = [str(ferretdb_binary()), "--listen-addr", f"{HOST}:{port}", "--data-dir", str(data)]
    if postgresql_url is not None:
        cmd += ["--handler", "postgresql", "--postgresql-url", postgresql_url]
    return cmd


# --- PostgreSQL (FerretDB's optional backend) ------------------------------------------------

def pg_tool(name: str) -> Path:
    """A PostgreSQL binary: on PATH, else the newest /usr/lib/postgresql/*/bin (Debian)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not versions:
        raise ServiceError(f"PostgreSQL's {name} not found (run scripts/system-deps.sh)")
    return versions[-1]


def pg_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: run its tools as the 'postgres' user then."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def postgres_command(port: int, data: Path) -> list[str]:
    """A private PostgreSQL on ``port`` over the cluster in ``data`` (``initdb`` on first use).
    Run it with ``pg_user()``."""
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        proc = subprocess.run([str(pg_tool("initdb")), "-D", str(data), "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--no-sync"], cwd=data,
                              capture_output=True, text=True, check=False, **pg_user())
        if proc.returncode != 0:
            raise ServiceError(f"initdb ({data}) failed: {proc.stderr.strip()[-500:]}")
    # dev/test data only: no fsync (a killed server still recovers; an OS crash may not)
    return [str(pg_tool("postgres")), "-D", str(data), "-p", str(port),
            "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "shared_buffers=256MB"]


def pg_database(port: int, name: str) -> str:
    """Create database ``name`` in the PostgreSQL on ``port`` unless it exists; return it."""
    proc = subprocess.run([str(pg_tool("createdb")), "-h", HOST, "-p", str(port),
                           "-U", "postgres", name], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise ServiceError(f"createdb {name} failed: {proc.stderr.strip()[-300:]}")
    return name
