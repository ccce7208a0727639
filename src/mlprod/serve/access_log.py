"""The access log (``mlprod serve --access-log PATH|-``): one JSON line per HTTP request.

Each line has ``time`` (ISO-8601 UTC, milliseconds, when the request arrived), ``method``, ``path``
(no query string), ``status``, ``duration_ms``, and for predictions ``model``, ``version`` and
``request_id`` (``null`` when the request did not reach a model). Bodies are never written.

It costs the hot path nothing when off (the middleware is not installed; the service's
``note_prediction`` reads one context variable) and little when on: the middleware appends a tuple
to a deque, and a background thread formats and writes the lines in batches, so the event loop
never waits on the file.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from mlprod.errors import InvalidInputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Entry = tuple[float, str, str, int | None, float, str | None, int | None, str | None]

STDOUT = "-"
WRITE_INTERVAL_SECONDS = 0.2
log = logging.getLogger(__name__)
_current: ContextVar[dict[str, Any] | None] = ContextVar("mlprod_access_log_entry", default=None)


def note_prediction(model: str, version: int, request_id: str) -> None:
    """Tell the access log which model version answered the current request (no-op when off)."""
    entry = _current.get()
    if entry is not None:
        entry["model"], entry["version"], entry["request_id"] = model, version, request_id


class AccessLogWriter:
    """Writes access-log entries as JSON lines to a file (appended) or stdout (``"-"``), in batches
    from a background thread; ``close()`` writes what is left.

    Examples:
        >>> import io
        >>> writer = AccessLogWriter(io.StringIO())
        >>> writer.record((0.0, "GET", "/v2/health/live", 200, 0.25, None, None, None))
        >>> writer.close()
        >>> print(writer.stream.getvalue(), end="")
        {"time": "1970-01-01T00:00:00.000Z", "method": "GET", "path": "/v2/health/live", "status": 200, "duration_ms": 0.25, "model": null, "version": null, "request_id": null}
    """  # noqa: E501

    def __init__(self, stream: TextIO, *, owns_stream: bool = False) -> None:
        self.stream = stream
        self._owns_stream = owns_stream
        self._entries: deque[Entry] = deque()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log-writer", daemon=True)
        self._failed = False

    @classmethod
    def open(cls, target: str) -> AccessLogWriter:
        """``"-"`` for stdout, else a file path appended to (refused at once when it cannot be)."""
        if target == STDOUT:
            return cls(sys.stdout)
        try:
            stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise InvalidInputError(f"cannot open the access log {target}: {exc.strerror}") from exc
        return cls(stream, owns_stream=True)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def record(self, entry: Entry) -> None:
        """Queue one request's entry (safe from any thread; never blocks on the file)."""
        self._entries.append(entry)

    def close(self) -> None:
        """Stop the background thread, write every queued entry, close the file (not stdout)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        self._write()
        if self._owns_stream:
            self.stream.close()

    def _run(self) -> None:
        while not self._closed.wait(WRITE_INTERVAL_SECONDS):
            self._write()

    def _write(self) -> None:
        lines = []
        while self._entries:
            lines.append(_line(self._entries.popleft()))
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError) as exc:  # disk full, closed stdout: serving goes on
            if not self._failed:
                log.error("access log: cannot write (%s); %d line(s) lost", exc, len(lines))
            self._failed = True
        else:
            self._failed = False


class AccessLogMiddleware:
    """ASGI middleware timing every HTTP request and handing its entry to an ``AccessLogWriter``."""

    def __init__(self, app: ASGIApp, writer: AccessLogWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived, started = time.time(), time.perf_counter()
        entry: dict[str, Any] = {}
        token = _current.set(entry)

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException:
            entry.setdefault("status", 500)  # the server's error middleware answers 500 outside us
            raise
        finally:
            _current.reset(token)
            self.writer.record(
                (
                    arrived,
                    scope["method"],
                    scope["path"],
                    entry.get("status"),
                    (time.perf_counter() - started) * 1000,
                    entry.get("model"),
                    entry.get("version"),
                    entry.get("request_id"),
                )
            )


def _line(entry: Entry) -> str:
    arrived, method, path, status, duration_ms, model, version, request_id = entry
    moment = datetime.fromtimestamp(arrived, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fields = {
        "time": moment,
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(duration_ms, 3),
        "model": model,
        "version": version,
        "request_id": request_id,
    }
    return json.dumps(fields) + "\n"
