"""The one exception hierarchy of mlprod.

Every error a user can cause or fix is an ``MlprodError``; the CLI prints its message on one line
and exits with ``exit_code``, the HTTP layer (``mlprod.serve``) maps it to a status code. Anything
else escaping is a bug in mlprod.

    MlprodError
    ├── WorkspaceError            no workspace, unreadable workspace, already initialised
    ├── ConfigError               mlprod.toml or MLPROD_* value that does not validate
    ├── DatabaseError             metadata database unreachable or failing
    ├── PredictionLogError        the prediction log cannot take a record: the answer is not sent
    ├── ArtifactError
    │   ├── ArtifactNotFoundError (also KeyError)
    │   └── ArtifactCorruptedError  blob content no longer matches its sha256
    ├── UnauthorizedError         no API token, or an unknown or revoked one (HTTP 401)
    ├── ForbiddenError            a valid API token without the scope an operation needs (HTTP 403)
    ├── NotFoundError (also LookupError)   unknown dataset, model, version or alias
    ├── AlreadyExistsError
    ├── ConflictError             a ref moved under a writer (compare-and-swap failed)
    │   └── MergeConflictError    a merge left cells changed differently on both sides
    ├── InvalidInputError (also ValueError) bad request or argument; names the field
    │   ├── PayloadTooLargeError  a request body over the configured limit
    │   └── ValidationFailedError incoming rows break a table's expectations (``report`` says how)
    └── ModelFormatError          a model that cannot be stored or loaded safely
"""

from __future__ import annotations

from typing import Any


class MlprodError(Exception):
    """Base class: a problem the user can understand and act on."""

    exit_code = 2


class WorkspaceError(MlprodError):
    """The workspace is missing, unreadable or cannot be created."""


class ConfigError(MlprodError):
    """A configuration value is unknown or has the wrong type."""


class DatabaseError(MlprodError):
    """The metadata database cannot be reached or refused an operation."""


class PredictionLogError(MlprodError):
    """The prediction log cannot record an answer (disk full, directory gone), so it is not sent."""


class ArtifactError(MlprodError):
    """A blob in the artifact store cannot be written or read."""


class ArtifactNotFoundError(ArtifactError, KeyError):
    """No blob with this sha256 exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactCorruptedError(ArtifactError):
    """A blob's content no longer matches the sha256 it is named by."""


class NotFoundError(MlprodError, LookupError):
    """A named thing (dataset, model, version, alias) does not exist."""


class AlreadyExistsError(MlprodError):
    """A thing that must be unique already exists."""


class ConflictError(MlprodError):
    """A concurrent change won: a branch moved between reading it and moving it."""


class MergeConflictError(ConflictError):
    """A merge found cells changed differently on both sides; ``conflicts`` lists them."""

    def __init__(self, message: str, conflicts: list[Any] | None = None) -> None:
        super().__init__(message)
        self.conflicts = conflicts or []


class InvalidInputError(MlprodError, ValueError):
    """An argument or request does not match what was expected."""


class PayloadTooLargeError(InvalidInputError):
    """A request body is larger than the configured limit."""


class ValidationFailedError(InvalidInputError):
    """Incoming rows break a table's stored expectations; ``report`` lists the violations."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class ModelFormatError(MlprodError):
    """A model cannot be serialized or deserialized in a safe format."""


class UnauthorizedError(MlprodError):
    """A request carries no API token, or one that is unknown or revoked."""


class ForbiddenError(MlprodError):
    """A valid API token lacks the scope an operation needs."""
