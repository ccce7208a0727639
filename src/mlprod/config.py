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
    auth: str = Field(
        default="auto",
        pattern="^(auto|always|never)$",
        description="API tokens: auto (required unless bound to loopback), always or never.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Host names clients may use besides loopback and serve.host (comma-separated; '*': any).",
    )
    model_format: str = Field(
        default="auto",
        pattern="^(auto|native|onnx)$",
        description="auto serves a version's ONNX export when it has one, else its native artifact.",
    )
    memory_budget_mb: int = Field(
        default=2048, gt=0, description="Loaded models past this estimate are unloaded, least recently used."
    )
    refresh_seconds: float = Field(
        default=2.0, gt=0, description="How often aliases, routing plans and tokens are re-read."
    )
    micro_batch_max_wait_ms: float = Field(
        default=0.0, ge=0, description="Wait up to this long to batch concurrent requests (0: off)."
    )
    micro_batch_max_rows: int = Field(default=256, gt=0, description="Largest micro-batch.")
    max_rows_per_request: int = Field(
        default=10_000, gt=0, description="Rows one predict request may hold; more get 413 at once."
    )
    json_logs: bool = Field(default=False, description="Write the server log as one JSON object per line.")


class PredictionLogSection(_Section):
    path: str = Field(default="predictions", description="Prediction log directory.")
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    max_buffered_rows: int = Field(default=50_000, gt=0)
    write_ahead: bool = Field(
        default=True,
        description="Append each request's rows to a segment file before answering (a crash loses none).",
    )
    fsync: str = Field(
        default="never",
        pattern="^(never|always)$",
        description="never: a power loss may lose the last seconds; always: fsync (group commit) first.",
    )


class FeaturesSection(_Section):
    module: str = Field(
        default="",
        description="Feature definitions: an importable module name or a .py path relative to the workspace.",
    )
    online_store: str = Field(default="sqlite", pattern="^(sqlite|redis)$", description="sqlite or redis.")
    sqlite_path: str = Field(default="online.sqlite", description="SQLite online store file.")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis online store URL.")


class EvaluationSetSection(_Section):
    """A named evaluation set: the rows of a versioned table at a ref, within a time range."""

    table: str
    ref: str = "main"
    time: str = Field(description="Time column (or SQL expression) the range applies to.")
    start: str | None = Field(default=None, description="Inclusive lower bound, e.g. 2013-07-01.")
    end: str | None = Field(default=None, description="Exclusive upper bound, e.g. 2013-08-01.")
    period: str = Field(default="week", pattern="^(day|week|month)$", description="Time slice length.")
    slices: list[str] = Field(default_factory=list, description="Categorical columns to slice by.")
    fairness: list[str] = Field(default_factory=list, description="Group columns for fairness metrics.")
    description: str = ""
    commit: str | None = Field(
        default=None, description="Commit the set is pinned to (none: it follows the branch `ref`)."
    )


EXAMPLE_PROFILES: dict[str, dict[str, Any]] = {
    "accuracy-first": {
        "description": "Ranking quality first; latency and cost only break near-ties.",
        "primary": "auc",
        "weights": {"auc": 10, "log_loss": 2, "ece": 1, "latency_p99_ms": 0.5, "cost_per_million": 0.5},
        "constraints": ["latency_p99_ms <= 50"],
    },
    "edge": {
        "description": "On-device or tight-budget serving: latency, size and memory weigh most.",
        "primary": "auc",
        "weights": {
            "auc": 2, "latency_p99_ms": 4, "artifact_mb": 3, "memory_mb": 2, "cost_per_million": 1,
            "throughput_rows_per_s": 1,
        },
        "constraints": ["latency_p99_ms <= 10", "artifact_mb <= 5"],
    },
    "regulated": {
        "description": "Decisions about people: fairness and interpretability weigh as much as accuracy.",
        "primary": "auc",
        "weights": {"auc": 3, "dp_difference": 3, "eo_difference": 3, "interpretability": 3, "ece": 1},
        "constraints": ["dp_difference <= 0.1", "interpretability >= 0.5"],
    },
}  # fmt: skip


