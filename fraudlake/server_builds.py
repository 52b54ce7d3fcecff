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

from fraudlake.settings import (
    m2_repository_from_env,
    services_cache_from_env,
    trino_cache_from_env,
    trino_java_home_from_env,
)

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


# --- Trino (single node, hive catalog over the local lake) -----------------------------------

TRINO_VERSION = "476"
TRINO_ARTIFACT = f"io.trino:trino-server:{TRINO_VERSION}:tar.gz"
#: Unpacked Trino lives OUTSIDE the clone so a fresh clone (CI) starts warm.
TRINO_CACHE = trino_cache_from_env()
#: Trino 476 needs Java >= 24; only Trino's process gets this JAVA_HOME.
TRINO_JAVA_HOME = trino_java_home_from_env()
TRINO_MIN_JAVA = 24
#: The hive catalog's file metastore, below the lake root (hidden from the project's globs).
TRINO_METASTORE = ".trino-metastore"
_M2 = m2_repository_from_env()


def trino_tarball() -> Path:
    """The server tarball in the local Maven repository (``mvn dependency:get`` on first use)."""
    tarball = (_M2 / "io" / "trino" / "trino-server" / TRINO_VERSION
               / f"trino-server-{TRINO_VERSION}.tar.gz")
    if not tarball.exists():
        log.info("services: fetching %s (821 MB) with mvn (first start only)…", TRINO_ARTIFACT)
        _run_tool(["mvn", "-q", "-B", "dependency:get", f"-Dartifact={TRINO_ARTIFACT}",
                   "-Dtransitive=false"], f"mvn dependency:get {TRINO_ARTIFACT}", Path.home())
    if not tarball.exists():
        raise ServiceError(f"mvn reported success but {tarball} is missing")
    return tarball


