"""One ``python -m batch.backtest`` process under GNU time: what every backtest bench measures.

``run_backtest`` returns the wall and CPU seconds, the peak RSS, the load average before the
run, the process's stdout and its ``--report`` JSON; each bench shapes its own result row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TimedRun:
    wall_s: float
    cpu_s: float  # user + system, not rounded
    peak_rss_kib: int
    load_before: float  # 1-minute load average just before the start, rounded to 0.01
    report: dict
    stdout: str

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024


def run_backtest(argv: list[str], tmp: Path, label: str, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> TimedRun:
    """Run the backtest of the source tree ``cwd`` (e.g. an older version's, as a baseline)
    with ``argv`` + ``--quiet --report``; exits with the process's stderr when it fails."""
    report, stats = tmp / f"{label}.json", tmp / f"{label}.time"
    load = os.getloadavg()[0]
    cmd = ["/usr/bin/time", "-o", str(stats), "-f", "%e %U %S %M", sys.executable, "-m",
           "batch.backtest", *argv, "--quiet", "--report", str(report)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed:\n{proc.stderr[-2000:]}")
    wall, user, sys_, rss_kib = stats.read_text().split()[-4:]
    return TimedRun(wall_s=float(wall), cpu_s=float(user) + float(sys_),
                    peak_rss_kib=int(rss_kib), load_before=round(load, 2),
                    report=json.loads(report.read_text()), stdout=proc.stdout)