class EvaluateSection(_Section):
    cpu_hour_price: float = Field(default=0.05, ge=0, description="Price of one CPU-hour, for serving cost.")
    seed: int = Field(default=0, description="Seed of every random step of an evaluation.")
    resamples: int = Field(default=200, ge=20, description="Bootstrap resamples for confidence intervals.")
    profile: str = Field(default="accuracy-first", description="Profile used when none is named.")
    sets: dict[str, EvaluationSetSection] = Field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {name: dict(raw) for name, raw in EXAMPLE_PROFILES.items()},
        description="Leaderboard profiles: weights, directions, constraints (mlprod.evaluate.Profile).",
    )


class MonitorSection(_Section):
    """Monitoring defaults; each threshold is documented in ``docs/monitoring.md``."""

    window: str = Field(
        default="week", pattern="^(hour|day|week|month|quarter|year|[1-9][0-9]*|rows:[1-9][0-9]*)$",
        description="hour, day, week, month, quarter, year, or a number of rows (N or rows:N).",
    )  # fmt: skip
    bins: int = Field(default=20, ge=2, le=1000, description="Reference-quantile bins per numeric feature.")
    max_categories: int = Field(default=50, ge=1, description="Categories kept per feature; the rest: other.")
    reference_sample_rows: int = Field(
        default=20_000, ge=100, description="Rows sampled from the reference for the multivariate detector."
    )
    psi: float = Field(default=0.2, gt=0, description="Population stability index alert threshold.")
    ks: float = Field(default=0.1, gt=0, le=1, description="Kolmogorov-Smirnov statistic alert threshold.")
    wasserstein: float = Field(
        default=0.1, gt=0, description="Wasserstein distance / reference std threshold."
    )
    jensen_shannon: float = Field(default=0.1, gt=0, le=1, description="Jensen-Shannon distance threshold.")
    chi2_p_value: float = Field(default=0.01, gt=0, lt=1, description="Chi-squared p-value alert threshold.")
    drift_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="Significance level of each column's drift test (KS, chi-squared).",
    )
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted columns at which the whole window drifts."
    )
    missing_rate_increase: float = Field(default=0.05, ge=0, le=1, description="Missing-rate rise to alert.")
    out_of_range_rate: float = Field(default=0.01, ge=0, le=1, description="Share outside reference range.")
    unseen_rate: float = Field(default=0.01, ge=0, le=1, description="Share of categories never seen.")
    accuracy_drop: float = Field(
        default=0.05, ge=0, le=1, description="Accuracy drop (realized, else estimated) to alert."
    )
    webhook_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/]+\S*)?$",
        description="POST new alerts here (http or https); empty: off.",
    )


class Config(_Section):
    """The whole of ``mlprod.toml``."""

    workspace: WorkspaceSection = WorkspaceSection()
    database: DatabaseSection = DatabaseSection()
    artifacts: ArtifactsSection = ArtifactsSection()
    serve: ServeSection = ServeSection()
    prediction_log: PredictionLogSection = PredictionLogSection()
    features: FeaturesSection = FeaturesSection()
    evaluate: EvaluateSection = EvaluateSection()
    monitor: MonitorSection = MonitorSection()
    loop: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Loop specs by name, ``[loop.NAME]`` (validated by mlprod.loop.LoopSpec: this layer "
        "cannot import it).",
    )


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
        if not _is_table(info.annotation)
        for key, field in info.annotation.model_fields.items()  # type: ignore[union-attr]
        if not _is_table(field.annotation)
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
    """Serialize ``config`` as TOML: scalar keys per section, then its named sub-tables."""
    lines: list[str] = []
    for section_name, values in config.model_dump(exclude_none=True).items():
        if _is_table(type(config).model_fields[section_name].annotation):
            for name, table in values.items():
                lines.append(f"[{section_name}.{_toml_key(name)}]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
                lines.append("")
            continue
        lines.append(f"[{section_name}]")
        tables = {key: value for key, value in values.items() if isinstance(value, dict)}
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items() if key not in tables)
        lines.append("")
        for key, named in tables.items():
            for name, table in named.items():
                lines.append(f"[{section_name}.{key}.{_toml_key(name)}]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
                lines.append("")
    return "\n".join(lines)


def _is_table(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is dict


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_scalar(value)


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else _toml_scalar(key)


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
