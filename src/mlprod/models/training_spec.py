"""What a training run does, declared: data, label, features, split and estimator.

Features and the label are SQL expressions (DuckDB) over the dataset's columns, so the feature-set
definition is plain data whose hash goes into the run's lineage. With ``feature_set``, each dataset row
is first joined point-in-time to that feature set (from the workspace's feature definitions) at its
``event_time`` (default: ``time``), and the expressions may use the feature set's outputs too.
A spec is written in TOML::

    model = "flights-delay"
    dataset = "flights"
    label = "arr_delay > 15"
    where = "arr_delay IS NOT NULL"
    time = "time_hour"
    validation_fraction = 0.2
    categorical = ["carrier"]
    unknown_categories = "missing"   # serving: unseen carriers become missing ("error" refuses)

    [features]
    dep_hour = "sched_dep_time // 100"
    carrier = "carrier"

    [estimator]
    kind = "lightgbm"
    params = { n_estimators = 200 }
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlprod.errors import InvalidInputError
from mlprod.features import FeatureSet, FrameLineage, training_frame_with_lineage
from mlprod.lazy import lazy_module
from mlprod.models.estimators import ESTIMATOR_KINDS, EstimatorSpec, check_params
from mlprod.names import check_name
from mlprod.suggest import did_you_mean
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")

LABEL_COLUMN = "_label"
EVENT_COLUMN = "_event_time"
TIME_COLUMN = "_time"
EXTRA_PREFIX = "_extra_"


class EstimatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = "lightgbm"
    class_path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in ESTIMATOR_KINDS:
            raise ValueError(f"unknown estimator kind {kind!r}; expected one of {', '.join(ESTIMATOR_KINDS)}")
        return kind

    @model_validator(mode="after")
    def _known_params(self) -> EstimatorConfig:
        check_params(self.kind, self.params, self.class_path)
        return self

    def spec(self) -> EstimatorSpec:
        return EstimatorSpec(self.kind, dict(self.params), self.class_path)


class TrainingSpec(BaseModel):
    """A training run's declaration (see the module docstring for the TOML form)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    dataset: str | None = None
    dataset_ref: str = "main"
    feature_set: str | None = None
    event_time: str | None = None
    label: str
    features: dict[str, str]
    categorical: list[str] = Field(default_factory=list)
    where: str | None = None
    time: str
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    unknown_categories: Literal["error", "missing"] = "error"
    estimator: EstimatorConfig = Field(default_factory=EstimatorConfig)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        check_name(self.model, "model")
        if not self.features:
            raise ValueError("features must name at least one feature")
        for name in self.features:
            if name.startswith("_") or not name.isidentifier():
                raise ValueError(f"feature name {name!r} must be an identifier not starting with '_'")
        unknown = [c for c in self.categorical if c not in self.features]
        if unknown:
            raise ValueError(f"categorical names {unknown} that are not features")
        return self

    @property
    def numeric(self) -> list[str]:
        return [name for name in self.features if name not in self.categorical]

    def feature_set_hash(self, feature_set_version: str | None = None) -> str:
        """sha256 of the canonical feature-set definition: features, categorical, label, filter, and
        the version of the feature-store feature set they read (when there is one)."""
        definition = {
            "features": self.features,
            "categorical": sorted(self.categorical),
            "label": self.label,
            "where": self.where,
        }
        if feature_set_version is not None:
            definition["feature_set_version"] = feature_set_version
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_lineage(cls, model: str, lineage: Mapping[str, Any]) -> TrainingSpec:
        """The part of a spec that turns source rows into model inputs, as a run recorded it."""
        missing = [key for key in ("features", "label", "time") if key not in lineage]
        if missing:
            raise InvalidInputError(
                f"model {model!r} has no training lineage ({', '.join(missing)} not recorded): "
                "only models trained by a run (`mlprod models train`) can be rebuilt from their data"
            )
        return cls.parse(
            {
                "model": model,
                "dataset": lineage.get("dataset"),
                "feature_set": lineage.get("feature_set"),
                "event_time": lineage.get("event_time"),
                "label": lineage["label"],
                "features": lineage["features"],
                "categorical": lineage.get("categorical", []),
                "where": lineage.get("where"),
                "time": lineage["time"],
            },
            where=f"lineage of {model!r}",
        )

    @classmethod
    def from_toml(cls, path: Path) -> TrainingSpec:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read training spec {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{path}: not valid TOML: {exc}") from exc
        return cls.parse(raw, where=str(path))

    @classmethod
    def parse(cls, raw: dict[str, Any], *, where: str = "training spec") -> TrainingSpec:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(_problem(e["loc"], e["type"], e["msg"]) for e in exc.errors())
            raise InvalidInputError(f"{where}: {problems}") from exc


def _problem(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    """One validation error as ``where: what``; an unknown key gets the closest and the valid keys."""
    where = ".".join(map(str, loc)) or "spec"
    if kind == "extra_forbidden":
        section: type[BaseModel] = EstimatorConfig if tuple(loc[:-1]) == ("estimator",) else TrainingSpec
        keys = list(section.model_fields)
        unknown = str(loc[-1])
        return f"{where}: unknown key {unknown!r}{did_you_mean(unknown, keys)}; valid keys: {', '.join(keys)}"
    return f"{where}: {message.removeprefix('Value error, ')}"


def build_frame(
    spec: TrainingSpec, table: pa.Table, *, with_label: bool = True, extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Evaluate the spec's SQL over ``table``: one column per feature, plus label and time.

    ``extra`` names source columns carried along unchanged as ``_extra_<name>`` (e.g. for slicing).
    """
    columns = [f"{expression} AS {_quote(name)}" for name, expression in spec.features.items()]
    columns += [f"{_quote(name)} AS {_quote(EXTRA_PREFIX + name)}" for name in extra]
    if with_label:
        columns.append(f"({spec.label}) AS {LABEL_COLUMN}")
    columns.append(f"{spec.time} AS {TIME_COLUMN}")
    sql = f"SELECT {', '.join(columns)} FROM source" + (f" WHERE {spec.where}" if spec.where else "")
    try:
        with duckdb.connect() as conn:
            conn.register("source", table)
            return conn.execute(sql).df()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"training spec for {spec.model!r} does not evaluate on the data: {first}"
        ) from exc


def join_features(
    table: pa.Table, spec: TrainingSpec, feature_set: FeatureSet, workspace: Workspace | None
) -> tuple[pa.Table, FrameLineage]:
    """The dataset rows with the feature set's values as of each row's event time appended."""
    expression = spec.event_time or spec.time
    try:
        with duckdb.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            conn.register("source", table)
            entity_rows = conn.sql(f"SELECT *, ({expression}) AS {EVENT_COLUMN} FROM source").to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"event time {expression!r} of {spec.model!r} does not evaluate: {first}"
        ) from exc
    frame, lineage = training_frame_with_lineage(
        entity_rows, feature_set, event_time=EVENT_COLUMN, workspace=workspace
    )
    return frame.drop_columns([EVENT_COLUMN]), lineage


def split_by_time(frame: pd.DataFrame, validation_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Train on the earliest rows, validate on the latest ``validation_fraction`` by time.

    Rows sharing the cut time all go to validation, so no time is on both sides.
    """
    if len(frame) < 2:
        raise InvalidInputError(f"need at least 2 rows to split into train and validation, got {len(frame)}")
    times = frame[TIME_COLUMN]
    if times.isna().any():
        raise InvalidInputError(f"the time expression is null for {int(times.isna().sum())} rows")
    ordered = np.sort(times.to_numpy())
    cut = ordered[min(len(ordered) - 1, int(len(ordered) * (1 - validation_fraction)))]
    train, validation = frame[times < cut], frame[times >= cut]
    if len(train) == 0:
        raise InvalidInputError("every row has the same time: nothing is left to train on before the cut")
    return train.reset_index(drop=True), validation.reset_index(drop=True), cut


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
