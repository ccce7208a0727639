"""Running the ASGI app with uvicorn: in the foreground (``mlprod serve``) or on a background thread
bound to a free loopback port (the demo and the tests talk to it over real HTTP)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from types import FrameType, TracebackType

import uvicorn
from fastapi import FastAPI

from mlprod.errors import MlprodError

_STARTUP_TIMEOUT_SECONDS = 30.0


def serve_forever(app: FastAPI, *, listener: socket.socket, keep_logging: bool = False) -> None:
    """Serve on ``listener`` (from ``listen``) until SIGINT or SIGTERM, then return normally; the
    app's shutdown flushes the prediction log.

    ``keep_logging`` leaves the logging set up by the caller (JSON logs) instead of uvicorn's own.
    """
    _ForegroundServer(_config(app, keep_logging=keep_logging)).run(sockets=[listener])


def url_of(listener: socket.socket) -> str:
    """``http://host:port`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _ForegroundServer(uvicorn.Server):
    """uvicorn re-raises the stop signal once its graceful shutdown is over, so SIGTERM's default
    action would end the process before the caller could report what was flushed; this server
    forgets the signal instead (the shutdown it asked for has happened)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if captured:
            captured.clear()


class BackgroundServer:
    """Serve ``app`` on a uvicorn thread; ``url`` is known once started.

    Examples:
        >>> from fastapi import FastAPI
        >>> import httpx
        >>> app = FastAPI()
        >>> _ = app.get("/ping")(lambda: {"pong": True})
        >>> with BackgroundServer(app) as server:
        ...     httpx.get(server.url + "/ping").json()
        {'pong': True}
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = listen(host, port)
        self.url = url_of(self._socket)
        self._server = uvicorn.Server(_config(app))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="mlprod-server", daemon=True
        )

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise MlprodError(f"the prediction server at {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Graceful shutdown: finish in-flight requests, run the app's shutdown, join the thread."""
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _config(app: FastAPI, *, keep_logging: bool = False) -> uvicorn.Config:
    if keep_logging:
        return uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")


def listen(host: str, port: int) -> socket.socket:
    """A socket bound and listening on ``host:port`` (``port`` 0: a free one, see ``url_of``).

    Binding before anything is announced lets a taken port fail with a clear error, and lets the
    caller print the port actually bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise MlprodError(
                f"cannot listen on {host}:{port}: the port is already in use (another server?); "
                "choose another with --port, or --port 0 for a free one"
            ) from exc
        raise MlprodError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
