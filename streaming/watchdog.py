"""The watchdog around calls into librdkafka that may never return (an offset commit during a
broker restart, seen once): log it and end the process so a supervisor restarts the consumer."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Exit code when a call into librdkafka blocked past its watchdog (a supervisor restarts us).
EXIT_STUCK = 3


def commit_watchdog_seconds(retry_seconds: float) -> float:
    """How long one commit (with its retries) may block: the Kafka retry budget + 60 s, below
    ``max.poll.interval.ms`` (300 s) with the default budget of 120 s."""
    return retry_seconds + 60.0


@contextmanager
def watchdog(seconds: float, what: str, log: Callable[[str], None],
             on_expiry: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the block; if it is still running after ``seconds`` (a librdkafka call that never
    returns, seen once during a broker restart), log it and end the process with
    ``EXIT_STUCK``. Exiting there is as safe as a kill -9: nothing after the last commit is
    lost, the restarted consumer replays it and both sinks are idempotent."""
    def expire() -> None:
        log(f"consume: {what} blocked for {seconds:.0f}s inside the Kafka client; exiting "
            f"(code {EXIT_STUCK}) so a restart resumes from the last commit")
        (on_expiry or (lambda: os._exit(EXIT_STUCK)))()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
