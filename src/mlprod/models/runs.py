"""Training runs: fit from a declared spec, record everything needed to trust the result.

A run records its parameters, validation metrics, lineage (dataset version and sha256, the
feature-set definition hash), the code version (git commit when run inside a repository), package
versions, duration and peak memory. A run that fails is recorded as failed with its error, and
registers nothing; a run whose process died (``kill -9``) reads as ``interrupted``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from mlprod.data import TableStore
from mlprod.errors import NotFoundError
from mlprod.features import FeatureSet
from mlprod.features.catalog import load_catalog
from mlprod.identity import current_user
from mlprod.lazy import lazy_module
from mlprod.meta.lookup import row_by_id_prefix
from mlprod.meta.tables import runs
from mlprod.models.metrics import binary_classification_metrics
from mlprod.models.registry import ModelVersion, Registry
from mlprod.models.training import Progress, TrainedModel, check_label, train_classifier
from mlprod.models.training_spec import LABEL_COLUMN, TrainingSpec, build_frame, join_features, split_by_time
from mlprod.names import check_name
from mlprod.progress import Step, no_step
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")

TRACKED_PACKAGES = (
    "mlprod", "numpy", "pandas", "pyarrow", "duckdb", "scikit-learn", "lightgbm", "xgboost", "skops",
    "onnx", "onnxruntime",
)  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """One training run as stored."""

    id: str
    model: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    params: dict[str, Any]
    metrics: dict[str, float]
    lineage: dict[str, Any]
    code_version: str | None
    packages: dict[str, str]
    duration_seconds: float | None
    peak_memory_mb: float | None
    model_version: int | None
    error: str | None
    who: str
    host: str
    pid: int


@dataclass(frozen=True)
class RunResult:
    run: RunRecord
    trained: TrainedModel
    version: ModelVersion | None


def run_training(
    workspace: Workspace,
    spec: TrainingSpec,
    *,
    frame: pa.Table | pd.DataFrame | None = None,
    register: bool = True,
    alias: str | None = None,
    progress: Progress | None = None,
    feature_set: FeatureSet | None = None,
    step: Step | None = None,
) -> RunResult:
    """Train ``spec`` on its dataset version (or on ``frame``), record the run, register the model.

    With ``alias``, the alias points at the new version as part of its registration. The spec's
    ``feature_set`` is looked up in the workspace's feature definitions unless ``feature_set`` is given.
    ``progress(done, total)`` reports boosting rounds (LightGBM and XGBoost); ``step`` hears each phase.
    """
    if alias is not None:
        check_name(alias, "alias")
    run_id = uuid.uuid4().hex
    started = datetime.now(UTC)
    with workspace.engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                id=run_id, model=spec.model, status="running", started_at=started, params={}, metrics={},
                lineage={}, code_version=code_version(), packages=package_versions(), who=current_user(),
                host=socket.gethostname(), pid=os.getpid(),
            )
        )  # fmt: skip
    try:
        result = _train(
            workspace, spec, frame, run_id, register, alias, progress, feature_set, step or no_step
        )
    except BaseException as exc:
        _finish(workspace, run_id, started, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    record = _finish(
        workspace,
        run_id,
        started,
        status="finished",
        params=result.params,
        metrics=result.metrics,
        lineage=result.lineage,
        peak_memory_mb=result.peak_memory_mb,
        model_version=None if result.version is None else result.version.version,
    )
    return RunResult(record, result.trained, result.version)


@dataclass(frozen=True)
class _Outcome:
    trained: TrainedModel
    params: dict[str, Any]
    version: ModelVersion | None
    metrics: dict[str, float]
    lineage: dict[str, Any]
    peak_memory_mb: float


def _train(
    workspace: Workspace,
    spec: TrainingSpec,
    frame: pa.Table | pd.DataFrame | None,
    run_id: str,
    register: bool,
    alias: str | None,
    progress: Progress | None,
    feature_set: FeatureSet | None,
    step: Step,
) -> _Outcome:
    if frame is None:
        if spec.dataset is None:
            raise NotFoundError(f"training spec for {spec.model!r} names no dataset and no frame was given")
        step(f"reading {spec.dataset}@{spec.dataset_ref}")
        tables = TableStore(workspace)
        source = tables.resolve(spec.dataset, spec.dataset_ref)
        table = tables.checkout(spec.dataset, source.id)
        origin = {
            "dataset": spec.dataset,
            "dataset_ref": spec.dataset_ref,
            "dataset_commit": source.id,
            "dataset_rows": source.num_rows,
        }
    else:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        origin = {"dataset": None, "source": "in-memory frame", "source_rows": table.num_rows}
    feature_set = feature_set or _configured_feature_set(workspace, spec)
    if feature_set is not None:
        step(f"joining features of {feature_set.name}")
        table, frame_lineage = join_features(table, spec, feature_set, workspace)
        origin |= {
            "feature_set": frame_lineage.feature_set,
            "feature_set_version": frame_lineage.version,
            "feature_sources": frame_lineage.sources,
        }
    full = build_frame(spec, table)
    check_label(full, LABEL_COLUMN, described_as=f"label {spec.label!r}")
    train, validation, cut = split_by_time(full, spec.validation_fraction)
    check_label(
        train, LABEL_COLUMN, described_as=f"label {spec.label!r} in the training split (time < {cut})"
    )
    check_label(validation, LABEL_COLUMN, described_as=f"label {spec.label!r} in the validation split")
    step(f"training on {len(train):,} rows")
    with PeakMemory() as memory:
        trained = train_classifier(
            train,
            label=LABEL_COLUMN,
            numeric=spec.numeric,
            categorical=spec.categorical,
            estimator=spec.estimator.spec(),
            unknown_categories=spec.unknown_categories,
            progress=progress,
        )
    step(f"validating on {len(validation):,} rows")
    scores = binary_classification_metrics(validation[LABEL_COLUMN], trained.predict_frame(validation))
    metrics = {f"validation_{k}": v for k, v in scores.items()} | {"train_seconds": trained.seconds}
    lineage = origin | {
        "feature_set_hash": spec.feature_set_hash(None if feature_set is None else feature_set.version),
        "features": dict(spec.features),
        "categorical": list(spec.categorical),
        "label": spec.label,
        "where": spec.where,
        "time": spec.time,
        "event_time": spec.event_time,
        "split_time": str(cut),
        "train_rows": len(train),
        "validation_rows": len(validation),
        "run_id": run_id,
    }
    params = trained.params | {"estimator": spec.estimator.kind}
    version = None
    if register:
        step(f"registering {spec.model}")
        version = Registry(workspace).register(
            spec.model,
            trained.model,
            signature=trained.signature,
            params=params,
            metrics=metrics,
            lineage=lineage,
            tags=spec.tags,
            description=spec.description,
            run_id=run_id,
            sample=trained.signature.encoder(lenient=True).encode_frame(validation.head(512)),
            alias=alias,
            why=f"trained by run {run_id}",
        )
    return _Outcome(trained, params, version, metrics, lineage, memory.peak_mb)


def _configured_feature_set(workspace: Workspace, spec: TrainingSpec) -> FeatureSet | None:
    if spec.feature_set is None:
        return None
    return load_catalog(workspace).feature_set(spec.feature_set)


def _finish(workspace: Workspace, run_id: str, started: datetime, **values: Any) -> RunRecord:
    finished = datetime.now(UTC)
    values |= {"finished_at": finished, "duration_seconds": (finished - started).total_seconds()}
    with workspace.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.id == run_id).values(**values))
    return get_run(workspace, run_id)


def get_run(workspace: Workspace, run_id: str) -> RunRecord:
    """The run whose id starts with ``run_id`` (at least 6 characters)."""
    return _record(row_by_id_prefix(workspace.engine, runs, run_id, "run")._mapping)


def list_runs(workspace: Workspace, *, model: str | None = None, limit: int = 50) -> list[RunRecord]:
    query = runs.select().order_by(runs.c.started_at.desc()).limit(limit)
    if model is not None:
        query = query.where(runs.c.model == model)
    with workspace.engine.connect() as conn:
        return [_record(row._mapping) for row in conn.execute(query)]


def _record(row: Any) -> RunRecord:
    record = RunRecord(**row)
    if record.status == "running" and record.host == socket.gethostname() and not _alive(record.pid):
        return dataclasses.replace(record, status="interrupted")
    return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def code_version(cwd: str | None = None) -> str | None:
    """The git commit of the working directory's repository (``+dirty`` with local changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every few milliseconds.

    Reads ``/proc/self/statm`` (Linux); elsewhere falls back to the process-lifetime peak.
    """

    _INTERVAL = 0.005

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = _rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())

    def _sample(self) -> None:
        while not self._stop.wait(self._INTERVAL):
            self.peak_mb = max(self.peak_mb, _rss_mb())


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
