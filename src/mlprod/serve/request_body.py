"""Reading a request body: a JSON object, refused before it is read when it is over the size limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from mlprod.errors import InvalidInputError, PayloadTooLargeError


async def read_json(request: Request, max_body: int) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over ``max_body`` bytes before reading them."""
    return parse_json_object(await read_body(request, max_body))


async def read_body(request: Request, max_body: int) -> bytes:
    """The raw body, refused (before it is read, when declared) over ``max_body`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise too_large(max_body)
    raw = await request.body()
    if len(raw) > max_body:
        raise too_large(max_body)
    return raw


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object, or an error saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also too deep nesting, over-long integers
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    return body


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than the limit of {limit} bytes (config: serve.max_body_bytes)"
    )
