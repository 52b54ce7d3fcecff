"""Render a running dashboard in headless Chromium and keep a screenshot.

    .venv/bin/python scripts/dashboard_screenshot.py http://127.0.0.1:8501 OUT.png

Waits for the page's metrics (Streamlit's ``stMetric`` elements) to appear, fails when the page
shows a Python exception, and writes a full-page screenshot. Debian's chromium at
/usr/bin/chromium, driven by Playwright. Prints one JSON line; exit 1 when the page did not
render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


def render(url: str, out: Path, timeout_ms: int = 90_000) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
            page.get_by_test_id("stMetric").first.wait_for(timeout=timeout_ms)
            try:  # let the first run finish (Streamlit's "Running..." widget goes away)
                page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=30_000)
            except PlaywrightTimeout:
                pass  # a page that keeps refreshing is still a rendered page
            page.wait_for_timeout(1_000)
            errors = page.get_by_test_id("stException").count()
            metrics = page.get_by_test_id("stMetric").all_inner_texts()
            title = page.title()
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return {"url": url, "title": title, "metrics": [m.replace("\n", " ") for m in metrics],
            "exceptions": errors, "screenshot": str(out), "bytes": out.stat().st_size,
            "ok": errors == 0 and bool(metrics) and out.stat().st_size > 10_000}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: dashboard_screenshot.py URL OUT.png", file=sys.stderr)
        return 2
    try:
        result = render(args[0], Path(args[1]))
    except Exception as exc:  # one line for the calling script
        print(f"dashboard_screenshot: {type(exc).__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
