"""Refusing request bodies not declared as JSON (HTTP 415).

A browser sends ``text/plain``, form or untyped bodies cross-origin without asking the server first
(a CORS "simple request"); ``application/json`` it only sends after a preflight this server never
grants. Taking JSON only when it is declared as JSON keeps web pages from posting to the server.

Examples:
    >>> is_json_media_type("application/json; charset=utf-8"), is_json_media_type("application/problem+json")
    (True, True)
    >>> is_json_media_type("text/plain"), is_json_media_type(None)
    (False, False)
"""

from __future__ import annotations

from mlprod.errors import UnsupportedMediaTypeError

_SHOWN_LENGTH = 100


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value declares JSON (``application/json`` or ``application/*+json``)."""
    if content_type is None:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def require_json(content_type: str | None) -> None:
    """Raise ``UnsupportedMediaTypeError`` unless ``content_type`` declares JSON."""
    if is_json_media_type(content_type):
        return
    got = "no Content-Type" if content_type is None else f"Content-Type {content_type[:_SHOWN_LENGTH]!r}"
    raise UnsupportedMediaTypeError(
        f"the request body must be JSON sent with 'Content-Type: application/json', got {got}"
    )
