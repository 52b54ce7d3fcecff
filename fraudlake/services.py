"""Start, stop and check the dev/test servers: Kafka 4 (KRaft, JDK), FerretDB (MongoDB wire)
and Trino 476 (single node, the engine Athena runs).

How each is fetched, built and launched: ``fraudlake.server_builds``. FerretDB stores its
data in SQLite files (default) or, with
``FRAUDLAKE_FERRETDB_BACKEND=postgresql``, in a private PostgreSQL cluster (Debian's
PostgreSQL binaries, ``initdb`` once, port ``FRAUDLAKE_POSTGRES_PORT``, default 55432; one
database per FerretDB port) that ``up mongo`` starts first and ``down mongo`` stops after it.
Jars, binaries, data and logs live under ``services/.cache/`` so a second start is fast.
Trino (port ``FRAUDLAKE_TRINO_PORT``, default 8080) has a ``hive`` catalog over the local lake
``FRAUDLAKE_TRINO_ROOT`` (default the repo's ``storage/``) and, when
``FRAUDLAKE_TRINO_S3_ENDPOINT`` is set, an ``s3`` catalog there (AWS keys from the env); its
tarball is unpacked once into ``~/.cache/fraudlake/trino`` (outside the clone).
Starting is idempotent: if something already answers on the port, it is reused, not restarted.

    python -m fraudlake.services up|down|status [kafka|mongo|trino|all]
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudlake.cli import (
    ArgumentParser,
    EnvironmentFailure,
    UsageError,
    positive_float_arg,
    run,
)
from fraudlake.server_builds import (
    CACHE_DIR,
    HOST,
    ROOT,
    ServiceError,
    ferretdb_command,
    kafka_command,
    pg_database,
    pg_tool,
    pg_user,
    postgres_command,
    s3_catalog_properties,
    trino_command,
)
from fraudlake.settings import FERRETDB_BACKENDS, DevServices, SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Server:
    """Where one server lives on this machine."""

    name: str  # "kafka", "mongo", "postgres" or "trino"
    port: int
    pid_file: Path
    log_file: Path

    @property
    def address(self) -> str:
        if self.name == "kafka":
            return f"{HOST}:{self.port}"
        if self.name == "postgres":
            return f"postgres://postgres@{HOST}:{self.port}/"
        if self.name == "trino":
            return f"http://{HOST}:{self.port}"
        return f"mongodb://{HOST}:{self.port}/"


@dataclass(frozen=True)
class Started:
    """Result of ``up``: the address, and whether this call started the process (vs reused it)."""

    server: Server
    started: bool
    pid: int | None


#: server name → (its folder under the cache and file prefix, the ``DevServices`` port field)
_FILES: dict[str, tuple[str, str]] = {"kafka": ("kafka", "kafka_port"),
                                      "mongo": ("ferretdb", "mongo_port"),
                                      "postgres": ("postgres", "postgres_port"),
                                      "trino": ("trino", "trino_port")}


def _server(name: str, port: int | None) -> Server:
    """``name``'s server on ``port`` (default: its ``FRAUDLAKE_*_PORT``), files named for it."""
    folder, port_field = _FILES[name]
    port = port or getattr(DevServices.from_env(), port_field)
    d = CACHE_DIR / folder
    return Server(name, port, d / f"{folder}-{port}.pid", d / f"{folder}-{port}.log")


def kafka_server(port: int | None = None) -> Server:
    return _server("kafka", port)


def mongo_server(port: int | None = None) -> Server:
    return _server("mongo", port)


def postgres_server(port: int | None = None) -> Server:
    return _server("postgres", port)


def trino_server(port: int | None = None) -> Server:
    return _server("trino", port)


def trino_root() -> Path:
    """The local lake Trino's ``hive`` catalog serves (``local:///x`` = ``<root>/x``)."""
    return (DevServices.from_env().trino_root or ROOT / "storage").resolve()


