"""Interpretability of a model version: a declared score for its family, and what drives its scores.

The score is a *declared judgement*, not a measurement: how easily a person can follow how the model
family reaches a decision. ``DECLARED_SCORES`` holds mlprod's defaults (a logistic regression reads
as one weight per input, a decision tree as a few rules, boosted ensembles of hundreds of trees only
through attribution methods); callers override them with ``declared=``.

What drives the scores is measured: ``contributions`` splits each prediction's log-odds into one
additive part per input plus a bias, so that each row's parts sum to the model's raw score.

* LightGBM and XGBoost: the libraries' own TreeSHAP (``pred_contrib`` / ``pred_contribs``); the bias
  is the model's expected raw score.
* Linear models (a logistic regression, alone or at the end of a scikit-learn pipeline of
  transformers such as imputers, scalers and a ``ColumnTransformer`` one-hot encoding some inputs):
  the matrix goes through the pipeline's transformers, transformed column ``j`` contributes
  ``coef_j * (z_j - mean_j)`` where ``mean_j`` is the mean of column ``j`` *over the rows passed*
  (so contributions are relative to the average of those rows, not of the training data), and the
  bias is ``intercept + sum_j coef_j * mean_j``. Transformed columns are summed back onto the input
  they were made from (all one-hot columns of a category go to that category's input).

``interpretability_report`` turns contributions into a global importance per input (the mean
absolute contribution, normalised to sum to 1). Families without contributions fall back to split
gain where the model records it (decision trees, scikit-learn's histogram gradient boosting).

Examples:
    >>> from sklearn.linear_model import LogisticRegression
    >>> from mlprod.models import InputField, LoadedModel, Signature
    >>> from mlprod.models.flavors.sklearn_skops import SklearnPredictor
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    >>> fitted = LogisticRegression().fit(X, [0, 0, 1, 1])
    >>> signature = Signature(inputs=(InputField("a", "number"), InputField("b", "number")))
    >>> model = LoadedModel("m", 1, SklearnPredictor(fitted), signature, format="sklearn-skops")
    >>> model_family(model)
    'linear'
    >>> parts = contributions(model, X)
    >>> parts.shape, bool(np.allclose(parts.sum(axis=1), fitted.decision_function(X)))
    ((4, 3), True)
    >>> report = interpretability_report(model, X)
    >>> report.declared_score, list(report.importance)
    (0.9, ['a', 'b'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.evaluate.json_numbers import number
from mlprod.lazy import lazy_module
from mlprod.models.loaded import LoadedModel

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

DECLARED_SCORES: dict[str, float] = {
    "linear": 0.9,
    "decision_tree": 0.8,
    "lightgbm": 0.4,
    "xgboost": 0.4,
    "hist_gradient_boosting": 0.35,
    "other": 0.2,
}
"""Declared interpretability per model family, in [0, 1]: judgements, overridable by the caller."""

METHOD_CONTRIB = "mean |contribution| (pred_contrib)"
METHOD_LINEAR = "mean |coef·(x-mean)|"
METHOD_SPLIT_GAIN = "split gain"
METHOD_NONE = "unavailable"

_CONTRIBUTION_FAMILIES = ("lightgbm", "xgboost", "linear")
_INPUT_NAME = re.compile(r"in(\d+)(?:_.*)?", re.DOTALL)
_INDICATOR_PREFIX = "missingindicator_"


@dataclass(frozen=True)
class Interpretability:
    """A model's family, its declared score, and the global importance of each input."""

    family: str
    declared_score: float
    importance: dict[str, float] = field(default_factory=dict)
    method: str = METHOD_NONE

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "declared_score": self.declared_score,
            "importance": dict(self.importance),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interpretability:
        try:
            return cls(
                family=str(data["family"]),
                declared_score=float(data["declared_score"]),
                importance={str(k): number(v) for k, v in dict(data.get("importance", {})).items()},
                method=str(data.get("method", METHOD_NONE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"interpretability record must have family, declared_score and numeric importance: {exc}"
            ) from exc


def model_family(loaded: LoadedModel) -> str:
    """The family ``DECLARED_SCORES`` is keyed by: from the format and the native model's type."""
    if loaded.format == "lightgbm-text":
        return "lightgbm"
    if loaded.format == "xgboost-ubj":
        return "xgboost"
    if loaded.format != "sklearn-skops":
        return "other"
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    final = _flatten(loaded.predictor.native)[-1]
    if _is_linear(final):
        return "linear"
    if isinstance(final, DecisionTreeClassifier):
        return "decision_tree"
    if isinstance(final, HistGradientBoostingClassifier):
        return "hist_gradient_boosting"
    return "other"


def contributions(loaded: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    """Per-prediction additive contributions in log-odds, shape ``(n, n_inputs + 1)``.

    Column ``j < n_inputs`` is input ``j`` of the signature, the last column the bias; each row sums
    to the model's raw (log-odds) score. ``matrix`` is the encoded float64 input matrix.
    """
    x = _check_matrix(loaded, matrix)
    family = model_family(loaded)
    native = loaded.predictor.native
    if family == "lightgbm":
        parts = native.predict(x, pred_contrib=True)
    elif family == "xgboost":
        import xgboost as xgb

        parts = native.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True)
    elif family == "linear":
        parts = _linear_contributions(native, x)
    else:
        raise InvalidInputError(
            f"contributions are available for tree boosters (LightGBM, XGBoost) and linear models; "
            f"{loaded.model}/{loaded.version} is a {family} model (format {loaded.format})"
        )
    return np.asarray(parts, dtype=np.float64).reshape(len(x), x.shape[1] + 1)


def interpretability_report(
    loaded: LoadedModel,
    matrix: np.ndarray,
    *,
    declared: Mapping[str, float] | None = None,
    max_rows: int = 5000,
    seed: int = 0,
) -> Interpretability:
    """Family, declared score and global input importance of ``loaded`` on the rows of ``matrix``.

    Importance is the mean absolute contribution per input over at most ``max_rows`` rows (a seeded
    sample), normalised to sum to 1 and sorted from most to least important; for families without
    contributions it is the split gain the model records, or empty when it records none (also for a
    linear pipeline whose transformers mix inputs, such as PCA).
    """
    scores = {**DECLARED_SCORES, **_check_declared(declared or {})}
    if max_rows < 1:
        raise InvalidInputError(f"max_rows must be at least 1, got {max_rows}")
    x = _check_matrix(loaded, matrix)
    if len(x) > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), size=max_rows, replace=False))]
    family = model_family(loaded)
    raw: np.ndarray | None = None
    method = METHOD_NONE
    if family in _CONTRIBUTION_FAMILIES:
        try:
            raw = np.abs(contributions(loaded, x)[:, :-1]).mean(axis=0)
            method = METHOD_LINEAR if family == "linear" else METHOD_CONTRIB
        except InvalidInputError:
            if family != "linear":
                raise  # a linear pipeline may hold a transformer that mixes inputs (e.g. PCA)
    else:
        raw = _split_gain(loaded.predictor.native, x) if loaded.format == "sklearn-skops" else None
        method = METHOD_SPLIT_GAIN if raw is not None else METHOD_NONE
    return Interpretability(
        family=family,
        declared_score=scores.get(family, scores["other"]),
        importance={} if raw is None else _normalised(loaded.signature.input_names, raw),
        method=method,
    )


