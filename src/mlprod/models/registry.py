"""Model registry: registered models, immutable numbered versions, tags, metrics, aliases.

A model is addressed as ``name`` (latest version), ``name/3`` (a version) or ``name@champion``
(an alias). Registering writes the artifacts first and the database rows in one transaction, so a
failure registers nothing. Every alias move, rollbacks included, is appended to the alias history.

Examples:
    >>> parse_ref("flights-delay@champion")
    ModelRef(name='flights-delay', version=None, alias='champion')
    >>> parse_ref("flights-delay/3")
    ModelRef(name='flights-delay', version=3, alias=None)
    >>> parse_metric_filter("auc>=0.7")
    MetricFilter(key='auc', op='>=', value=0.7)
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mlprod.errors import InvalidInputError, ModelFormatError, NotFoundError
from mlprod.identity import current_user
from mlprod.lazy import lazy_module
from mlprod.meta.tables import (
    alias_history,
    model_aliases,
    model_exports,
    model_version_metrics,
    model_version_tags,
    model_versions,
    registered_models,
)
from mlprod.models.flavors import FLAVORS, flavor_for, get_flavor
from mlprod.models.loaded import LoadedModel
from mlprod.models.signature import Signature
from mlprod.names import check_name
from mlprod.suggest import did_you_mean
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

_REGISTER_RETRIES = 5
PARITY_TOLERANCE = 1e-5
SAMPLE_ROWS = 512
_METRIC_FILTER = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*([<>=!~]+)\s*(.*?)\s*")
_METRIC_OPS = (">=", "<=", ">", "<", "=", "==")
_METRIC_EXAMPLE = "e.g. 'validation_auc>=0.7'; operators: >= <= > < ="


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
    description: str = ""
    run_id: str | None = None
    sample_sha256: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class VersionSummary:
    """What a search returns per version: enough to choose one, cheap to list by the thousand."""

    model: str
    version: int
    format: str
    created_at: datetime
    metrics: dict[str, float]

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
    action: str = "set"


@dataclass(frozen=True)
class ModelSummary:
    name: str
    latest_version: int
    num_versions: int
    aliases: dict[str, int]


@dataclass(frozen=True)
class ModelExport:
    model: str
    version: int
    format: str
    artifact_sha256: str
    parity_max_abs_diff: float
    created_at: datetime


@dataclass(frozen=True)
class MetricFilter:
    key: str
    op: str
    value: float


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name/VERSION`` or ``name@ALIAS``."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return ModelRef(check_name(name, "model"), alias=check_name(alias, "alias"))
    if "/" in ref:
        name, version = ref.split("/", 1)
        if not (version.isascii() and version.isdigit()) or not 1 <= int(version) < 2**63:
            raise InvalidInputError(f"model reference {ref!r}: version must be a positive integer")
        return ModelRef(check_name(name, "model"), version=int(version))
    return ModelRef(check_name(ref, "model"))


def parse_metric_filter(text: str) -> MetricFilter:
    """Parse ``KEY OP VALUE`` with OP one of ``>= <= > < =`` and VALUE a finite number."""
    match = _METRIC_FILTER.fullmatch(text)
    if match is None:
        raise InvalidInputError(f"metric filter {text!r} should be METRIC OP NUMBER ({_METRIC_EXAMPLE})")
    key, op, raw = match.groups()
    if op not in _METRIC_OPS:
        raise InvalidInputError(f"metric filter {text!r}: unknown operator {op!r} ({_METRIC_EXAMPLE})")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInputError(f"metric filter {text!r}: {raw!r} is not a finite number ({_METRIC_EXAMPLE})")
    return MetricFilter(key, "=" if op == "==" else op, value)


class Registry:
    """The model registry of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    # -- versions ---------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        *,
        signature: Signature,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        lineage: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        run_id: str | None = None,
        sample: np.ndarray | None = None,
        alias: str | None = None,
        why: str = "",
    ) -> ModelVersion:
        """Store ``model`` in a safe format and register it as the next version of ``name``.

        ``sample`` (rows of the encoded input matrix) is kept for export parity checks. With
        ``alias``, the alias moves to the new version in the same transaction (recorded with ``why``).
        """
        check_name(name, "model")
        if alias is not None:
            check_name(alias, "alias")
        clean_metrics = _check_metrics(metrics or {})
        clean_tags = _check_tags(tags or {})
        flavor = flavor_for(model)
        sha = self._ws.artifacts.put_bytes(flavor.serialize(model))
        sample_sha = None if sample is None else self._ws.artifacts.put_bytes(_npy(sample[:SAMPLE_ROWS]))
        now = datetime.now(UTC)
        for _ in range(_REGISTER_RETRIES):
            try:
                with self._ws.engine.begin() as conn:
                    if conn.execute(_model_exists(name)).first() is None:
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
                        "format": flavor.name,
                        "artifact_sha256": sha,
                        "signature": signature.to_dict(),
                        "params": dict(params or {}),
                        "metrics": clean_metrics,
                        "lineage": dict(lineage or {}),
                        "created_at": now,
                        "description": description,
                        "run_id": run_id,
                        "sample_sha256": sample_sha,
                    }
                    conn.execute(model_versions.insert().values(**row))
                    key = {"model": name, "version": row["version"]}
                    if clean_metrics:
                        conn.execute(
                            model_version_metrics.insert(),
                            [{**key, "key": k, "value": v} for k, v in clean_metrics.items()],
                        )
                    if clean_tags:
                        conn.execute(
                            model_version_tags.insert(),
                            [{**key, "key": k, "value": v} for k, v in clean_tags.items()],
                        )
                    if alias is not None:
                        _move_alias(conn, name, alias, (latest or 0) + 1, why=why, action="set")
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
                    _require_model(conn, parsed.name)
                    raise NotFoundError(f"model {parsed.name!r} has no alias {parsed.alias!r}")
            query = model_versions.select().where(model_versions.c.model == parsed.name)
            if version is None:
                query = query.order_by(model_versions.c.version.desc()).limit(1)
            else:
                query = query.where(model_versions.c.version == version)
            row = conn.execute(query).first()
            if row is None:
                _require_model(conn, parsed.name)
                raise NotFoundError(f"model {parsed.name!r} has no version {version}")
        return _version(row._mapping)

    def load(self, ref: str | ModelRef | ModelVersion, *, format: str | None = None) -> LoadedModel:
        """Load a version for prediction, verifying its artifact's sha256 first.

        ``format`` picks an export (``"onnx"``) instead of the native artifact.
        """
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        sha, chosen = version.artifact_sha256, version.format
        if format is not None and format != version.format:
            sha, chosen = self.export_of(version, format).artifact_sha256, format
        predictor = get_flavor(chosen).load(self._ws.artifacts.get_bytes(sha))
        return LoadedModel(version.model, version.version, predictor, version.signature, format=chosen)

    def versions(self, name: str) -> list[ModelVersion]:
        with self._ws.engine.connect() as conn:
            _require_model(conn, name)
            query = (
                model_versions.select()
                .where(model_versions.c.model == name)
                .order_by(model_versions.c.version)
            )
            return [_version(row._mapping) for row in conn.execute(query)]

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

    def search(
        self,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        metric: MetricFilter | str | None = None,
        limit: int = 100,
    ) -> list[VersionSummary]:
        """Versions whose model name contains ``name``, that carry all ``tags`` and pass ``metric``.

        At most ``limit``, ordered by model name, newest version first; ``get`` gives the full one.
        """
        mv = model_versions.c
        query = sa.select(mv.model, mv.version, mv.format, mv.created_at, mv.metrics)
        if name:
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(model_versions.c.model.like(f"%{escaped}%", escape="\\"))
        for key, value in (tags or {}).items():
            query = query.where(
                sa.exists().where(
                    model_version_tags.c.model == model_versions.c.model,
                    model_version_tags.c.version == model_versions.c.version,
                    model_version_tags.c.key == key,
                    model_version_tags.c.value == value,
                )
            )
        if metric is not None:
            parsed = parse_metric_filter(metric) if isinstance(metric, str) else metric
            self._check_metric_known(parsed.key)
            value_column = model_version_metrics.c.value
            condition = {
                ">=": value_column >= parsed.value,
                "<=": value_column <= parsed.value,
                ">": value_column > parsed.value,
                "<": value_column < parsed.value,
                "=": value_column == parsed.value,
            }[parsed.op]
            query = query.where(
                sa.exists().where(
                    model_version_metrics.c.model == model_versions.c.model,
                    model_version_metrics.c.version == model_versions.c.version,
                    model_version_metrics.c.key == parsed.key,
                    condition,
                )
            )
        query = query.order_by(mv.model, mv.version.desc()).limit(limit)
        with self._ws.engine.connect() as conn:
            return [VersionSummary(*row) for row in conn.execute(query)]

    def metric_names(self) -> list[str]:
        """Every metric name some version records, sorted (what ``search(metric=...)`` can filter on)."""
        query = sa.select(model_version_metrics.c.key).distinct().order_by(model_version_metrics.c.key)
        with self._ws.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def _check_metric_known(self, key: str) -> None:
        """A filter on a metric no version records would silently match nothing: refuse it."""
        known = self.metric_names()
        if key in known:
            return
        if not known:
            raise InvalidInputError(f"unknown metric {key!r}: no registered version records any metric yet")
        raise InvalidInputError(
            f"unknown metric {key!r}{did_you_mean(key, known)}; known metrics: {', '.join(known)}"
        )

    # -- tags -------------------------------------------------------------------------------------

    def set_tags(self, ref: str, tags: Mapping[str, str]) -> dict[str, str]:
        """Add or replace tags on a version; return all its tags."""
        version = self.get(ref)
        clean = _check_tags(tags)
        key = {"model": version.model, "version": version.version}
        with self._ws.engine.begin() as conn:
            conn.execute(
                model_version_tags.delete().where(
                    model_version_tags.c.model == version.model,
                    model_version_tags.c.version == version.version,
                    model_version_tags.c.key.in_(list(clean)),
                )
            )
            if clean:
                conn.execute(
                    model_version_tags.insert(), [{**key, "key": k, "value": v} for k, v in clean.items()]
                )
        return self.tags(version.ref)

    def tags(self, ref: str) -> dict[str, str]:
        version = self.get(ref)
        query = sa.select(model_version_tags.c.key, model_version_tags.c.value).where(
            model_version_tags.c.model == version.model, model_version_tags.c.version == version.version
        )
        with self._ws.engine.connect() as conn:
            return dict(sorted((k, v) for k, v in conn.execute(query)))

    # -- aliases ----------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, why: str = "") -> AliasMove:
        """Point ``name@alias`` at ``version`` and append the move to the alias history."""
        check_name(alias, "alias")
        with self._ws.engine.begin() as conn:
            _require_model(conn, name)
            if conn.execute(_version_exists(name, version)).first() is None:
                raise NotFoundError(f"model {name!r} has no version {version}; cannot point @{alias} at it")
            return _move_alias(conn, name, alias, version, why=why, action="set")

    def rollback(self, name: str, alias: str, *, why: str = "") -> AliasMove:
        """Re-point ``name@alias`` at the version it had before its latest move (repeatable)."""
        check_name(alias, "alias")
        with self._ws.engine.begin() as conn:
            _require_model(conn, name)
            moves = conn.execute(
                sa.select(alias_history.c.to_version, alias_history.c.action)
                .where(alias_history.c.model == name, alias_history.c.alias == alias)
                .order_by(alias_history.c.id)
            ).all()
            if not moves:
                raise NotFoundError(f"model {name!r} has no alias {alias!r} to roll back")
            targets: list[int | None] = []
            for to_version, action in moves:
                if action == "rollback":
                    targets.pop()
                else:
                    targets.append(to_version)
            if len(targets) < 2:
                raise InvalidInputError(
                    f"{name}@{alias} has no earlier target to roll back to (history: {len(moves)} move(s))"
                )
            previous = targets[-2]
            if previous is None:
                raise InvalidInputError(
                    f"{name}@{alias} pointed at nothing before; set it with `alias` instead"
                )
            return _move_alias(conn, name, alias, previous, why=why or "rollback", action="rollback")

    def alias_history(self, name: str) -> list[AliasMove]:
        """Every alias move of ``name``, oldest first."""
        with self._ws.engine.connect() as conn:
            _require_model(conn, name)
            query = alias_history.select().where(alias_history.c.model == name).order_by(alias_history.c.id)
            return [
                AliasMove(**{k: v for k, v in row._mapping.items() if k != "id"})
                for row in conn.execute(query)
            ]

    # -- exports ----------------------------------------------------------------------------------

    def export(self, ref: str, *, format: str = "onnx", tolerance: float = PARITY_TOLERANCE) -> ModelExport:
        """Convert a version to ``format`` and keep it only if it predicts like the native model.

        The check runs both on the version's stored sample rows; a maximum absolute difference of
        probabilities above ``tolerance`` refuses the export and says by how much.
        """
        if format != "onnx":
            raise InvalidInputError(f"unknown export format {format!r}; available: onnx")
        version = self.get(ref)
        if version.sample_sha256 is None:
            raise InvalidInputError(f"{version.ref} has no stored sample rows to check an export against")
        sample = np.load(io.BytesIO(self._ws.artifacts.get_bytes(version.sample_sha256)), allow_pickle=False)
        native = self.load(version)
        try:
            exported = get_flavor(version.format).to_onnx(native.predictor, sample.shape[1])
        except ModelFormatError:
            raise
        except Exception as exc:  # converters raise many types for unsupported models
            raise ModelFormatError(f"cannot convert {version.ref} ({version.format}) to ONNX: {exc}") from exc
        converted = FLAVORS["onnx"].load(exported)
        difference = float(np.max(np.abs(native.predict_matrix(sample) - converted.predict_proba(sample))))
        if not difference <= tolerance:
            raise ModelFormatError(
                f"ONNX export of {version.ref} refused: predicted probabilities differ by up to "
                f"{difference:.3g} on {len(sample)} sample rows (allowed {tolerance:g})"
            )
        sha = self._ws.artifacts.put_bytes(exported)
        row: dict[str, Any] = {
            "model": version.model,
            "version": version.version,
            "format": format,
            "artifact_sha256": sha,
            "parity_max_abs_diff": difference,
            "created_at": datetime.now(UTC),
        }
        with self._ws.engine.begin() as conn:
            conn.execute(
                model_exports.delete().where(
                    model_exports.c.model == version.model,
                    model_exports.c.version == version.version,
                    model_exports.c.format == format,
                )
            )
            conn.execute(model_exports.insert().values(**row))
        return ModelExport(**row)

    def export_of(self, version: ModelVersion, format: str) -> ModelExport:
        query = model_exports.select().where(
            model_exports.c.model == version.model,
            model_exports.c.version == version.version,
            model_exports.c.format == format,
        )
        with self._ws.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(
                f"{version.ref} has no {format} export; create it with `mlprod models export {version.ref}`"
            )
        return ModelExport(**row._mapping)

    def exports(self, ref: str) -> list[ModelExport]:
        version = self.get(ref)
        query = model_exports.select().where(
            model_exports.c.model == version.model, model_exports.c.version == version.version
        )
        with self._ws.engine.connect() as conn:
            return [ModelExport(**row._mapping) for row in conn.execute(query)]