def trino_home() -> Path:
    """The unpacked server (``<cache>/trino-server-476``). Idempotent and atomic: the tarball is
    unpacked into a temporary folder renamed into place when complete, under a lock."""
    import fcntl

    home = TRINO_CACHE / f"trino-server-{TRINO_VERSION}"
    if (home / ".complete").exists():
        return home
    TRINO_CACHE.mkdir(parents=True, exist_ok=True)
    with open(TRINO_CACHE / ".unpack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / ".complete").exists():
            return home
        tarball = trino_tarball()
        for stale in TRINO_CACHE.glob(".unpack-*"):  # left by a start killed mid-unpack
            shutil.rmtree(stale, ignore_errors=True)
        tmp = TRINO_CACHE / f".unpack-{os.getpid()}"
        tmp.mkdir()
        log.info("services: unpacking %s into %s (first start only)…", tarball.name, TRINO_CACHE)
        _run_tool(["tar", "-xzf", str(tarball), "-C", str(tmp)], f"tar -xzf {tarball}", tmp)
        unpacked = tmp / f"trino-server-{TRINO_VERSION}"
        # start-up loads every plugin folder: give Trino only the hive connector
        hive_only = unpacked / "plugin-hive"
        hive_only.mkdir()
        (hive_only / "hive").symlink_to(Path("..") / "plugin" / "hive")  # survives the rename
        (unpacked / ".complete").touch()
        shutil.rmtree(home, ignore_errors=True)  # a partial copy from an older layout
        os.rename(unpacked, home)
        shutil.rmtree(tmp, ignore_errors=True)
    return home


def _java_version(home: Path) -> int:
    """The feature version in a JDK's ``release`` file (0 when unreadable)."""
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


def trino_java_home() -> Path:
    """FRAUDLAKE_TRINO_JAVA_HOME (default the Temurin 25 JDK), else the newest JDK >= 24 under
    /usr/lib/jvm; ServiceError when there is none."""
    if (TRINO_JAVA_HOME / "bin" / "java").exists():
        return TRINO_JAVA_HOME
    found = [(v, h) for h in Path("/usr/lib/jvm").glob("*")
             if (v := _java_version(h)) >= TRINO_MIN_JAVA and (h / "bin" / "java").exists()]
    if not found:
        raise ServiceError(f"Trino needs Java >= {TRINO_MIN_JAVA}: {TRINO_JAVA_HOME} not found "
                           "and none under /usr/lib/jvm (set FRAUDLAKE_TRINO_JAVA_HOME)")
    return max(found)[1]


def _properties(path: Path, values: dict[str, object], private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{k}={v}\n" for k, v in values.items())
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if private:
        tmp.chmod(0o600)
    os.replace(tmp, path)


def hive_catalog_properties(root: Path, metastore: str) -> dict[str, object]:
    """The ``hive`` catalog over the local lake ``root`` (``local:///x`` = ``root/x``)."""
    return {
        "connector.name": "hive",
        "hive.metastore": "file",
        "hive.metastore.catalog.dir": metastore,
        "fs.native-local.enabled": "true",
        "local.location": str(root),
        **HIVE_COMMON,
    }


#: Settings every hive catalog of the project shares (local and S3).
HIVE_COMMON: dict[str, object] = {
    # the rules compare microseconds; the default reads timestamps as milliseconds
    "hive.timestamp-precision": "MICROSECONDS",
    # Athena's behaviour for a projected partition without a folder: empty, not an error
    "hive.ignore-absent-partitions": "true",
    # an unpartitioned input folder may hold files in sub-folders
    "hive.recursive-directories": "true",
    "hive.non-managed-table-writes-enabled": "false",
}


def s3_catalog_properties(endpoint: str, region: str, access_key: str, secret_key: str,
                          root: Path) -> dict[str, object]:
    """A hive catalog over S3 (e.g. moto on loopback); its file metastore stays local, below
    ``root`` (``.trino-metastore-s3``). Holds credentials: written with mode 600, never logged.
    """
    return {
        "connector.name": "hive",
        "hive.metastore": "file",
        "hive.metastore.catalog.dir": f"local:///{TRINO_METASTORE}-s3",
        "fs.native-s3.enabled": "true",
        "fs.native-local.enabled": "true",
        "local.location": str(root),
        "s3.endpoint": endpoint,
        "s3.region": region,
        "s3.path-style-access": "true",
        "s3.aws-access-key": access_key,
        "s3.aws-secret-key": secret_key,
        **HIVE_COMMON,
    }


def trino_command(port: int, base: Path, root: Path,
                  s3: dict[str, object] | None = None) -> list[str]:
    """A single-node Trino on ``port`` (coordinator + worker) with catalog ``hive`` over the
    local lake ``root`` and, when ``s3`` is given, catalog ``s3``; config and data in ``base``.
    Runs in the foreground (``launcher run``) with JAVA_HOME set for this process only."""
    home = trino_home()
    java_home = trino_java_home()
    etc, data = base / f"etc-{port}", base / f"data-{port}"
    for d in (data / "spill", root / TRINO_METASTORE, root / f"{TRINO_METASTORE}-s3"):
        d.mkdir(parents=True, exist_ok=True)
    # the launcher refuses to start over a pid file a killed server left behind; this
    # project tracks the process itself (and reuses a server that answers on the port)
    (data / "var" / "run" / "launcher.pid").unlink(missing_ok=True)
    _properties(etc / "node.properties", {
        "node.environment": "fraudlake", "node.id": f"fraudlake-{port}",
        "node.data-dir": data})
    (etc / "jvm.config").write_text("\n".join([
        "-server", "-Xmx2G", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError",
        "-Djdk.attach.allowAttachSelf=true", "-XX:+EnableDynamicAgentLoading",
        "-Duser.timezone=UTC", "-Dfile.encoding=UTF-8"]) + "\n")
    _properties(etc / "config.properties", {
        "coordinator": "true", "node-scheduler.include-coordinator": "true",
        "http-server.http.port": port, "discovery.uri": f"http://{HOST}:{port}",
        "plugin.dir": home / "plugin-hive",
        "catalog.management": "dynamic",
        "query.max-memory": "1GB", "query.max-memory-per-node": "1GB",
        "spill-enabled": "true", "spiller-spill-path": data / "spill",
    })
    _properties(etc / "log.properties", {"io.trino": "WARN"})
    catalogs = etc / "catalog"
    for old in catalogs.glob("*.properties"):
        old.unlink()
    _properties(catalogs / "hive.properties",
                hive_catalog_properties(root, f"local:///{TRINO_METASTORE}"))
    if s3 is not None:
        _properties(catalogs / "s3.properties", s3, private=True)
    return ["env", f"JAVA_HOME={java_home}",
            f"PATH={java_home / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            str(home / "bin" / "launcher"), "run", f"--etc-dir={etc}", f"--data-dir={data}"]