def _check_matrix(loaded: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    x = np.asarray(matrix, dtype=np.float64)
    width = len(loaded.signature.inputs)
    if x.ndim != 2 or x.shape[1] != width:
        raise InvalidInputError(
            f"expected an encoded matrix of shape (n, {width}) for inputs {loaded.signature.input_names}, "
            f"got shape {x.shape}; encode rows with loaded.encoder first"
        )
    if len(x) == 0:
        raise InvalidInputError("the matrix has no rows: contributions need at least one prediction")
    return x


def _check_declared(declared: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for family, score in declared.items():
        value = float(score)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InvalidInputError(f"declared interpretability of {family!r} must be in [0, 1], got {score}")
        checked[str(family)] = value
    return checked


def _normalised(names: list[str], raw: np.ndarray) -> dict[str, float]:
    total = float(raw.sum())
    shares = raw / total if total > 0 else np.zeros_like(raw)
    order = np.argsort(-shares, kind="stable")
    return {names[i]: float(shares[i]) for i in order}


# -- scikit-learn pipelines -----------------------------------------------------------------------


def _flatten(estimator: Any) -> list[Any]:
    """The steps of a (possibly nested) pipeline in order; a lone estimator is one step."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return [step for _, inner in estimator.steps for step in _flatten(inner)]
    return [estimator]


def _is_linear(estimator: Any) -> bool:
    from sklearn.linear_model import LogisticRegression

    if isinstance(estimator, LogisticRegression):
        return True
    module = type(estimator).__module__
    return module.startswith("sklearn.linear_model") and hasattr(estimator, "coef_")


def _linear_contributions(native: Any, x: np.ndarray) -> np.ndarray:
    *transformers, final = _flatten(native)
    z, owners = x, np.arange(x.shape[1])
    for step in transformers:
        z, owners = _trace(step, z, owners)
    coef = np.asarray(final.coef_, dtype=np.float64)
    if coef.ndim == 2 and coef.shape[0] != 1:
        raise InvalidInputError(
            f"contributions need a binary linear model; this one has {coef.shape[0]} classes"
        )
    coef = coef.ravel()
    intercept = float(np.ravel(final.intercept_)[0]) if np.size(final.intercept_) else 0.0
    mean = z.mean(axis=0)
    to_inputs = np.zeros((len(owners), x.shape[1]))
    to_inputs[np.arange(len(owners)), owners] = 1.0
    parts = np.empty((len(x), x.shape[1] + 1))
    parts[:, :-1] = ((z - mean) * coef) @ to_inputs
    parts[:, -1] = intercept + float(coef @ mean)
    return parts


def _trace(step: Any, x: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transform ``x`` through a fitted step; ``owners[j]`` is the input column ``x[:, j]`` came
    from, and the second result says the same for each output column."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if step is None or (isinstance(step, str) and step == "passthrough"):
        return x, owners
    if isinstance(step, Pipeline):
        for inner in _flatten(step):
            x, owners = _trace(inner, x, owners)
        return x, owners
    out = _dense(step.transform(x))
    if isinstance(step, ColumnTransformer):
        out_owners = np.full(out.shape[1], -1)
        for name, inner, columns in step.transformers_:
            chosen = np.atleast_1d(np.arange(x.shape[1])[columns])
            where = step.output_indices_[name]
            if (isinstance(inner, str) and inner == "drop") or len(chosen) == 0 or where.start == where.stop:
                continue
            _, out_owners[where] = _trace(inner, x[:, chosen], owners[chosen])
        if (out_owners < 0).any():
            raise InvalidInputError(
                "contributions: cannot tell which input some ColumnTransformer outputs come from"
            )
        return out, out_owners
    return out, _owners_by_name(step, owners, out.shape[1])


def _owners_by_name(step: Any, owners: np.ndarray, width: int) -> np.ndarray:
    """Which input each output column of a fitted transformer comes from, by its output names."""
    names = [f"in{j}" for j in range(len(owners))]
    try:
        out_names = [str(n) for n in step.get_feature_names_out(names)]
    except (AttributeError, TypeError, ValueError):
        out_names = None
    if out_names is not None and len(out_names) == width:
        local = [_input_index(n) for n in out_names]
        if all(j is not None and j < len(owners) for j in local):
            return owners[np.asarray(local, dtype=np.int64)]
    if out_names is None and width == len(owners):
        return owners  # a column-wise transformer that does not name its outputs
    if len(set(owners.tolist())) == 1:
        return np.full(width, owners[0])
    raise InvalidInputError(
        f"contributions: cannot map the outputs of {type(step).__name__} back to the inputs they come "
        "from; linear pipelines may use imputers, scalers, one-hot encoders and ColumnTransformer"
    )


def _input_index(name: str) -> int | None:
    match = _INPUT_NAME.fullmatch(name.removeprefix(_INDICATOR_PREFIX))
    return None if match is None else int(match.group(1))


def _dense(values: Any) -> np.ndarray:
    if hasattr(values, "toarray"):
        values = values.toarray()
    return np.asarray(values, dtype=np.float64)


def _split_gain(native: Any, x: np.ndarray) -> np.ndarray | None:
    """Total split gain per input for tree models that record it; None for anything else."""
    *transformers, final = _flatten(native)
    owners = np.arange(x.shape[1])
    z = x
    try:
        for step in transformers:
            z, owners = _trace(step, z, owners)
    except InvalidInputError:
        return None
    gain = _final_gain(final, len(owners))
    if gain is None:
        return None
    per_input = np.zeros(x.shape[1])
    np.add.at(per_input, owners, gain)
    return per_input


def _final_gain(final: Any, width: int) -> np.ndarray | None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if isinstance(final, HistGradientBoostingClassifier):
        gain = np.zeros(width)
        for round_predictors in final._predictors:  # no public accessor for the fitted trees
            for predictor in round_predictors:
                splits = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
                np.add.at(gain, splits["feature_idx"].astype(np.int64), splits["gain"])
        return gain
    importances = getattr(final, "feature_importances_", None)
    if importances is None:
        return None
    values = np.asarray(importances, dtype=np.float64)
    return values if values.shape == (width,) else None
