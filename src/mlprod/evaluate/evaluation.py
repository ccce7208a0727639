"""Evaluate a registered model version on a named evaluation set, and store the report with it.

The set's rows are read at the commit it is pinned to (or the head of the branch it follows), turned
into the model's inputs exactly as its training run did (the run's lineage: feature expressions,
label, filter, and the feature-store feature set joined point-in-time), and scored by the version as
the registry loads it. Every random step takes the seed, so a rerun on the same commit gives the same
report, except for the serving cost, which is measured on this machine at this moment.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError
from mlprod.evaluate.evaluation_set import EvaluationSet, LoadedRows, get_evaluation_set, load_rows
from mlprod.evaluate.fairness import fairness_report
from mlprod.evaluate.importance import permutation_importance
from mlprod.evaluate.interpretability import interpretability_report
from mlprod.evaluate.quality import classification_quality
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.report_store import save_report
from mlprod.evaluate.robustness import robustness_report
from mlprod.evaluate.same_rows import rows_digest
from mlprod.evaluate.serving_cost import measure_serving_cost
from mlprod.evaluate.slices import slice_report
from mlprod.features.catalog import load_catalog
from mlprod.models import LoadedModel, ModelVersion, Registry, TrainingSpec, build_frame
from mlprod.models.training_spec import EXTRA_PREFIX, LABEL_COLUMN, TIME_COLUMN, join_features
from mlprod.progress import Step, no_step
from mlprod.workspace import Workspace

LATENCY_SAMPLE_ROWS = 500


@dataclass(frozen=True)
class EvaluationOptions:
    """How much to measure. Defaults come from ``[evaluate]`` in ``mlprod.toml``.

    ``fairness_threshold`` is the decision threshold of the fairness rates; None selects as many
    rows as are positive (``rate_matching_threshold``).
    """

    seed: int = 0
    resamples: int = 200
    cpu_hour_price: float = 0.05
    serving_cost: bool = True
    latency_requests: int = 1000
    importance_repeats: int = 20
    importance_rows: int = 20_000
    interpretability_rows: int = 2_000
    min_slice_rows: int = 200
    fairness_threshold: float | None = None

    @classmethod
    def from_workspace(cls, workspace: Workspace, **overrides: Any) -> EvaluationOptions:
        section = workspace.config.evaluate
        base = {
            "seed": section.seed,
            "resamples": section.resamples,
            "cpu_hour_price": section.cpu_hour_price,
        }
        return cls(**(base | overrides))


@dataclass(frozen=True)
class ScoredRows:
    """An evaluation set's rows as one model sees them, with its predictions."""

    frame: pd.DataFrame
    matrix: np.ndarray
    y: np.ndarray
    probability: np.ndarray
    times: np.ndarray


def evaluate_model(
    workspace: Workspace,
    ref: str,
    evaluation_set: str | EvaluationSet,
    *,
    options: EvaluationOptions | None = None,
    step: Step | None = None,
) -> EvaluationReport:
    """Measure ``ref`` on the set, store the report with the model version, and return it."""
    started = time.perf_counter()
    options = options or EvaluationOptions.from_workspace(workspace)
    step = step or no_step
    chosen = (
        get_evaluation_set(workspace, evaluation_set) if isinstance(evaluation_set, str) else evaluation_set
    )
    registry = Registry(workspace)
    version = registry.get(ref)
    step(f"reading {chosen.describe()}")
    loaded_rows = load_rows(workspace, chosen)
    digest = rows_digest(loaded_rows.rows, TableStore(workspace).info(chosen.table).key)
    loaded = registry.load(version)
    step("scoring")
    scored = score_rows(workspace, version, loaded, loaded_rows, chosen)
    names = loaded.signature.input_names
    categorical = loaded.signature.categorical_indices
    seed = options.seed

    step("quality and slices")
    quality = classification_quality(scored.y, scored.probability)
    extra = {name: scored.frame[EXTRA_PREFIX + name].to_numpy() for name in chosen.slices}
    slices = slice_report(
        scored.y, scored.probability, times=scored.times, period=chosen.period, columns=extra,
        min_rows=options.min_slice_rows,
    )  # fmt: skip
    step("robustness under shifts")
    robustness = robustness_report(
        loaded.predict_matrix, scored.matrix, scored.y, names=names, categorical=categorical,
        times=scored.times, seed=seed,
    )  # fmt: skip
    step("fairness with bootstrap intervals")
    threshold = options.fairness_threshold
    if threshold is None:
        threshold = rate_matching_threshold(scored.y, scored.probability)
    fairness = tuple(
        fairness_report(
            scored.y,
            scored.probability,
            scored.frame[EXTRA_PREFIX + column].to_numpy(),
            column=column,
            threshold=threshold,
            resamples=options.resamples,
            seed=seed,
        )
        for column in chosen.fairness
    )
    step("feature usefulness (permutation importance)")
    importance = permutation_importance(
        loaded.predict_matrix, scored.matrix, scored.y, names=names, repeats=options.importance_repeats,
        max_rows=options.importance_rows, seed=seed,
    )  # fmt: skip
    interpretability = interpretability_report(
        loaded, scored.matrix, max_rows=options.interpretability_rows, seed=seed
    )
    serving = None
    if options.serving_cost:
        step("serving cost (latency, throughput, memory)")
        serving = measure_serving_cost(
            workspace, version, request_rows(scored.frame, names, seed=seed),
            requests=options.latency_requests, cpu_hour_price=options.cpu_hour_price,
        )  # fmt: skip
    report = EvaluationReport(
        id=uuid.uuid4().hex,
        model=version.model,
        version=version.version,
        evaluation_set=chosen,
        dataset_commit=loaded_rows.commit,
        seed=seed,
        created_at=datetime.now(UTC),
        rows=len(scored.y),
        quality=quality,
        slices=slices,
        robustness=robustness,
        fairness=fairness,
        serving=serving,
        interpretability=interpretability,
        importance=importance,
        seconds=time.perf_counter() - started,
        host=this_host(),
        rows_digest=digest,
    )
    save_report(workspace, report)
    return report


