import io
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from mlprod.errors import InvalidInputError
from mlprod.serve.json_logs import LOGGERS, JsonFormatter, configure_json_logging

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """configure_json_logging changes process-wide loggers: give the other tests theirs back."""
    loggers = [logging.getLogger(name) for name in (*LOGGERS, "uvicorn.error", "uvicorn.asgi")]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line must be one strict JSON object (no NaN/Infinity, which JavaScript cannot read)."""

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line, parse_constant=reject) for line in text.splitlines()]


def test_each_record_is_one_json_line_with_the_core_fields() -> None:
    out = io.StringIO()
    configure_json_logging("INFO", stream=out)
    before = datetime.now(UTC)
    logging.getLogger("mlprod.serve.app").info("served %d rows\nin two lines", 3)
    logging.getLogger("mlprod").warning("disk almost full")
    logging.getLogger("mlprod.serve.app").debug("not shown at INFO")
    first, second = lines(out)
    assert first == {
        "time": first["time"],
        "level": "INFO",
        "logger": "mlprod.serve.app",
        "message": "served 3 rows\nin two lines",
    }
    assert TIME.fullmatch(first["time"])
    logged = datetime.fromisoformat(first["time"])
    assert logged.utcoffset() is not None
    assert abs((logged - before).total_seconds()) < 5
    assert second["level"] == "WARNING"
    assert second["logger"] == "mlprod"


def test_extra_fields_are_included_and_non_json_values_become_strings() -> None:
    out = io.StringIO()
    configure_json_logging(stream=out)
    logging.getLogger("mlprod.serve").info(
        "predicted",
        extra={
            "request_id": "r-1",
            "model": "flights",
            "version": 3,
            "latency_ms": 1.25,
            "ok": True,
            "nothing": None,
            "path": Path("/tmp/x"),
            "amount": Decimal("1.10"),
            "nested": {"rows": [1, 2], "when": datetime(2024, 1, 2, tzinfo=UTC)},
        },
    )
    (entry,) = lines(out)
    assert entry["request_id"] == "r-1"
    assert entry["model"] == "flights"
    assert entry["version"] == 3
    assert entry["latency_ms"] == 1.25
    assert entry["ok"] is True
    assert entry["nothing"] is None
    assert entry["path"] == "/tmp/x"
    assert entry["amount"] == "1.10"
    assert entry["nested"] == {"rows": [1, 2], "when": "2024-01-02 00:00:00+00:00"}


def test_values_strict_json_cannot_hold_are_still_written() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    out = io.StringIO()
    configure_json_logging(stream=out)
    logging.getLogger("mlprod").info(
        "odd values",
        extra={"ratio": float("nan"), "big": float("inf"), "by_id": {1: "a"}, "thing": Unprintable()},
    )
    (entry,) = lines(out)
    assert entry["ratio"] == "nan"
    assert entry["big"] == "inf"
    assert entry["by_id"] == {"1": "a"}
    assert entry["thing"] == "<unprintable Unprintable>"


def test_an_extra_named_like_a_core_field_does_not_overwrite_it() -> None:
    out = io.StringIO()
    configure_json_logging(stream=out)
    logging.getLogger("mlprod").info("hello", extra={"level": "custom", "time": "yesterday", "logger": "x"})
    (entry,) = lines(out)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "mlprod"
    assert TIME.fullmatch(entry["time"])
    assert (entry["extra_level"], entry["extra_time"], entry["extra_logger"]) == ("custom", "yesterday", "x")


def test_exceptions_and_stacks_are_included() -> None:
    out = io.StringIO()
    configure_json_logging(stream=out)
    log = logging.getLogger("mlprod.serve")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("prediction failed", extra={"request_id": "r-2"})
    log.info("where am I", stack_info=True)
    failed, located = lines(out)
    assert failed["level"] == "ERROR"
    assert failed["message"] == "prediction failed"
    assert failed["request_id"] == "r-2"
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert failed["exception"].endswith("ZeroDivisionError: division by zero")
    assert "exception" not in located
    assert located["stack"].startswith("Stack (most recent call last):")


def test_configuring_twice_does_not_duplicate_lines_and_the_last_stream_wins() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_json_logging("INFO", stream=first)
    configure_json_logging("DEBUG", stream=second)
    logging.getLogger("mlprod.x").debug("once")
    logging.getLogger("uvicorn.error").info("once too")
    assert first.getvalue() == ""
    assert [e["message"] for e in lines(second)] == ["once", "once too"]
    for name in LOGGERS:
        logger = logging.getLogger(name)
        assert len(logger.handlers) == 1, name
        assert isinstance(logger.handlers[0].formatter, JsonFormatter)
        assert logger.propagate is False
    assert logging.getLogger("uvicorn.error").handlers == []


def test_records_are_not_repeated_by_the_root_logger() -> None:
    root_out = io.StringIO()
    root_handler = logging.StreamHandler(root_out)
    logging.getLogger().addHandler(root_handler)
    try:
        out = io.StringIO()
        configure_json_logging(stream=out)
        logging.getLogger("mlprod").warning("only as JSON")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert root_out.getvalue() == ""
    assert len(lines(out)) == 1


def test_the_default_stream_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_json_logging()
    assert logging.getLogger("mlprod").handlers[0].stream is sys.stderr  # type: ignore[attr-defined]
    logging.getLogger("mlprod").info("to stderr")
    assert json.loads(capsys.readouterr().err)["message"] == "to stderr"


def test_level_is_case_insensitive() -> None:
    out = io.StringIO()
    configure_json_logging("warning", stream=out)
    logging.getLogger("mlprod").info("hidden")
    logging.getLogger("mlprod").warning("shown")
    assert [e["message"] for e in lines(out)] == ["shown"]


@pytest.mark.parametrize("level", ["LOUD", "", "20"])
def test_an_unknown_level_is_rejected(level: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        configure_json_logging(level)
    assert str(info.value) == (
        f"log level must be one of CRITICAL, ERROR, WARNING, INFO, DEBUG (any case), got {level!r}"
    )


def test_it_takes_over_the_text_handlers_uvicorn_installs() -> None:
    uvicorn.Config(FastAPI())  # the default log_config installs uvicorn's coloured text handlers
    assert logging.getLogger("uvicorn").handlers
    out = io.StringIO()
    configure_json_logging(stream=out)
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 1, extra={"color_message": "\x1b[1m"}
    )
    (entry,) = lines(out)
    assert entry["logger"] == "uvicorn.error"
    assert entry["message"] == "Started server process [1]"
    assert "color_message" not in entry


def test_a_real_uvicorn_server_writes_json_access_and_server_lines() -> None:
    out = io.StringIO()
    configure_json_logging("INFO", stream=out)
    app = FastAPI()
    app.get("/ping")(lambda: {"pong": True})
    config = uvicorn.Config(app, log_config=None, log_level="info", access_log=True, lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        assert httpx.get(f"http://127.0.0.1:{port}/ping?x=1").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/missing").status_code == 404
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

    entries = lines(out)
    access = [e for e in entries if e["logger"] == "uvicorn.access"]
    assert [(e["method"], e["path"], e["status"], e["http_version"]) for e in access] == [
        ("GET", "/ping?x=1", 200, "1.1"),
        ("GET", "/missing", 404, "1.1"),
    ]
    assert access[0]["client"].startswith("127.0.0.1:")
    assert access[0]["message"].endswith('"GET /ping?x=1 HTTP/1.1" 200')
    assert any(
        e["logger"] == "uvicorn.error" and e["message"].startswith("Started server process") for e in entries
    )
    assert all("color_message" not in e for e in entries)
