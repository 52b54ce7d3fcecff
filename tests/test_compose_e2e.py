"""The compose stack brought up for real: scripts/compose-e2e.sh, run as part of the suite.

The script builds the images (a local Debian base, the project's image, test images of Kafka and
FerretDB), starts docker-compose.prod.yml with docker-compose.e2e.yml, checks health, the
dashboard in Chromium, scale-out, a killed consumer, the lake against the topic, the flags against
a backtest and a history job, then `down -v` and stops the engine it started. Here we run it and
read the summary it leaves in test-output/compose/. Needs root (a private dockerd) unless a Docker
engine already answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-output" / "compose"


def _engine_answers() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True,
                                           timeout=20).returncode == 0


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not _engine_answers(),
    reason="no Docker engine answers and a private dockerd needs root")


def _host_network_state() -> tuple[bool, str, str]:
    """docker0 present?, Docker's iptables chains, mounts of the private engine."""
    docker0 = subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode == 0
    chains = " ".join(ln for ln in subprocess.run(["iptables", "-S"], capture_output=True,
                                                  text=True).stdout.splitlines()
                      if "DOCKER" in ln)
    mounts = " ".join(ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                      if "/fraudlake-docker/" in ln or "/fraudlake/docker/" in ln)
    return docker0, chains, mounts


@pytest.mark.timeout(1200)
def test_compose_stack_end_to_end() -> None:
    private_engine = not _engine_answers()
    env = {**os.environ, "FRAUDLAKE_E2E_ARTIFACTS": str(ARTIFACTS)}
    proc = subprocess.run([str(ROOT / "scripts" / "compose-e2e.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1150)
    assert proc.returncode == 0, proc.stderr[-6000:]
    summary = json.loads((ARTIFACTS / "summary.json").read_text())
    verify = summary["verify"]
    assert verify["ok"] and verify["sent"] > 0
    assert verify["lost"] == verify["duplicated"] == verify["unexpected"] == 0
    assert verify["mongo_flags"] == verify["backtest_flagged"] > 0
    assert verify["flags_missing"] == verify["flags_extra"] == 0
    assert len(summary["scaled_group"]["members"]) == 3
    after = summary["after_kill_group"]["members"]
    before_ids = {m["id"] for m in summary["scaled_group"]["members"]}
    assert sorted(p for m in after for p in m["partitions"]) == list(range(6))
    assert len(before_ids - {m["id"] for m in after}) >= 1  # the killed member is gone
    assert summary["history"]["rows"] > 0
    assert Path(summary["screenshot"]).stat().st_size > 10_000
    if private_engine:  # the script started dockerd: it must have left nothing behind
        assert _host_network_state() == (False, "", "")
