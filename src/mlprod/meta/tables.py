"""Every table of the metadata database, in SQLAlchemy Core.

One ``MetaData`` for the whole schema so that Alembic migrations cover all of it; the packages that
own the rows (``data``, ``models``, ``serve``) hold the queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

SHA256 = String(64)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value} given; mlprod stores aware UTC times only")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


data_tables = Table(
    "data_tables",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("key", JSON, nullable=False),
    Column("buckets", Integer, nullable=False),
    Column("label", String(200), nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("expectations", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("author", String(200), nullable=False),
)

data_commits = Table(
    "data_commits",
    metadata,
    Column("id", SHA256, primary_key=True),
    Column("table_name", String(200), ForeignKey("data_tables.name"), nullable=False, index=True),
    Column("parents", JSON, nullable=False),
    Column("operation", String(20), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("author", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("changes", JSON, nullable=False),
)

data_refs = Table(
    "data_refs",
    metadata,
    Column("table_name", String(200), ForeignKey("data_tables.name"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("commit_id", SHA256, ForeignKey("data_commits.id"), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

data_gc_fence = Table(
    "data_gc_fence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("owner", String(200), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("commit_hold_until", UTCDateTime(), nullable=True),
)
"""One row (id 1): ``epoch`` grows when a gc sweep starts; ``lease_until`` is set while one runs;
``commit_hold_until`` keeps new sweeps waiting while a commit a sweep crossed records itself."""

workspace_identity = Table(
    "workspace_identity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("workspace_id", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
"""At most one row (id 1): the id ``mlprod init`` drew, also written in the artifact store's marker file
(``mlprod.meta.workspace_id``); empty in a database from before workspace ids until it is adopted."""

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("format", String(50), nullable=False),
    Column("artifact_sha256", SHA256, nullable=False),
    Column("signature", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("run_id", String(32), nullable=True),
    Column("sample_sha256", SHA256, nullable=True),
    UniqueConstraint("model", "version"),
)


def _version_key_values(name: str, value_type: TypeEngine[Any]) -> Table:
    """A table of ``key -> value`` pairs per model version, indexed for lookups by key and value."""
    return Table(
        name,
        metadata,
        Column("model", String(200), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("value", value_type, nullable=False),
        ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
        Index(f"ix_{name}_key_value", "key", "value"),
    )


model_version_metrics = _version_key_values("model_version_metrics", Float())
model_version_tags = _version_key_values("model_version_tags", String(500))

model_exports = Table(
    "model_exports",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("format", String(50), primary_key=True),
    Column("artifact_sha256", SHA256, nullable=False),
    Column("parity_max_abs_diff", Float, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("code_version", String(100), nullable=True),
    Column("packages", JSON, nullable=False),
    Column("duration_seconds", Float, nullable=True),
    Column("peak_memory_mb", Float, nullable=True),
    Column("model_version", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("who", String(200), nullable=False),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("alias", String(100), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
    Column("why", Text, nullable=False, default=""),
    Column("action", String(20), nullable=False, server_default="set"),
)

evaluation_reports = Table(
    "evaluation_reports",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("evaluation_set", String(200), nullable=False, index=True),
    Column("set_definition", JSON, nullable=False),
    Column("dataset_commit", String(64), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("report", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
    Index("ix_evaluation_reports_model_version", "model", "version"),
)

leaderboards = Table(
    "leaderboards",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("profile", String(200), nullable=False),
    Column("evaluation_set", String(200), nullable=False, index=True),
    Column("snapshot", JSON, nullable=False),
    Column("entries", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("token_sha256", SHA256, nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

serving_routes = Table(
    "serving_routes",
    metadata,
    Column("model", String(200), ForeignKey("registered_models.name"), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

serving_route_changes = Table(
    "serving_route_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("revision", Integer, nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
    Column("why", Text, nullable=False, default=""),
)

monitor_profiles = Table(
    "monitor_profiles",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("artifact_sha256", String(64), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("who", String(200), nullable=False),
    ForeignKeyConstraint(["model", "version"], ["model_versions.model", "model_versions.version"]),
)

monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("window_start", UTCDateTime(), nullable=False),
    Column("window_end", UTCDateTime(), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("column_name", String(200), nullable=False),
    Column("method", String(100), nullable=False),
    Column("statistic", Float(), nullable=False),
    Column("threshold", Float(), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    UniqueConstraint("model", "version", "window_start", "window_end", "rule", "column_name", "method"),
    Index("ix_monitor_alerts_model_window", "model", "window_start"),
)
