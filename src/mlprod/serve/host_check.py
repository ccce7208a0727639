"""Refusing requests whose ``Host`` header names no address of this server (DNS rebinding).

A web page can make a browser send requests to ``127.0.0.1`` by pointing its own domain there
(``evil.example`` resolving to 127.0.0.1): the browser thinks it talks to ``evil.example``, so the
same-origin policy lets the page read the answers. The ``Host`` header still says ``evil.example``,
so a server that only answers to its own names is out of reach. The names accepted: ``localhost``,
``127.0.0.1``, ``[::1]``, the address the server binds (for a wildcard bind such as ``0.0.0.0``,
this machine's host names and their addresses) and ``serve.allowed_hosts``; ``*`` there accepts
any. Checking costs a header scan and a set lookup per request, on bytes.

Examples:
    >>> sorted(allowed_host_names("127.0.0.1", ""))
    ['127.0.0.1', '[::1]', 'localhost']
    >>> sorted(allowed_host_names("::1", "api.internal, Models.Example"))
    ['127.0.0.1', '[::1]', 'api.internal', 'localhost', 'models.example']
    >>> host_name(b"LocalHost:8000"), host_name(b"[::1]:80"), host_name(b"10.0.0.1")
    (b'localhost', b'[::1]', b'10.0.0.1')
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mlprod.errors import HostNotAllowedError
from mlprod.serve.http_errors import error_body, status_for

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ANY_HOST = "*"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")
_SHOWN_HOST_LENGTH = 100


def allowed_host_names(bound_host: str, configured: str) -> frozenset[str]:
    """The ``Host`` names a server bound to ``bound_host`` answers to (lower case, IPv6 in brackets)."""
    names = {*LOOPBACK_NAMES, *(n.strip().lower() for n in configured.split(",") if n.strip())}
    bound = bound_host.strip().lower()
    if bound in _WILDCARDS:
        names.update(_this_machine_names())
    else:
        names.add(_bracketed(bound))
    return frozenset(names)


def host_name(value: bytes) -> bytes:
    """A ``Host`` header value without its port, in lower case."""
    value = value.strip().lower()
    if value.startswith(b"["):
        return value[: value.find(b"]") + 1]
    return value.split(b":", 1)[0]


class HostCheck:
    """ASGI middleware answering 421 to HTTP requests whose ``Host`` is not in ``allowed``."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.any_host = ANY_HOST in allowed
        self.allowed = frozenset(name.encode() if name.isascii() else name.encode("idna") for name in allowed)
        self.shown = ", ".join(sorted(allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any_host or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((value for name, value in scope["headers"] if name == b"host"), None)
        if host is not None and host_name(host) in self.allowed:
            await self.app(scope, receive, send)
            return
        await self._refuse(send, host)

    async def _refuse(self, send: Send, host: bytes | None) -> None:
        if host is None:
            problem = "the request has no Host header"
        else:
            shown = host.decode("latin-1")[:_SHOWN_HOST_LENGTH]
            problem = f"the Host header {shown!r} names no address of this server"
        error = HostNotAllowedError(
            f"{problem}: it answers to {self.shown}; if clients reach it by another name, "
            "add that name to serve.allowed_hosts"
        )
        status, code = status_for(error)
        body = json.dumps(error_body(code, str(error))).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _this_machine_names() -> set[str]:
    """This machine's host names and the addresses they resolve to (what remote clients may use)."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        names.update(_bracketed(str(info[4][0]).lower()) for info in infos)
    return {n for n in names if n}
