"""The ``mlprod.toml`` schema, its loading, and ``MLPROD_<SECTION>_<KEY>`` environment overrides.

Unknown keys and wrong types are errors, never silently ignored: a typo in a production config
must not fall back to a default.

Examples:
    >>> cfg = Config.model_validate({"serve": {"port": 9000}})
    >>> cfg.serve.port, cfg.serve.host
    (9000, '127.0.0.1')
    >>> apply_env_overrides(cfg, {"MLPROD_DATABASE_URL": "sqlite:///x.db"}).database.url
    'sqlite:///x.db'
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlprod.errors import ConfigError

CONFIG_FILENAME = "mlprod.toml"
# MLPROD_* variables that are not config overrides; any other unknown one is a typo and an error.
OTHER_VARIABLES = frozenset({"MLPROD_HOME", "MLPROD_DEBUG"})
TEST_VARIABLE_PREFIX = "MLPROD_TEST_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WorkspaceSection(_Section):
    name: str = "mlprod"


class DatabaseSection(_Section):
    url: str = Field(
        default="",
        description="SQLAlchemy URL of the metadata DB; empty means SQLite in the workspace.",
    )


class ArtifactsSection(_Section):
    path: str = Field(default="artifacts", description="Blob store directory, relative or absolute.")


class ServeSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)


class PredictionLogSection(_Section):
    path: str = Field(default="predictions", description="Prediction log directory.")
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    max_buffered_rows: int = Field(default=50_000, gt=0)


class FeaturesSection(_Section):
    module: str = Field(
        default="",
        description="Feature definitions: an importable module name or a .py path relative to the workspace.",
    )
    online_store: str = Field(default="sqlite", pattern="^(sqlite|redis)$", description="sqlite or redis.")
    sqlite_path: str = Field(default="online.sqlite", description="SQLite online store file.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis online store URL.")


class Config(_Section):
    """The whole of ``mlprod.toml``."""

    workspace: WorkspaceSection = WorkspaceSection()
    database: DatabaseSection = DatabaseSection()
    artifacts: ArtifactsSection = ArtifactsSection()
    serve: ServeSection = ServeSection()
    prediction_log: PredictionLogSection = PredictionLogSection()
    features: FeaturesSection = FeaturesSection()


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``, then apply ``MLPROD_*`` overrides from ``environ``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    return apply_env_overrides(config, environ)


def apply_env_overrides(config: Config, environ: Mapping[str, str] | None = None) -> Config:
    """Return a copy of ``config`` with every ``MLPROD_<SECTION>_<KEY>`` variable applied."""
    import os

    env = os.environ if environ is None else environ
    _refuse_unknown_variables(env)
    updated = config.model_copy(deep=True)
    for var, dotted in override_variables().items():
        if var not in env:
            continue
        section_name, key = dotted.split(".")
        try:
            setattr(getattr(updated, section_name), key, env[var])
        except ValidationError as exc:
            detail = exc.errors()[0]["msg"]
            raise ConfigError(f"environment {var}={env[var]!r}: {detail}") from exc
    return updated


def override_variables() -> dict[str, str]:
    """Every ``MLPROD_<SECTION>_<KEY>`` override, mapped to its ``section.key``."""
    return {
        f"MLPROD_{section}_{key}".upper(): f"{section}.{key}"
        for section, info in Config.model_fields.items()
        for key in info.annotation.model_fields  # type: ignore[union-attr]
    }


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    known = override_variables()
    for name in env:
        if not name.startswith("MLPROD_") or name in known or name in OTHER_VARIABLES:
            continue
        if name.startswith(TEST_VARIABLE_PREFIX):
            continue
        raise ConfigError(
            f"unknown environment variable {name}; mlprod reads {', '.join(sorted(OTHER_VARIABLES))} "
            f"and MLPROD_<SECTION>_<KEY> overrides such as {', '.join(sorted(known)[:3])}, …"
        )


def render_config(config: Config) -> str:
    """Serialize ``config`` as TOML (flat sections of scalars only)."""
    lines: list[str] = []
    for section_name, values in config.model_dump().items():
        lines.append(f"[{section_name}]")
        lines.extend(f"{key} = {_toml_scalar(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _describe(exc: ValidationError) -> str:
    """One line per problem: where (``[section] key``), what was expected, what was got."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else f"[{loc[0]}]"
        if error["type"] == "extra_forbidden":
            kind = "key" if len(loc) > 1 else "section"
            parts.append(f"unknown {kind} {where}")
        else:
            parts.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(parts)
