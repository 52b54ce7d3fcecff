"""Every writer on a full disk and on a read-only folder: exit 1, ONE line on stderr naming the
path and the OS error, no traceback, nothing left behind (no temp file, no partial output) and
the previous output intact.

The targets are small tmpfs mounts (``mount -t tmpfs -o size=…``), filled up to a few KiB with a
filler file for "full", remounted ``ro`` for "read-only"; the test needs root (skipped
otherwise). Each case runs ``python -m <module>`` in a subprocess, on a small thread pool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
from tests.reliability._bad_data import lake_with  # noqa: E402
from tests.reliability.test_cli_fuzz import message_lines  # noqa: E402
from tests.streaming._kafka_data import make_events  # noqa: E402

SERVICE_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "MONGO_URI", "LAKE_DIR", "HISTORY_DIR",
               "LOCAL_FLAGS_PATH", "DASHBOARD_CACHE_DIR", "CONSUMER_METRICS")
OLD = b"previous output\n"


@dataclass(frozen=True)
class Writer:
    name: str
    argv: tuple[str, ...]  # "{T}" = the mount, "{I}" = the inputs folder
    old: str | None = None  # a file under the mount that exists before and must stay intact
    lake: bool = False  # the mount holds a compactable lake (lake.compact)
    atomic: bool = True  # False: the demo writes as it goes (and resets its outputs each run)
    free_kib: int = 2  # what "full" leaves free


WRITERS = [
    # room for generate's up-front lower bound (25 B/row), not for the data: the disk fills
    # up in a writer thread
    Writer("generate", ("batch.generate_history", "--rows", "30000", "--workers", "2",
                        "--out", "{T}/h", "--quiet"), free_kib=800),
    Writer("backtest-flags", ("batch.backtest", "--input", "{I}/events.parquet", "--quiet",
                              "--flags-out", "{T}/f.parquet"), old="f.parquet"),
    Writer("backtest-report", ("batch.backtest", "--input", "{I}/events.parquet", "--quiet",
                               "--report", "{T}/r.json"), old="r.json"),
    Writer("replay", ("streaming.replay", "--input", "{I}/events.parquet", "--quiet",
                      "--flags-out", "{T}/f.parquet"), old="f.parquet"),
    Writer("replay-csv", ("streaming.replay", "--input", "{I}/events.parquet", "--quiet",
                          "--flags-out", "{T}/f.csv"), old="f.csv"),
    Writer("queries", ("queries", "flags", "--input", "{I}/events.parquet", "--format", "csv",
                       "--out", "{T}/q.csv"), old="q.csv"),
    Writer("export", ("lake.export", "--source", "local", "--filtered-dir", "{T}/f",
                      "--exported-dir", "{T}/e")),
    Writer("baseline", ("dashboard.baseline", "--history-dir", "{I}/h", "--cache-dir", "{T}/c")),
    Writer("demo", ("streaming.demo", "--count", "3000", "--users", "300", "--quiet",
                    "--lake", "{T}/lake", "--flags-db", "{T}/flags.sqlite"), atomic=False),
    Writer("compact", ("lake.compact", "--lake", "{T}", "--min-files", "2"), lake=True),
]
MODES = ("full", "ro")
REASON = {"full": "No space left on device", "ro": "Read-only file system"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """events.parquet (3,000 events), a one-month hive history h/, a local flag store."""
    folder = tmp_path_factory.mktemp("inputs")
    events = make_events(3000, users=200)
    events.write_parquet(folder / "events.parquet")
    (folder / "h" / "year=2024" / "month=01").mkdir(parents=True)
    events.write_parquet(folder / "h" / "year=2024" / "month=01" / "part-0.parquet")
    proc = subprocess.run([sys.executable, "-m", "streaming.demo", "--count", "3000", "--users",
                           "300", "--quiet", "--lake", str(folder / "demo-lake"), "--flags-db",
                           str(folder / "flags.sqlite")], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return folder


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _mount(target: Path, size_kib: int) -> None:
    target.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(target)],
                   check=True, capture_output=True)


def _umount(target: Path) -> None:
    for _ in range(2):  # the read-only bind mount, then the tmpfs below it
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _prepare(w: Writer, mode: str, target: Path, inputs: Path) -> None:
    """The mount with the old output (and the lake), then full or read-only."""
    _mount(target, 1024)
    if w.old:
        (target / w.old).write_bytes(OLD)
    if w.lake:
        shutil.copytree(lake_with(target.parent / f"{target.name}-lake", None, files=6)
                        / "transactions", target / "transactions")
        for p in (target / "transactions").rglob("*"):
            os.utime(p, (1e9, 1e9))
    if mode == "full":
        free = shutil.disk_usage(target).free
        with open(target / ".filler", "wb") as fh:
            fh.write(b"\0" * max(0, free - w.free_kib * 1024))
    else:
        _read_only(target)


def _read_only(target: Path) -> None:
    """Make ``target`` read-only: a read-only bind mount over the tmpfs (a per-mount flag, so it
    cannot fail as "busy" the way a superblock ``remount,ro`` sometimes does)."""
    subprocess.run(["mount", "--bind", str(target), str(target)], check=True,
                   capture_output=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True,
                   capture_output=True)


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and p.name != ".filler"
                                         else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, inputs) -> dict[str, tuple[int, str, dict, dict]]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount tmpfs")
    base = tmp_path_factory.mktemp("disk")
    mounts: list[Path] = []

    def one(w: Writer, mode: str):
        target = base / f"{w.name}-{mode}"
        mounts.append(target)
        _prepare(w, mode, target, inputs)
        before = _snapshot(target)
        argv = [a.replace("{T}", str(target)).replace("{I}", str(inputs)) for a in w.argv]
        proc = subprocess.run([sys.executable, "-m", *argv], cwd=inputs,
                              env=_env(LOCAL_FLAGS_PATH=str(inputs / "flags.sqlite")),
                              capture_output=True, text=True, timeout=600)
        return f"{w.name}-{mode}", (proc.returncode, proc.stderr, before, _snapshot(target))

    try:
        with ThreadPoolExecutor(4) as pool:
            return dict(pool.map(lambda a: one(*a), [(w, m) for w in WRITERS for m in MODES]))
    finally:
        for target in mounts:
            _umount(target)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("w", WRITERS, ids=[w.name for w in WRITERS])
def test_writer_fails_cleanly(w: Writer, mode: str, outcomes) -> None:
    code, stderr, before, after = outcomes[f"{w.name}-{mode}"]
    lines = message_lines(stderr)
    assert code == 1, stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert REASON[mode] in lines[0], lines[0]
    assert "/" in lines[0].split(REASON[mode])[0], f"no path named: {lines[0]}"
    assert after == before or not w.atomic, "left something behind or changed the old output"


def test_generate_refuses_a_disk_too_small_up_front(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount tmpfs")
    target = tmp_path / "small"
    _mount(target, 64)
    try:
        proc = subprocess.run([sys.executable, "-m", "batch.generate_history", "--rows", "1e5",
                               "--out", str(target / "h")], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        lines = message_lines(proc.stderr)
        assert len(lines) == 1 and "needs at least" in lines[0], proc.stderr
        assert list(target.iterdir()) == []
    finally:
        _umount(target)
