"""An ASGI fast path for the predict endpoints: the hottest routes skip the framework.

FastAPI's routing, request object and exception middleware cost more per request than the model
does. This middleware answers ``POST /v1/models/{ref}/predict`` and
``POST /v1/models/{name}/versions/{v}/predict`` itself, and the Open Inference Protocol's
``POST /v2/models/{name}[/versions/{v}]/infer``, with exactly the answers (and error bodies) of the
FastAPI routes, which stay declared for the OpenAPI spec; every other request goes on to the app.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.models import parse_ref
from mlprod.serve.http_errors import error_body, status_for
from mlprod.serve.json_body import require_json
from mlprod.serve.native_predict import NativePredict
from mlprod.serve.protocol_infer import ProtocolInfer, protocol_error, versioned_target
from mlprod.serve.request_body import too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)
_PREFIX = "/v1/models/"
_SUFFIX = "/predict"
_V2_PREFIX = "/v2/models/"
_V2_SUFFIX = "/infer"


class PredictFastPath:
    """ASGI middleware; ``predictor`` is set once the app has built its service."""

    def __init__(
        self, app: ASGIApp, predictor: NativePredict, max_body: int, protocol: ProtocolInfer | None = None
    ) -> None:
        self.app = app
        self.predictor = predictor
        self.max_body = max_body
        self.protocol = protocol

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_predict(path):
            if self.protocol is not None and scope["type"] == "http" and _is_infer(scope["method"], path):
                await self._infer(scope, receive, send, path, self.protocol)
            else:
                await self.app(scope, receive, send)
            return
        try:
            target = _target(path[len(_PREFIX) : -len(_SUFFIX)])
            if target is None:  # not one of ours (e.g. a nested path): the app answers 404
                await self.app(scope, receive, send)
                return
            headers = _headers(scope)
            require_json(_text(headers.get(b"content-type")))
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                raise too_large(self.max_body)
            raw = await _read_body(receive, self.max_body)
            answer = await self.predictor.answer(
                target,
                raw,
                authorization=_text(headers.get(b"authorization")),
                route_key=_text(headers.get(b"x-route-key")),
            )
        except MlprodError as exc:
            status, code = status_for(exc)
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _respond(send, status, json.dumps(error_body(code, str(exc))).encode(), extra)
            return
        except Exception as exc:
            log.exception("internal error on POST %s", path)
            message = f"internal error: {type(exc).__name__}; see the server log"
            await _respond(send, 500, json.dumps(error_body("internal_error", message)).encode())
            return
        await _respond(send, 200, answer)

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, path: str, protocol: ProtocolInfer
    ) -> None:
        """The Open Inference Protocol's infer routes, answered in the protocol's error shape."""
        try:
            target = _infer_target(path[len(_V2_PREFIX) : -len(_V2_SUFFIX)])
            if target is None:  # not one of ours: the app answers 404
                await self.app(scope, receive, send)
                return
            headers = _headers(scope)

            async def read_body() -> bytes:  # after the token check, as the FastAPI route does
                declared = headers.get(b"content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                    raise too_large(self.max_body)
                return await _read_body(receive, self.max_body)

            answer = await protocol.answer(
                target,
                read_body,
                authorization=_text(headers.get(b"authorization")),
                route_key=_text(headers.get(b"x-route-key")),
                header_length=_text(headers.get(b"inference-header-content-length")),
                content_type=_text(headers.get(b"content-type")),
                origin=_text(headers.get(b"origin")),
            )
        except MlprodError as exc:
            status, body = protocol_error(exc)
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await _respond(send, status, json.dumps(body).encode(), extra)
            return
        except Exception as exc:
            log.exception("internal error on POST %s", path)
            message = f"internal error: {type(exc).__name__}; see the server log"
            await _respond(send, 500, json.dumps({"error": message, "code": "internal_error"}).encode())
            return
        if answer.header_length is None:
            await _respond(send, 200, answer.body)
        else:
            binary = [(b"inference-header-content-length", str(answer.header_length).encode())]
            await _respond(send, 200, answer.body, binary, content_type=b"application/octet-stream")


def _is_infer(method: str, path: str) -> bool:
    return method == "POST" and path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX)


@functools.lru_cache(maxsize=1024)  # a refused path raises, never cached
def _infer_target(middle: str) -> str | None:
    """``name`` or ``name/versions/v`` -> the service's target; None for any other shape."""
    parts = middle.split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0]
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return versioned_target(parts[0], parts[2])
    return None


def _is_predict(path: str) -> bool:
    return path.startswith(_PREFIX) and path.endswith(_SUFFIX)


@functools.lru_cache(maxsize=1024)  # a server sees few distinct paths; a refused one raises, never cached
def _target(middle: str) -> str | None:
    """``ref`` or ``name/versions/v`` -> the service's target; None for any other shape."""
    parts = middle.split("/")
    if len(parts) == 1 and parts[0]:
        if parse_ref(parts[0]).version is not None:
            raise InvalidInputError(f"use /v1/models/NAME/versions/VERSION/predict for {parts[0]!r}")
        return parts[0]
    if len(parts) == 3 and parts[1] == "versions" and parts[0]:
        version = parts[2]
        if not (version.isascii() and version.isdigit()) or not 1 <= int(version) < 2**63:
            raise InvalidInputError(f"model version must be a positive integer, got {version!r}")
        return f"{parts[0]}/{int(version)}"
    return None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInputError("the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"application/json",
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
