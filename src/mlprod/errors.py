"""The one exception hierarchy of mlprod.

Every error a user can cause or fix is an ``MlprodError``; the CLI prints its message on one line
and exits with ``exit_code``, the HTTP layer (``mlprod.serve``) maps it to a status code. Anything
else escaping is a bug in mlprod.

    MlprodError
    ├── WorkspaceError            no workspace, unreadable workspace, already initialised
    ├── ConfigError               mlprod.toml or MLPROD_* value that does not validate
    ├── DatabaseError             metadata database unreachable or failing
    │   ├── MissingDatabaseError  the workspace's metadata database is missing or empty (never recreated)
    │   └── ForeignDatabaseError  the database and the artifact store belong to different workspaces
    ├── StorageFullError          no space left writing the metadata DB or a blob (nothing committed)
    ├── PredictionLogError        the prediction log cannot take a record: the answer is not sent
    ├── ArtifactError
    │   ├── ArtifactNotFoundError (also KeyError)
    │   └── ArtifactCorruptedError  blob content no longer matches its sha256
    ├── UnauthorizedError         no API token, or an unknown or revoked one (HTTP 401)
    ├── ForbiddenError            a valid API token without the scope an operation needs (HTTP 403)
    ├── NotFoundError (also LookupError)   unknown dataset, model, version or alias
    ├── AlreadyExistsError
    ├── DamagedHistoryError       gc found a commit it cannot read completely and deleted nothing
    │   └── UnknownObjectsError   gc would delete more objects than the database knows (unconfirmed)
    ├── GcInProgressError         another ``data gc`` holds the sweep lease
    ├── ConflictError             a ref moved under a writer and could not be rebased onto
    │   └── MergeConflictError    a merge (or a commit rebased onto a moved branch) found cells
    │                             changed differently on both sides
    ├── InvalidInputError (also ValueError) bad request or argument; names the field
    │   ├── PayloadTooLargeError  a request body over the configured limit
    │   ├── UnsupportedMediaTypeError  a request body that is not declared as JSON (HTTP 415)
    │   ├── HostNotAllowedError   a request whose Host header names no address of the server (HTTP 421)
    │   ├── LossyCastError        a value would change when cast into a column's type
    │   ├── NewColumnsError       a commit brings columns the table lacks, schema evolution not asked for
    │   ├── ValidationFailedError incoming rows break a table's expectations (``report`` says how)
    │   ├── WindowSpecError       a window spec that cannot be used (unit, count, missing column)
    │   ├── MonitorColumnError    a monitored column missing, mistyped, all null or out of range
    │   ├── MonitorDataError      reference or analysis data with no rows or different features
    │   └── PredictionLogImportError  a log written elsewhere that cannot be imported as it is
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


class StorageFullError(MlprodError):
    """The disk (or quota) holding the metadata database or the artifact store is full."""


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


class DamagedHistoryError(MlprodError):
    """A recorded commit's manifest is missing or unreadable, so what it needs cannot be known."""


class GcInProgressError(MlprodError):
    """Another garbage collection is sweeping (or one that was killed still holds its lease)."""


class ConflictError(MlprodError):
    """A concurrent change won: a branch moved between reading it and moving it."""


class MergeConflictError(ConflictError):
    """A merge, or a commit rebased onto a branch that moved, found cells changed differently on both
    sides; ``conflicts`` lists them."""

    def __init__(self, message: str, conflicts: list[Any] | None = None) -> None:
        super().__init__(message)
        self.conflicts = conflicts or []


class InvalidInputError(MlprodError, ValueError):
    """An argument or request does not match what was expected."""


class PayloadTooLargeError(InvalidInputError):
    """A request body is larger than the configured limit."""


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body's ``Content-Type`` is not JSON where only JSON is taken."""


class HostNotAllowedError(InvalidInputError):
    """A request's ``Host`` header names no address the server answers to (e.g. DNS rebinding)."""


class LossyCastError(InvalidInputError):
    """A value would not survive being cast into a column's type (casting back would not give it)."""


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


# ---- branch a-workspace: workspace identity, gc confirmation, schema evolution on request ----------


class MissingDatabaseError(DatabaseError):
    """The workspace's metadata database does not exist or holds no mlprod schema; opening a workspace
    never creates one (only ``mlprod init`` does), so data the artifact store holds is never orphaned."""


class ForeignDatabaseError(DatabaseError):
    """The metadata database is not the one the artifact store was written with (their workspace ids
    differ), e.g. a config pointing to another SQLite file or PostgreSQL database."""


class UnknownObjectsError(DamagedHistoryError):
    """gc would delete more objects than the metadata database knows: the database is probably not the
    one the store was written with; nothing is deleted unless the user confirms explicitly."""


class NewColumnsError(InvalidInputError):
    """Incoming rows have columns the table lacks and schema evolution (``allow_new_columns``) was not
    asked for; nothing is committed."""


# --- byo-monitor ---
class WindowSpecError(InvalidInputError):
    """A window specification that cannot be used (unknown unit, count below 1, a calendar window
    without a time column, a column that is not there)."""


class MonitorColumnError(InvalidInputError):
    """A column named for monitoring (feature, prediction, score, label, timestamp) is missing, of the
    wrong type, all null or out of range in the reference or analysis data."""


class MonitorDataError(InvalidInputError):
    """Reference or analysis data that cannot be monitored as a whole: no rows, unreadable files, or
    reference and analysis with different feature columns."""


class PredictionLogImportError(InvalidInputError):
    """A prediction log written elsewhere that cannot be imported: missing or bad columns, duplicate
    request ids within the file."""