def this_host() -> dict[str, str]:
    """Which machine measured: host name, CPU model and count (Linux reads ``/proc/cpuinfo``)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"name": platform.node(), "cpu": cpu, "cpus": str(os.cpu_count() or 0)}


def rate_matching_threshold(y: np.ndarray, probability: np.ndarray) -> float:
    """The threshold that selects as many rows as are positive: the operating point used for the
    fairness rates when none is given. A fixed 0.5 would let a model that never predicts a delay
    (every score under 0.5) look perfectly fair, since it selects nobody in any group."""
    return float(np.quantile(probability, 1.0 - float(np.mean(y))))


def score_rows(
    workspace: Workspace,
    version: ModelVersion,
    loaded: LoadedModel,
    rows: LoadedRows,
    evaluation_set: EvaluationSet,
) -> ScoredRows:
    """The set's rows turned into ``version``'s inputs as its training run did, and scored."""
    spec = TrainingSpec.from_lineage(version.model, version.lineage)
    table = rows.rows
    carried = list(dict.fromkeys((*evaluation_set.slices, *evaluation_set.fairness)))
    absent = [name for name in carried if name not in table.column_names]
    if absent:
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} slices by {absent}, which table "
            f"{evaluation_set.table!r} does not have (columns: {', '.join(table.column_names)})"
        )
    if spec.feature_set is not None:
        feature_set = load_catalog(workspace).feature_set(spec.feature_set)
        table, _ = join_features(table, spec, feature_set, workspace)
    frame = build_frame(spec, table, extra=carried)
    labels = frame[LABEL_COLUMN]
    if labels.isna().any() or not set(labels.unique().tolist()) <= {0, 1}:
        raise InvalidInputError(
            f"label {spec.label!r} must be 0/1 on every row of evaluation set {evaluation_set.name!r}"
        )
    y = labels.to_numpy(dtype=np.float64)
    if y.min() == y.max():
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} has only one class of {spec.label!r} "
            f"({len(y)} rows): quality cannot be measured"
        )
    matrix = loaded.signature.encoder(lenient=True).encode_frame(frame)
    return ScoredRows(
        frame=frame,
        matrix=matrix,
        y=y,
        probability=loaded.predict_matrix(matrix),
        times=pd.to_datetime(frame[TIME_COLUMN], utc=True).dt.tz_localize(None).to_numpy(),
    )


def request_rows(
    frame: pd.DataFrame, inputs: list[str], *, seed: int, shuffle: bool = True
) -> list[dict[str, Any]]:
    """The rows as JSON-like request objects (missing values as None); with ``shuffle``, a seeded
    sample of at most ``LATENCY_SAMPLE_ROWS``."""
    chosen = frame.sample(n=min(LATENCY_SAMPLE_ROWS, len(frame)), random_state=seed) if shuffle else frame
    sample = chosen[inputs]
    values = sample.astype(object).where(sample.notna(), None)
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in values.to_dict(orient="records")
    ]
