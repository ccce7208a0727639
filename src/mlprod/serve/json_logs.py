"""Structured logs: one JSON object per line, for log shippers (Loki, Elasticsearch, CloudWatch …).

Each line carries ``time`` (ISO-8601 UTC, milliseconds), ``level``, ``logger`` and ``message``,
then every field passed with ``extra=`` (``request_id``, ``model`` …), then ``exception`` and
``stack`` when present. uvicorn's access lines also get ``client``, ``method``, ``path``,
``http_version`` and ``status`` fields, so they can be queried without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from mlprod.errors import InvalidInputError

CORE_FIELDS = ("time", "level", "logger", "message")
LOGGERS = ("mlprod", "uvicorn", "uvicorn.access")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# uvicorn adds "color_message", the message again with ANSI colours: noise in JSON.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON; values JSON cannot hold are written with ``str``.

    An ``extra`` field named like a core field (``time``, ``level``, ``logger``, ``message``) is
    kept under ``extra_<name>`` rather than overwriting it.

    Examples:
        >>> import logging
        >>> record = logging.LogRecord("mlprod.serve", logging.INFO, __file__, 1, "served %d rows", (3,), None)
        >>> record.created = 0.0
        >>> record.request_id = "r-1"
        >>> print(JsonFormatter().format(record))
        {"time": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "mlprod.serve", "message": "served 3 rows", "request_id": "r-1"}
    """  # noqa: E501

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as one line of JSON (newlines inside values are escaped)."""
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):  # e.g. Ray's _ray_timestamp_ns
                entry[f"extra_{key}" if key in CORE_FIELDS else key] = value
        if record.exc_info and not record.exc_text:  # cached on the record, as logging.Formatter does
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _dumps(entry)


def configure_json_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Log the ``mlprod`` and ``uvicorn`` loggers as JSON lines to ``stream`` (default: stderr).

    This takes the loggers over: their previous handlers are removed and they stop propagating to
    the root logger, so each record is written once, as JSON. Calling it again replaces the handler
    (no duplicate lines) and applies the new level and stream.

    uvicorn installs its own text handlers when a ``uvicorn.Config`` is built with its default
    ``log_config``; build it with ``log_config=None`` (or call this afterwards) to keep JSON.

    Call it once in the server's entry point, e.g. ``configure_json_logging("INFO")``.
    """
    name = str(level).upper()
    if name not in _LEVELS:
        raise InvalidInputError(f"log level must be one of {', '.join(_LEVELS)} (any case), got {level!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    for logger_name in LOGGERS:
        logger = logging.getLogger(logger_name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(name)
        logger.propagate = False
    # uvicorn's own messages go through "uvicorn.error": let them reach the "uvicorn" handler.
    error_logger = logging.getLogger("uvicorn.error")
    for old in list(error_logger.handlers):
        error_logger.removeHandler(old)
    error_logger.setLevel(logging.NOTSET)
    error_logger.propagate = True


def _iso_utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(entry: dict[str, Any]) -> str:
    try:
        return json.dumps(entry, default=str, allow_nan=False)
    except (TypeError, ValueError):  # non-string keys, NaN/Infinity, or a failing __str__
        return json.dumps(_jsonable(entry), default=_safe_str, allow_nan=False)


def _jsonable(value: Any) -> Any:
    """Rebuild ``value`` with string keys and finite floats, so strict JSON parsers accept it."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _safe_str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _safe_str(value)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a log line must never fail because of a field
        return f"<unprintable {type(value).__name__}>"
