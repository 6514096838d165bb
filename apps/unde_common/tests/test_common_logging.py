from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from unde_common.logging import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging("scraper", "DEBUG", stream=buf)
    yield buf
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_one_json_object_per_line_with_extras(stream: io.StringIO) -> None:
    log = logging.getLogger("scraper.tasks")
    log.info("poll %s done", "availability", extra={"stores": 4, "token": SecretStr("x"), "ids": {2, 1}})
    log.debug("multi\nline message")
    records = lines(stream)
    assert len(records) == 2
    first = records[0]
    assert first["level"] == "INFO" and first["logger"] == "scraper.tasks" and first["app"] == "scraper"
    assert first["msg"] == "poll availability done"
    assert first["stores"] == 4 and first["token"] == "**********" and first["ids"] == [1, 2]
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert records[1]["msg"] == "multi\nline message"


def test_exception_text(stream: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("it failed")
    (record,) = lines(stream)
    assert record["level"] == "ERROR" and record["exc_type"] == "ValueError"
    assert "Traceback" in record["exc"] and "ValueError: boom" in record["exc"]


def test_level_filter_and_idempotent(stream: io.StringIO) -> None:
    configure_logging("scraper", "WARNING", stream=stream)
    configure_logging("scraper", "WARNING", stream=stream)
    logging.getLogger("a").info("hidden")
    logging.getLogger("a").warning("shown")
    assert [r["msg"] for r in lines(stream)] == ["shown"]


def test_library_loggers_and_warnings_go_through_json(stream: io.StringIO) -> None:
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(logging.StreamHandler(io.StringIO()))
    configure_logging("scraper", "INFO", stream=stream)
    uvicorn_log.info("started")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    records = lines(stream)
    assert records[0]["logger"] == "uvicorn.error" and records[0]["msg"] == "started"
    assert records[1]["logger"] == "py.warnings" and "deprecated thing" in records[1]["msg"]
