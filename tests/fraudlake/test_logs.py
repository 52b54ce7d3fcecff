"""fraudlake.logs: one format on stderr; the project's loggers at --log-level, other
libraries only from WARNING up (unless DEBUG), even when they set their own logger's level."""

from __future__ import annotations

import logging
import re

import pytest

from fraudlake import logs


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(capsys) -> list[str]:
    chatty = logging.getLogger("somelib.client")
    chatty.setLevel(logging.INFO)  # as trino.client and werkzeug do
    logging.getLogger("streaming.consume_loop").info("ours at info")
    chatty.info("theirs at info")
    chatty.warning("theirs at warning")
    logging.getLogger("lake.sync").debug("ours at debug")
    return capsys.readouterr().err.strip().splitlines()


def test_info_shows_ours_and_only_warnings_of_other_libraries(capsys) -> None:
    logs.configure("INFO")
    lines = _emit(capsys)
    assert [line.split(": ", 1)[1] for line in lines] == ["ours at info", "theirs at warning"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO streaming\.consume_loop: ",
                    lines[0])


def test_debug_shows_everything(capsys) -> None:
    logs.configure("DEBUG")
    got = [line.split(": ", 1)[1] for line in _emit(capsys)]
    assert got == ["ours at info", "theirs at info", "theirs at warning", "ours at debug"]
