"""Estimator specs: which model family to fit and with what parameters.

Built in: ``lightgbm`` (LGBMClassifier), ``xgboost`` (XGBClassifier), ``linear`` (logistic regression
behind median imputation and scaling of numeric inputs and one-hot encoding of categorical ones, as
one scikit-learn pipeline) and ``sklearn`` with the class named by ``class_path`` (e.g.
``sklearn.ensemble.HistGradientBoostingClassifier``). Any fitted
object with ``fit`` and ``predict_proba`` can also be trained directly; whether it can be stored
safely is decided when it is registered.

Examples:
    >>> EstimatorSpec("lightgbm", {"n_estimators": 50}).build().n_estimators
    50
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlprod.errors import InvalidInputError
from mlprod.suggest import did_you_mean

ESTIMATOR_KINDS = ("lightgbm", "xgboost", "linear", "sklearn")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": 200,
        "learning_rate": 0.1,
        "num_leaves": 63,
        "min_child_samples": 50,
        "colsample_bytree": 0.9,
        "random_state": 7,
        "deterministic": True,
        "verbosity": -1,
    },
    "xgboost": {
        "n_estimators": 200,
        "learning_rate": 0.1,
        "max_depth": 6,
        "tree_method": "hist",
        "random_state": 7,
    },
    "linear": {"C": 1.0, "max_iter": 1000},
    "sklearn": {},
}


@dataclass(frozen=True)
class EstimatorSpec:
    """A model family and its parameters (defaults filled in for the built-in families)."""

    kind: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    class_path: str | None = None

    def build(self, categorical: Sequence[int] = ()) -> Any:
        """A new, unfitted estimator; ``categorical`` are the indices of categorical input columns."""
        # One core is left free: OpenMP workers spin-wait, and a fit oversubscribed by one other
        # busy process was measured 6x slower than on one thread fewer.
        threads = max(1, (os.cpu_count() or 2) - 1)
        check_params(self.kind, self.params, self.class_path)
        params = {**_DEFAULTS.get(self.kind, {}), **self.params}
        try:
            if self.kind == "lightgbm":
                from lightgbm import LGBMClassifier

                return LGBMClassifier(**{"n_jobs": threads, **params})
            if self.kind == "xgboost":
                from xgboost import XGBClassifier

                return XGBClassifier(**{"n_jobs": threads, **params})
            if self.kind == "linear":
                return _linear_pipeline(params, categorical)
            if self.kind == "sklearn":
                return _import_class(self.class_path)(**params)
        except TypeError as exc:
            raise InvalidInputError(
                f"estimator {self.kind} does not accept params {self.params}: {exc}"
            ) from exc
        raise InvalidInputError(
            f"unknown estimator kind {self.kind!r}; expected one of {', '.join(ESTIMATOR_KINDS)}"
        )


def check_params(kind: str, params: Mapping[str, Any], class_path: str | None = None) -> None:
    """Refuse parameters the estimator does not know, naming them, the closest valid name and the
    valid ones.

    LightGBM and XGBoost take unknown keyword arguments and only warn, so a misspelled
    ``n_estimatorz`` would otherwise train with the default number of trees without a word.
    LightGBM also takes its native parameter names and aliases (``num_iterations``, ...).
    """
    if kind not in ESTIMATOR_KINDS:
        return  # refused, with the kinds there are, where the kind is checked
    accepted, shown, note = _accepted_params(kind, class_path)
    unknown = sorted(set(params) - accepted) if accepted is not None else []
    if unknown:
        named = ", ".join(f"{key!r}{did_you_mean(key, accepted or ())}" for key in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidInputError(
            f"unknown {kind} parameter{plural} {named}; valid parameters: {', '.join(shown)}{note}"
        )


def _accepted_params(kind: str, class_path: str | None) -> tuple[frozenset[str] | None, list[str], str]:
    """The names ``kind`` accepts (None: any), the ones to list, and a note on what else is taken."""
    if kind == "lightgbm":
        from lightgbm import LGBMClassifier

        named = set(LGBMClassifier().get_params())
        native = _lightgbm_native_params()
        if native is None:  # this LightGBM does not list its parameters: nothing can be checked
            return None, sorted(named), ""
        return frozenset(named | native), sorted(named), ", or any LightGBM parameter or alias"
    if kind == "xgboost":
        from xgboost import XGBClassifier

        named = set(XGBClassifier().get_params())
    elif kind == "linear":
        from sklearn.linear_model import LogisticRegression

        named = set(LogisticRegression().get_params())
    else:
        signature = inspect.signature(_import_class(class_path))
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            return None, [], ""  # it takes any keyword: its constructor decides
        named = {
            name
            for name, p in signature.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
    return frozenset(named), sorted(named), ""


def _lightgbm_native_params() -> set[str] | None:
    """Every LightGBM parameter name and alias, from the library itself (None when it cannot say)."""
    from lightgbm.basic import _ConfigAliases

    try:
        aliases = _ConfigAliases._get_all_param_aliases()
    except (AttributeError, TypeError):
        return None
    return {name for main, names in aliases.items() for name in (main, *names)}


def _linear_pipeline(params: dict[str, Any], categorical: Sequence[int]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # Category codes arrive as numbers with NaN for missing: missing becomes its own code (-1).
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=-1)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=20)),
        ]
    )
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    inputs = ColumnTransformer([("categorical", categories, list(categorical))], remainder=numbers)
    return Pipeline([("inputs", inputs), ("model", LogisticRegression(**params))])


def json_params(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters, with anything that is not plain JSON written as its repr."""
    raw = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return {k: v if _plain_json(v) else repr(v) for k, v in raw.items()}


def _plain_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN is not JSON, and PostgreSQL refuses it
    return isinstance(value, str | int | bool | type(None))


def _import_class(class_path: str | None) -> Any:
    if not class_path or "." not in class_path:
        raise InvalidInputError(
            "estimator kind 'sklearn' needs class_path, "
            "e.g. 'sklearn.ensemble.HistGradientBoostingClassifier'"
        )
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import estimator class {class_path!r}: {exc}") from exc
    if not (hasattr(cls, "fit") and hasattr(cls, "predict_proba")):
        raise InvalidInputError(f"{class_path} is not a classifier with fit and predict_proba")
    return cls
