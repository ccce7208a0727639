"""A model version's reference: what its windows of served predictions are compared with.

Built once, in one streaming pass over the version's training or evaluation data, which the model
scores as it goes: the column profile (features, prediction, label), the score calibration for
label-free performance estimation (when the data has labels), and the multivariate detector
(fitted on a bounded uniform sample of the numeric features). Stored as one JSON artifact per
version, recorded in ``monitor_profiles``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from mlprod.errors import InvalidInputError, MonitorColumnError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import monitor_profiles
from mlprod.models import LoadedModel, ModelVersion, Signature
from mlprod.monitor.multivariate import PcaDetector
from mlprod.monitor.performance import PerformanceEstimator, ScoreSketch
from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
from mlprod.monitor.sample import BottomKSample
from mlprod.workspace import Workspace

PREDICTION = "prediction"
LABEL = "label"
_FORMAT = "mlprod.monitor.reference"


def spec_of(signature: Signature, *, labelled: bool) -> ProfileSpec:
    """The profile spec of a model's inputs: numbers as numeric, categories as categorical."""
    return ProfileSpec(
        numeric=tuple(f.name for f in signature.inputs if f.kind == "number"),
        categorical=tuple(f.name for f in signature.inputs if f.kind == "category"),
        prediction=PREDICTION,
        label=LABEL if labelled else None,
    )


@dataclass(frozen=True)
class ReferenceOptions:
    """How a reference is built: profile bins and vocabularies, the estimator, the sample size."""

    bins: int = 20
    max_categories: int = 50
    sample_rows: int = 20_000
    seed: int = 0


@dataclass
class Reference:
    """The reference profile plus, when they could be fitted, the estimator and the multivariate detector."""

    profile: Profile
    estimator: PerformanceEstimator | None
    multivariate: PcaDetector | None

    @property
    def spec(self) -> ProfileSpec:
        return self.profile.spec

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "version": 1,
                "profile": json.loads(self.profile.to_bytes()),
                "estimator": self.estimator.to_dict() if self.estimator else None,
                "multivariate": self.multivariate.to_dict() if self.multivariate else None,
            },
            allow_nan=False,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        try:
            document = json.loads(data)
            if document.get("format") != _FORMAT:
                raise ValueError(f"format {document.get('format')!r}")
            estimator, multivariate = document["estimator"], document["multivariate"]
            return cls(
                Profile.from_bytes(json.dumps(document["profile"]).encode()),
                PerformanceEstimator.from_dict(estimator) if estimator else None,
                PcaDetector.from_dict(multivariate) if multivariate else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"not a serialized monitoring reference: {exc}") from exc


def build_reference(
    model: LoadedModel,
    batches: Iterable[pa.Table | pa.RecordBatch],
    *,
    label: str | None = None,
    options: ReferenceOptions | None = None,
) -> Reference:
    """Score ``batches`` with ``model`` and profile them in one pass; ``label`` names the label column."""
    from mlprod.serve.batch_predict import ArrowEncoder  # here: importing mlprod.serve loads the web app

    spec = spec_of(model.signature, labelled=label is not None)
    encoder = ArrowEncoder(model.encoder)

    def scored() -> Iterator[pa.Table]:
        for batch in batches:
            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            predictions = model.predict_matrix(encoder.encode(table))
            columns = {name: table.column(name) for name in spec.features}
            columns[PREDICTION] = pa.array(predictions)
            if label is not None:
                columns[LABEL] = _labels(table, label)
            yield pa.table(columns)

    return reference_of_rows(scored(), spec, options=options)


def reference_of_rows(
    batches: Iterable[pa.Table], spec: ProfileSpec, *, options: ReferenceOptions | None = None
) -> Reference:
    """The reference of rows already scored: the features, ``prediction`` (the score) and, when
    ``spec`` has a label, ``label``, in one pass. Models that mlprod does not run come in here."""
    options = options or ReferenceOptions()
    builder = ReferenceBuilder(spec, bins=options.bins, max_categories=options.max_categories)
    sample = BottomKSample(options.sample_rows, seed=options.seed)
    scores = ScoreSketch()
    for profiled in batches:
        builder.update(profiled)
        sample.add(profiled.select([*spec.kinds()]))
        update_scores(scores, profiled)
    if builder.rows == 0:
        raise InvalidInputError("reference: the data has no rows")
    return Reference(builder.finish(), _estimator(scores, options.seed), _multivariate(sample.table(), spec))


