"""Fitting a binary classifier on a pandas frame through the model's own encoder."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module
from mlprod.models.estimators import EstimatorSpec, json_params
from mlprod.models.signature import Signature, UnknownCategories

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")


@dataclass(frozen=True)
class TrainedModel:
    """A fitted estimator with the signature it was trained under."""

    model: Any
    signature: Signature
    params: dict[str, Any]
    train_rows: int
    seconds: float

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities for the rows of ``frame`` (unknown categories as missing)."""
        matrix = self.signature.encoder(lenient=True).encode_frame(frame)
        return np.asarray(self.model.predict_proba(matrix)[:, 1], dtype=np.float64)


def train_classifier(
    frame: pd.DataFrame,
    *,
    label: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    estimator: EstimatorSpec | Any = None,
    unknown_categories: UnknownCategories = "error",
    progress: Progress | None = None,
) -> TrainedModel:
    """Fit a binary classifier predicting ``label`` (0/1) from the named inputs.

    ``estimator`` is an ``EstimatorSpec`` (LightGBM by default) or any unfitted object with
    ``fit`` and ``predict_proba``. ``unknown_categories`` is the serving policy recorded in the
    signature (see ``Signature.infer``). ``progress(done, total)`` is called after each boosting round
    of LightGBM and XGBoost models.
    """
    check_label(frame, label)
    signature = Signature.infer(frame, numeric, categorical, unknown_categories=unknown_categories)
    if _is_spec(estimator):
        model = (estimator or EstimatorSpec()).build(categorical=signature.categorical_indices)
    else:
        model = estimator
    if not (hasattr(model, "fit") and hasattr(model, "predict_proba")):
        raise InvalidInputError(f"{type(model).__qualname__} is not a classifier with fit and predict_proba")
    matrix = signature.encoder().encode_frame(frame)
    y = frame[label].to_numpy(dtype=np.int64)
    fit_args: dict[str, Any] = {}
    family = type(model).__module__.split(".")[0]
    if family == "lightgbm":
        fit_args["categorical_feature"] = signature.categorical_indices
    if progress is not None:
        _report_rounds(model, family, fit_args, progress)
    started = time.perf_counter()
    try:
        model.fit(matrix, y, **fit_args)
    except Exception as exc:
        # Bad parameters and unsuitable data surface as TypeError/ValueError or the library's own
        # error; say so as the user's error. Anything else is ours and propagates.
        if not isinstance(exc, TypeError | ValueError) and type(exc).__name__ not in _LIBRARY_ERRORS:
            raise
        raise InvalidInputError(
            f"{type(model).__qualname__} could not be fitted (check estimator.params): {exc}"
        ) from exc
    return TrainedModel(
        model=model,
        signature=signature,
        params=json_params(model),
        train_rows=len(frame),
        seconds=time.perf_counter() - started,
    )


def check_label(frame: pd.DataFrame, label: str, *, described_as: str | None = None) -> None:
    """Refuse a label that is missing, has gaps, is not 0/1 (or boolean), or is constant."""
    what = described_as or f"label column {label!r}"
    if label not in frame.columns:
        raise InvalidInputError(f"training data has no label column {label!r}; it has {list(frame.columns)}")
    if len(frame) == 0:
        raise InvalidInputError(f"training data is empty ({what})")
    y = frame[label]
    if y.isna().any():
        raise InvalidInputError(f"{what} has {int(y.isna().sum())} missing values")
    classes = set(np.unique(y.to_numpy()).tolist())
    if not classes <= {0, 1}:
        raise InvalidInputError(f"{what} must be 0/1 or boolean, got values {sorted(classes)[:5]}")
    if len(classes) < 2:
        raise InvalidInputError(f"{what} is constant ({int(classes.pop())}): nothing to learn")


Progress = Callable[[int, int], None]
_LIBRARY_ERRORS = frozenset({"LightGBMError", "XGBoostError"})


def _report_rounds(model: Any, family: str, fit_args: dict[str, Any], progress: Progress) -> None:
    total = int(getattr(model, "n_estimators", 0) or 0)
    if family == "lightgbm":
        fit_args["callbacks"] = [lambda env: progress(env.iteration + 1, env.end_iteration)]
    elif family == "xgboost":
        from xgboost.callback import TrainingCallback

        class _Rounds(TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                progress(epoch + 1, total)
                return False

        model.set_params(callbacks=[_Rounds()])


def _is_spec(estimator: Any) -> bool:
    return estimator is None or isinstance(estimator, EstimatorSpec)
