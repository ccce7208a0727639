"""Model registry: registered models, immutable numbered versions, and aliases with history.

A model is addressed as ``name`` (latest version), ``name/3`` (a version) or ``name@champion``
(an alias). Registering writes the artifact first and the database rows in one transaction, so a
failure registers nothing; every alias move is appended to the alias history.

Examples:
    >>> parse_ref("flights-delay@champion")
    ModelRef(name='flights-delay', version=None, alias='champion')
    >>> parse_ref("flights-delay/3")
    ModelRef(name='flights-delay', version=3, alias=None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import alias_history, model_aliases, model_versions, registered_models
from mlprod.models.formats import deserialize, serialize
from mlprod.models.loaded import LoadedModel
from mlprod.models.signature import Signature
from mlprod.names import check_name
from mlprod.workspace import Workspace

_REGISTER_RETRIES = 5


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return self.name if self.version is None else f"{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version of a model."""

    model: str
    version: int
    format: str
    artifact_sha256: str
    signature: Signature
    params: dict[str, Any]
    metrics: dict[str, float]
    lineage: dict[str, Any]
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias history: who pointed which alias from where to where, and why."""

    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: datetime
    who: str
    why: str


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int
    num_versions: int
    aliases: dict[str, int]


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name/VERSION`` or ``name@ALIAS``."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return ModelRef(check_name(name, "model"), alias=check_name(alias, "alias"))
    if "/" in ref:
        name, version = ref.split("/", 1)
        if not version.isdigit() or int(version) < 1:
            raise InvalidInputError(f"model reference {ref!r}: version must be a positive integer")
        return ModelRef(check_name(name, "model"), version=int(version))
    return ModelRef(check_name(ref, "model"))


class Registry:
    """The model registry of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def register(
        self,
        name: str,
        model: Any,
        *,
        signature: Signature,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ModelVersion:
        """Store ``model`` in a safe format and register it as the next version of ``name``."""
        check_name(name, "model")
        format_name, payload = serialize(model)
        sha = self._ws.artifacts.put_bytes(payload)
        now = datetime.now(UTC)
        for _ in range(_REGISTER_RETRIES):
            try:
                with self._ws.engine.begin() as conn:
                    exists = conn.execute(
                        sa.select(registered_models.c.name).where(registered_models.c.name == name)
                    ).first()
                    if exists is None:
                        conn.execute(
                            registered_models.insert().values(
                                name=name, description=description, created_at=now
                            )
                        )
                    latest = conn.scalar(
                        sa.select(sa.func.max(model_versions.c.version)).where(model_versions.c.model == name)
                    )
                    row = {
                        "model": name,
                        "version": (latest or 0) + 1,
                        "format": format_name,
                        "artifact_sha256": sha,
                        "signature": signature.to_dict(),
                        "params": dict(params or {}),
                        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
                        "lineage": dict(lineage or {}),
                        "created_at": now,
                    }
                    conn.execute(model_versions.insert().values(**row))
            except IntegrityError:
                continue  # a concurrent registration took the number; take the next one
            return _version(row)
        raise InvalidInputError(f"model {name!r}: too many concurrent registrations, try again")

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference points to."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        with self._ws.engine.connect() as conn:
            version = parsed.version
            if parsed.alias is not None:
                version = conn.scalar(
                    sa.select(model_aliases.c.version).where(
                        model_aliases.c.model == parsed.name, model_aliases.c.alias == parsed.alias
                    )
                )
                if version is None:
                    self._require_model(conn, parsed.name)
                    raise NotFoundError(f"model {parsed.name!r} has no alias {parsed.alias!r}")
            query = model_versions.select().where(model_versions.c.model == parsed.name)
            if version is None:
                query = query.order_by(model_versions.c.version.desc()).limit(1)
            else:
                query = query.where(model_versions.c.version == version)
            row = conn.execute(query).first()
            if row is None:
                self._require_model(conn, parsed.name)
                raise NotFoundError(f"model {parsed.name!r} has no version {version}")
        return _version(row._mapping)

    def load(self, ref: str | ModelRef | ModelVersion) -> LoadedModel:
        """Load a version for prediction, verifying its artifact's sha256 first."""
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        payload = self._ws.artifacts.get_bytes(version.artifact_sha256)
        return LoadedModel(
            version.model, version.version, deserialize(version.format, payload), version.signature
        )

    def versions(self, name: str) -> list[ModelVersion]:
        with self._ws.engine.connect() as conn:
            self._require_model(conn, name)
            rows = conn.execute(
                model_versions.select()
                .where(model_versions.c.model == name)
                .order_by(model_versions.c.version)
            )
            return [_version(row._mapping) for row in rows]

    def models(self) -> list[ModelSummary]:
        """Every registered model with its latest version, version count and aliases."""
        counts = (
            sa.select(
                model_versions.c.model,
                sa.func.max(model_versions.c.version).label("latest"),
                sa.func.count().label("n"),
            )
            .group_by(model_versions.c.model)
            .order_by(model_versions.c.model)
        )
        with self._ws.engine.connect() as conn:
            aliases: dict[str, dict[str, int]] = {}
            for model, alias, version in conn.execute(
                sa.select(model_aliases.c.model, model_aliases.c.alias, model_aliases.c.version)
            ):
                aliases.setdefault(model, {})[alias] = version
            return [
                ModelSummary(model, latest, n, aliases.get(model, {}))
                for model, latest, n in conn.execute(counts)
            ]

    def set_alias(self, name: str, alias: str, version: int, *, why: str = "") -> AliasMove:
        """Point ``name@alias`` at ``version`` and append the move to the alias history."""
        check_name(alias, "alias")
        now = datetime.now(UTC)
        with self._ws.engine.begin() as conn:
            self._require_model(conn, name)
            exists = conn.execute(
                sa.select(model_versions.c.id).where(
                    model_versions.c.model == name, model_versions.c.version == version
                )
            ).first()
            if exists is None:
                raise NotFoundError(f"model {name!r} has no version {version}; cannot point @{alias} at it")
            current = conn.scalar(
                sa.select(model_aliases.c.version).where(
                    model_aliases.c.model == name, model_aliases.c.alias == alias
                )
            )
            if current is None:
                conn.execute(
                    model_aliases.insert().values(model=name, alias=alias, version=version, updated_at=now)
                )
            else:
                conn.execute(
                    model_aliases.update()
                    .where(model_aliases.c.model == name, model_aliases.c.alias == alias)
                    .values(version=version, updated_at=now)
                )
            move: dict[str, Any] = {
                "model": name,
                "alias": alias,
                "from_version": current,
                "to_version": version,
                "at": now,
                "who": current_user(),
                "why": why,
            }
            conn.execute(alias_history.insert().values(**move))
        return AliasMove(**move)

    def alias_history(self, name: str) -> list[AliasMove]:
        """Every alias move of ``name``, oldest first."""
        with self._ws.engine.connect() as conn:
            self._require_model(conn, name)
            rows = conn.execute(
                alias_history.select().where(alias_history.c.model == name).order_by(alias_history.c.id)
            )
            return [AliasMove(**{k: v for k, v in row._mapping.items() if k != "id"}) for row in rows]

    @staticmethod
    def _require_model(conn: sa.Connection, name: str) -> None:
        found = conn.execute(
            sa.select(registered_models.c.name).where(registered_models.c.name == name)
        ).first()
        if found is None:
            known = list(
                conn.scalars(sa.select(registered_models.c.name).order_by(registered_models.c.name).limit(20))
            )
            raise NotFoundError(f"model {name!r} is not registered (models: {', '.join(known) or 'none'})")


def _version(row: Mapping[str, Any] | sa.RowMapping) -> ModelVersion:
    fields = {k: v for k, v in row.items() if k != "id"}
    fields["signature"] = Signature.from_dict(fields["signature"])
    return ModelVersion(**fields)
