"""`python -m fraudlake.services … trino`: the cached server, its configuration, the CLI."""

from __future__ import annotations

import subprocess
import sys
import time

from fraudlake import server_builds, services


def test_status_says_ready_and_unpacking_is_cached(trino_uri):
    out = subprocess.run([sys.executable, "-m", "fraudlake.services", "status", "trino"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"trino: ready at {trino_uri}")
    t0 = time.perf_counter()
    home = server_builds.trino_home()  # already unpacked: no work
    assert time.perf_counter() - t0 < 0.5
    assert (home / ".complete").exists() and home.parent == server_builds.TRINO_CACHE
    assert (home / "plugin-hive" / "hive").resolve() == (home / "plugin" / "hive").resolve()
    assert not list(server_builds.TRINO_CACHE.glob(".unpack-*"))


def test_running_config_is_the_designed_one(trino_uri):
    server = services.trino_server()
    etc = server.pid_file.parent / f"etc-{server.port}"
    hive = dict(line.split("=", 1) for line in
                (etc / "catalog" / "hive.properties").read_text().splitlines())
    assert hive["hive.timestamp-precision"] == "MICROSECONDS"
    assert hive["hive.ignore-absent-partitions"] == "true"
    assert hive["local.location"] == str(services.trino_root())
    assert "-Duser.timezone=UTC" in (etc / "jvm.config").read_text().split()
    assert f"http-server.http.port={server.port}" in (etc / "config.properties").read_text()


def test_up_all_leaves_trino_out_but_down_and_status_include_it():
    assert "trino" not in [s.name for s in services.servers("all", "up")]
    assert "trino" in [s.name for s in services.servers("all", "down")]
    assert [s.name for s in services.servers("trino", "up")] == ["trino"]


def test_bad_trino_port_is_exit_2(monkeypatch):
    monkeypatch.setenv("FRAUDLAKE_TRINO_PORT", "80000")
    proc = subprocess.run([sys.executable, "-m", "fraudlake.services", "status", "trino"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "FRAUDLAKE_TRINO_PORT" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_java_home_falls_back_to_a_jdk_24_or_newer(monkeypatch, tmp_path):
    monkeypatch.setattr(server_builds, "TRINO_JAVA_HOME", tmp_path / "no-such-jdk")
    home = server_builds.trino_java_home()
    assert server_builds._java_version(home) >= server_builds.TRINO_MIN_JAVA


def test_s3_catalog_from_env_is_written_private(tmp_path, monkeypatch):
    """``up trino`` with FRAUDLAKE_TRINO_S3_ENDPOINT: an ``s3`` catalog beside ``hive``, its keys
    readable by the owner only (nothing is started here)."""
    monkeypatch.setenv("FRAUDLAKE_TRINO_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("FRAUDLAKE_TRINO_ROOT", str(tmp_path / "lake"))
    argv = server_builds.trino_command(18999, tmp_path / "base", services.trino_root(),
                                       services._trino_s3())
    s3 = tmp_path / "base" / "etc-18999" / "catalog" / "s3.properties"
    assert (s3.stat().st_mode & 0o777) == 0o600
    text = s3.read_text()
    assert "s3.endpoint=http://127.0.0.1:9" in text and "fs.native-s3.enabled=true" in text
    assert "not-a-real-secret" not in " ".join(argv)
    assert (tmp_path / "base" / "etc-18999" / "catalog" / "hive.properties").exists()
