"""librdkafka's log through Python logging, rate-limited; the metadata probe's two outcomes."""

from __future__ import annotations

import logging

import pytest

from fraudlake.cli import EnvironmentFailure, UsageError
from streaming.kafka_io import (
    KAFKA_LOGGER,
    _RateLimit,
    check_kafka,
    consumer_config,
    producer_config,
)


def _record(facility: str) -> logging.LogRecord:
    return logging.LogRecord("librdkafka", logging.ERROR, __file__, 1, "%s [%s] %s",
                             (facility, "rdkafka#producer-1", "Connect failed"), None)


def test_one_line_per_facility_per_period() -> None:
    limit = _RateLimit(60.0)
    passed = [limit.filter(_record(f)) for f in ("FAIL", "FAIL", "FAIL", "REQTMOUT", "FAIL")]
    assert passed == [True, False, False, True, False]
    assert _RateLimit(0.0).filter(_record("FAIL")) and _RateLimit(0.0).filter(_record("FAIL"))


def test_every_client_logs_through_python_logging() -> None:
    assert producer_config("h:1")["logger"] is KAFKA_LOGGER
    assert consumer_config("h:1", "g")["logger"] is KAFKA_LOGGER
    assert any(isinstance(f, _RateLimit) for f in KAFKA_LOGGER.filters)


def test_probe_bad_setting_is_usage_error() -> None:
    with pytest.raises(UsageError, match="security.protocol"):
        check_kafka("127.0.0.1:1", {"security.protocol": "bogus"}, timeout=1)


def test_probe_unreachable_is_environment_failure_within_timeout() -> None:
    import time

    t0 = time.monotonic()
    with pytest.raises(EnvironmentFailure, match="cannot reach Kafka at 127.0.0.1:1"):
        check_kafka("127.0.0.1:1", {}, timeout=1.5)
    assert time.monotonic() - t0 < 10