def _trino_s3() -> dict[str, object] | None:
    """The ``s3`` catalog's settings from the env, or None when no endpoint is set."""
    dev = DevServices.from_env()
    if not dev.trino_s3_endpoint:
        return None
    return s3_catalog_properties(dev.trino_s3_endpoint, dev.aws_region, dev.aws_access_key_id,
                                 dev.aws_secret_access_key, trino_root())


BACKENDS = FERRETDB_BACKENDS


def ferretdb_backend() -> str:
    """FerretDB's storage: env FRAUDLAKE_FERRETDB_BACKEND, sqlite (default) or postgresql."""
    try:
        return DevServices.from_env().ferretdb_backend
    except SettingsError as exc:
        raise ServiceError(str(exc)) from None


# --- readiness -------------------------------------------------------------------------------

def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_ready(server: Server, timeout: float = 5.0) -> bool:
    """True when the server answers a real request (Kafka metadata / Mongo ping)."""
    if not _port_open(server.port):
        return False
    try:
        if server.name == "postgres":
            return subprocess.run([str(pg_tool("pg_isready")), "-q", "-h", HOST,
                                   "-p", str(server.port), "-t", str(max(1, int(timeout)))],
                                  check=False, capture_output=True).returncode == 0
        if server.name == "trino":
            return _trino_started(server, timeout)
        if server.name == "kafka":
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": server.address, "log_level": 0})
            admin.list_topics(timeout=timeout)
        else:
            from pymongo import MongoClient

            ms = int(timeout * 1000)
            client: MongoClient[dict[str, Any]] = MongoClient(server.address,
                                                              serverSelectionTimeoutMS=ms)
            with client:
                client.admin.command("ping")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


def _trino_started(server: Server, timeout: float) -> bool:
    """Trino answers ``/v1/info`` with ``"starting": false`` once it takes queries."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.address}/v1/info", timeout=timeout) as resp:
        return json.load(resp).get("starting") is False


# --- start / stop ----------------------------------------------------------------------------

@contextmanager
def _locked(server: Server) -> Iterator[None]:
    """One starter at a time per server (parallel test sessions on one machine)."""
    server.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(server.pid_file.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(server: Server, timeout: float = 120.0) -> Started:
    """Start the server unless one already answers on its port; wait until it is ready.

    FerretDB refuses to start when a database file in its data folder is broken (e.g. after a
    crash while a database was being created); the folder holds only dev/test data, so it is
    moved aside (``data-PORT.broken-TIME``) and the start retried once."""
    with _locked(server):
        if is_ready(server):
            return Started(server, started=False, pid=_read_pid(server))
        if _port_open(server.port):
            raise ServiceError(f"{server.name}: port {server.port} is taken by something that "
                               "does not answer like the server; set the port by env")
        try:
            return _start(server, timeout)
        except ServiceError:
            data = server.pid_file.parent / f"data-{server.port}"
            if server.name != "mongo" or ferretdb_backend() != "sqlite" or not data.exists():
                raise
            aside = data.with_name(f"{data.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
            data.rename(aside)
            log.warning("services: FerretDB did not start; moved its data to %s, retrying", aside)
            return _start(server, timeout)


def _command(server: Server) -> list[str]:
    """The server's argv; FerretDB on PostgreSQL starts (or reuses) PostgreSQL first."""
    base = server.pid_file.parent
    data = base / f"data-{server.port}"
    if server.name == "kafka":
        return kafka_command(server.port, base)
    if server.name == "postgres":
        return postgres_command(server.port, data)
    if server.name == "trino":
        return trino_command(server.port, base, trino_root(), _trino_s3())
    url = None
    if ferretdb_backend() == "postgresql":
        pg = postgres_server()
        up(pg)
        url = f"{pg.address}{pg_database(pg.port, f'ferretdb_{server.port}')}"
    return ferretdb_command(server.port, data, url)


