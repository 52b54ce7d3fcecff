"""End to end in a real headless Chromium: `streamlit run` over a small world, then the page.

Needs Debian's chromium (``apt-get install -y chromium``) at /usr/bin/chromium; skipped
otherwise. The screenshot lands in ``test-output/dashboard/`` (and in tmp_path).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import tests.dashboard._dashdata as _dashdata

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian chromium at /usr/bin/chromium "
                                       "(apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit not healthy at {url} after {timeout}s")


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = _dashdata.build_world(tmp_path)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("MONGO_URI", "KAFKA_BOOTSTRAP_SERVERS")}
    full_env.update(env)
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def download_csv(page, target: Path, attempts: int = 4) -> None:
    """Click "Download CSV" until a download arrives: a refresh (run_every=1) that lands
    between rendering the button and the click replaces its file, and that click gets
    nothing (streamlit logs "Deferred file … not found"); the next click gets the new one."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        try:
            with page.expect_download(timeout=10_000) as dl:
                page.get_by_role("button", name="Download CSV").click()
            dl.value.save_as(target)
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def test_dashboard_in_chromium(app_url: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, env = app_url
    out_dir = ROOT / "test-output" / "dashboard"
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400},
                                    accept_downloads=True)
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("Latest flagged transactions").wait_for(timeout=60_000)
            metrics = page.get_by_test_id("stMetric")
            expect(metrics.filter(has_text="Flags in view")).to_contain_text("20",
                                                                            timeout=30_000)
            expect(metrics.filter(has_text="Events / min")).to_contain_text("1.0")
            expect(page.get_by_text("showing 20 of 20 matching flags")).to_be_visible()
            expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
            deadline = time.monotonic() + 2.5  # a few run_every=1 refreshes: checked all along
            while time.monotonic() < deadline:
                expect(page.get_by_text("showing 20 of 20 matching flags")).to_be_visible()
                page.wait_for_timeout(250)
            page.screenshot(path=str(out_dir / "dashboard.png"), full_page=True)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            target = tmp_path / "flags.csv"
            download_csv(page, target)
        finally:
            browser.close()
    csv = pl.read_csv(target, infer_schema=False)
    with sqlite3.connect(env["LOCAL_FLAGS_PATH"]) as conn:
        stored = {r[0] for r in conn.execute("SELECT transaction_id FROM flags")}
    assert csv.height == 20
    assert set(csv["transaction_id"]) == stored
    ts = csv["ts"].to_list()
    assert ts == sorted(ts, reverse=True)
    assert (out_dir / "dashboard.png").stat().st_size > 10_000
