"""Pieces of the OpenAPI document shared by the native and admin routes: path parameters with the
patterns the server enforces, and error responses with the body every error has."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from mlprod.names import NAME_PATTERN

_NAME = rf"(?!.*\.\.){NAME_PATTERN}"  # check_name also refuses ".." anywhere in a name
MAX_VERSION = 2**63 - 1  # the database's integer range

ModelName = Annotated[str, Path(description="Model name.", json_schema_extra={"pattern": f"^{_NAME}$"})]
ModelRef = Annotated[
    str,
    Path(
        description="Model name (follows its routing plan) or NAME@ALIAS.",
        json_schema_extra={"pattern": f"^{_NAME}(@{_NAME})?$"},
    ),
]
ModelVersion = Annotated[int, Path(description="Model version.", ge=1, le=MAX_VERSION)]

ROUTE_TARGET_PATTERN = rf"^(@{_NAME}|/[1-9][0-9]{{0,17}})$"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def error_responses(**by_status: str) -> dict[str | int, dict[str, Any]]:
    """``responses`` entries for error statuses, e.g. ``error_responses(**{"404": "Unknown model."})``."""
    return {
        status: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status, text in by_status.items()
    }


AUTH_ERRORS = {"401": "No valid API token.", "403": "The token lacks the scope."}
