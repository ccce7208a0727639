"""Mapping of mlprod errors to HTTP status codes and JSON error bodies."""

from __future__ import annotations

from typing import Any

from mlprod.errors import (
    AlreadyExistsError,
    ArtifactError,
    ConflictError,
    DamagedHistoryError,
    DatabaseError,
    ForbiddenError,
    GcInProgressError,
    HostNotAllowedError,
    InvalidInputError,
    MergeConflictError,
    MlprodError,
    ModelFormatError,
    NotFoundError,
    PayloadTooLargeError,
    PredictionLogError,
    StorageFullError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)

_STATUS: list[tuple[type[MlprodError], int, str]] = [
    (UnauthorizedError, 401, "unauthorized"),
    (ForbiddenError, 403, "forbidden"),
    (NotFoundError, 404, "not_found"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (UnsupportedMediaTypeError, 415, "unsupported_media_type"),
    (HostNotAllowedError, 421, "misdirected_request"),
    (ValidationFailedError, 422, "validation_failed"),
    (InvalidInputError, 422, "invalid_input"),
    (AlreadyExistsError, 409, "already_exists"),
    (MergeConflictError, 409, "merge_conflict"),
    (ConflictError, 409, "conflict"),
    (GcInProgressError, 409, "gc_in_progress"),
    (StorageFullError, 507, "insufficient_storage"),
    (DamagedHistoryError, 500, "damaged_history"),
    (DatabaseError, 503, "database_unavailable"),
    (PredictionLogError, 503, "prediction_log_unavailable"),
    (ArtifactError, 500, "artifact_error"),
    (ModelFormatError, 500, "model_format_error"),
]


def status_for(exc: MlprodError) -> tuple[int, str]:
    """The most specific ``(status, code)`` for an error; 400 for any other user error."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
