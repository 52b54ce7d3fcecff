"""The commit watchdog: a call that never returns ends the process instead of hanging it."""

from __future__ import annotations

import threading

from streaming.watchdog import EXIT_STUCK, watchdog


def test_watchdog_fires_on_a_blocked_call_and_says_so() -> None:
    fired = threading.Event()
    lines: list[str] = []
    with watchdog(0.05, "offset commit", lines.append, on_expiry=fired.set):
        assert fired.wait(2.0)  # the block is "stuck" until the watchdog fires
    assert len(lines) == 1
    assert "offset commit blocked" in lines[0] and f"code {EXIT_STUCK}" in lines[0]


def test_watchdog_stays_quiet_for_a_call_that_returns() -> None:
    fired = threading.Event()
    lines: list[str] = []
    with watchdog(0.2, "offset commit", lines.append, on_expiry=fired.set):
        pass
    assert not fired.wait(0.4)  # twice the budget, and the watchdog never fires
    assert lines == []