def _start(server: Server, timeout: float) -> Started:
    cmd = _command(server)
    user = pg_user() if server.name == "postgres" else {}
    with open(server.log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, **user)
    server.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{server.name} exited with code {proc.returncode} at start; "
                               f"log: {server.log_file}\n{_tail(server.log_file)}")
        if is_ready(server, timeout=2.0):
            return Started(server, started=True, pid=proc.pid)
        time.sleep(0.5)
    _signal_group(proc.pid, signal.SIGKILL)
    raise ServiceError(f"{server.name} not ready on port {server.port} after {timeout:.0f}s; "
                       f"log: {server.log_file}\n{_tail(server.log_file)}")


def down(server: Server, timeout: float = 30.0) -> bool:
    """Stop the server this project started (from its pid file). True if one was stopped."""
    pid = _read_pid(server)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (_alive(pid) or _group_alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the whole group: Trino's launcher may end before its JVM
    if _alive(pid) or _group_alive(pid):
        _signal_group(pid, signal.SIGKILL)
    server.pid_file.unlink(missing_ok=True)
    return True


def _read_pid(server: Server) -> int | None:
    try:
        pid = int(server.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is left in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: pgid == pid
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- CLI -------------------------------------------------------------------------------------

def servers(which: str, action: str = "status") -> list[Server]:
    """The servers behind a CLI name; with the postgresql backend, mongo includes PostgreSQL
    (after FerretDB, so ``down`` stops FerretDB first). ``up all`` starts Kafka and MongoDB;
    Trino (2 GB heap) only on ``up trino``; ``down all`` and ``status all`` include it."""
    mongo = [mongo_server()]
    if ferretdb_backend() == "postgresql":
        mongo.append(postgres_server())
    every = [kafka_server(), *mongo] + ([] if action == "up" else [trino_server()])
    return {"kafka": [kafka_server()], "mongo": mongo, "trino": [trino_server()],
            "all": every}[which]


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m fraudlake.services", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"),
                        help="up: fetch/build if needed, start, wait until ready; down: stop what "
                             "this project started; status: say what answers")
    parser.add_argument("which", nargs="?", default="all",
                        choices=("kafka", "mongo", "trino", "all"),
                        help="which server (default all). Ports: env FRAUDLAKE_KAFKA_PORT "
                             "(9092; controller = port+1) and FRAUDLAKE_MONGO_PORT (27017). "
                             "FerretDB's storage: env FRAUDLAKE_FERRETDB_BACKEND=sqlite "
                             "(default) or postgresql (a private PostgreSQL on "
                             "FRAUDLAKE_POSTGRES_PORT, 55432, started and stopped with mongo). "
                             "Trino: FRAUDLAKE_TRINO_PORT (8080), FRAUDLAKE_TRINO_ROOT (the lake "
                             "its hive catalog serves, default storage/), "
                             "FRAUDLAKE_TRINO_S3_ENDPOINT (adds catalog s3); up all = kafka + "
                             "mongo")
    parser.add_argument("--timeout", type=positive_float_arg, default=120.0,
                        help="seconds to wait for readiness (default 120)")
    args = parser.parse_args(argv)
    DevServices.from_env()  # a bad port or backend: one line naming the variable, exit 2
    try:
        chosen = servers(args.which, args.action)
    except ServiceError as exc:
        raise UsageError(str(exc)) from None
    for server in chosen:
        if args.action == "up":
            try:
                res = up(server, timeout=args.timeout)
            except ServiceError as exc:
                raise EnvironmentFailure(str(exc)) from None
            how = "started" if res.started else "already running"
            print(f"{server.name}: {how} at {server.address} (log {server.log_file})")
        elif args.action == "down":
            stopped = down(server)
            print(f"{server.name}: {'stopped' if stopped else 'not started by this project'}")
        else:
            state = "ready" if is_ready(server) else "not answering"
            pid = _read_pid(server)
            print(f"{server.name}: {state} at {server.address}"
                  + (f" (pid {pid}, log {server.log_file})" if pid else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