def _move_alias(
    conn: sa.Connection, name: str, alias: str, version: int, *, why: str, action: str
) -> AliasMove:
    now = datetime.now(UTC)
    current = conn.scalar(
        sa.select(model_aliases.c.version).where(
            model_aliases.c.model == name, model_aliases.c.alias == alias
        )
    )
    if current is None:
        conn.execute(model_aliases.insert().values(model=name, alias=alias, version=version, updated_at=now))
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
        "action": action,
    }
    conn.execute(alias_history.insert().values(**move))
    return AliasMove(**move)


def _model_exists(name: str) -> sa.Select[Any]:
    return sa.select(registered_models.c.name).where(registered_models.c.name == name)


def _version_exists(name: str, version: int) -> sa.Select[Any]:
    return sa.select(model_versions.c.id).where(
        model_versions.c.model == name, model_versions.c.version == version
    )


def _require_model(conn: sa.Connection, name: str) -> None:
    if conn.execute(_model_exists(name)).first() is None:
        known = list(
            conn.scalars(sa.select(registered_models.c.name).order_by(registered_models.c.name).limit(20))
        )
        raise NotFoundError(f"model {name!r} is not registered (models: {', '.join(known) or 'none'})")


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    clean = {}
    for key, value in metrics.items():
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"metric {key!r} is {value!r}; metrics must be finite numbers")
        clean[str(key)] = number
    return clean


def _check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not key or len(key) > 200 or not isinstance(value, str) or len(value) > 500:
            raise InvalidInputError(
                f"tag {key!r}={value!r}: keys are 1-200 characters, values strings up to 500"
            )
    return dict(tags)


def _npy(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()


def _version(row: Mapping[str, Any] | sa.RowMapping) -> ModelVersion:
    fields = {k: v for k, v in row.items() if k != "id"}
    fields["signature"] = Signature.from_dict(fields["signature"])
    return ModelVersion(**fields)