def _labels(table: pa.Table, label: str) -> pa.Array:
    if label not in table.column_names:
        raise InvalidInputError(f"reference: no label column {label!r}; columns: {table.column_names}")
    try:
        values = pc.cast(table.column(label), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(
            f"reference: label column {label!r} must hold 0/1 or booleans: {exc}"
        ) from exc
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _estimator(scores: ScoreSketch, seed: int) -> PerformanceEstimator | None:
    """CBPE calibrated on the reference, when it has labels of both classes."""
    if scores.negatives.sum() == 0 or scores.positives.sum() == 0:
        return None
    return PerformanceEstimator(seed=seed).fit_sketch(scores)


def update_scores(scores: ScoreSketch, rows: pa.Table) -> None:
    """Add the rows' scores (and labels, when the table has them) to ``scores``.

    A prediction that is missing, not finite or outside [0, 1] is left out here (the profile counts
    it as missing), so one bad row cannot stop monitoring.
    """
    if PREDICTION not in rows.column_names:
        raise MonitorColumnError(
            f"monitor: the rows have no {PREDICTION!r} column (the model's score, probability of class 1); "
            f"columns: {', '.join(rows.column_names)}. Name the score column: FrameColumns(score=...) in "
            "monitor_frames, --score in `mlprod monitor run`"
        )
    predictions = pc.cast(rows.column(PREDICTION), pa.float64()).to_numpy(zero_copy_only=False)
    valid = np.isfinite(predictions) & (predictions >= 0) & (predictions <= 1)
    labels = None
    if LABEL in rows.column_names:
        labels = pc.cast(rows.column(LABEL), pa.float64()).to_numpy(zero_copy_only=False)[valid]
    scores.update(predictions[valid], labels)


def numeric_matrix(table: pa.Table, columns: tuple[str, ...]) -> np.ndarray:
    """The numeric features as one float64 matrix (rows x columns), NaN where missing."""
    if not columns:
        return np.empty((table.num_rows, 0))
    return np.column_stack(
        [pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False) for name in columns]
    )


def _multivariate(rows: pa.Table, spec: ProfileSpec) -> PcaDetector | None:
    """The PCA detector over the numeric features, when there are two or more and enough rows."""
    if len(spec.numeric) < 2:
        return None
    try:
        return PcaDetector.fit(numeric_matrix(rows, spec.numeric), spec.numeric)
    except InvalidInputError:  # too few rows, or fewer than two columns that vary
        return None


class ReferenceStore:
    """References of model versions: one artifact each, listed in ``monitor_profiles``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def save(self, version: ModelVersion, reference: Reference, *, source: str) -> str:
        sha = self._ws.artifacts.put_bytes(reference.to_bytes())
        row: dict[str, Any] = {
            "artifact_sha256": sha, "rows": reference.profile.rows, "columns": list(reference.spec.kinds()),
            "source": source, "created_at": datetime.now(UTC), "who": current_user(),
        }  # fmt: skip
        key = (monitor_profiles.c.model == version.model) & (monitor_profiles.c.version == version.version)
        with self._ws.engine.begin() as conn:
            if conn.execute(sa.select(monitor_profiles.c.model).where(key)).first() is None:
                conn.execute(
                    monitor_profiles.insert().values(model=version.model, version=version.version, **row)
                )
            else:
                conn.execute(monitor_profiles.update().where(key).values(**row))
        return sha

    def load(self, model: str, version: int) -> Reference:
        key = (monitor_profiles.c.model == model) & (monitor_profiles.c.version == version)
        with self._ws.engine.connect() as conn:
            sha = conn.scalar(sa.select(monitor_profiles.c.artifact_sha256).where(key))
        if sha is None:
            raise NotFoundError(
                f"{model}/{version} has no monitoring reference; build one with "
                f"`mlprod monitor profile --model {model}/{version} --data FILE`"
            )
        return Reference.from_bytes(self._ws.artifacts.get_bytes(sha))
