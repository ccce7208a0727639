"""Score calibration for label-free performance estimation, and density-ratio weights.

``Calibration`` maps a binary classifier's score to the probability that the label is 1, learned on
reference data by isotonic regression over the bins of a ``ScoreSketch``: the fitted curve is a
plain array (one probability per bin), so it serializes to JSON and applies to a window's histogram
without touching its rows.

``density_ratio_weights`` reweights reference rows to look like a window: a domain classifier
(gradient-boosted trees) learns to tell reference rows from window rows on the features, and a
reference row's weight is its odds of belonging to the window, ``p / (1 - p)``, corrected by the
sample sizes, normalised to mean 1 and clipped. Reference probabilities are cross-fitted (each half
of the reference is scored by a classifier trained without it), so the classifier cannot recognise
the very rows it weights. No label of the window is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from mlprod.errors import InvalidInputError

MAX_CATEGORIES = 200  # most frequent reference categories kept per column; the rest share one code


class Calibration:
    """Probability of label 1 per score bin, isotonic (non-decreasing) in the score.

    Examples:
        >>> edges = np.linspace(0.0, 1.0, 5)
        >>> calibration = Calibration.fit(edges, negatives=[9, 6, 4, 1], positives=[1, 4, 6, 9])
        >>> calibration.probabilities.round(2).tolist()
        [0.1, 0.4, 0.6, 0.9]
        >>> calibration(np.array([0.05, 0.99])).round(2).tolist()
        [0.1, 0.9]
    """

    def __init__(self, edges: np.ndarray, probabilities: np.ndarray) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.probabilities.shape != (len(self.edges) - 1,):
            raise InvalidInputError(
                f"Calibration: expected one probability per bin ({len(self.edges) - 1}), "
                f"got {self.probabilities.shape}."
            )

    @classmethod
    def fit(cls, edges: np.ndarray, *, negatives: ArrayLike, positives: ArrayLike) -> Calibration:
        """Isotonic regression of the label rate per bin, weighted by the (possibly weighted) rows in it.

        Bins without labelled rows take the curve interpolated between their neighbours' centres.
        """
        edges = np.asarray(edges, dtype=np.float64)
        neg = np.asarray(negatives, dtype=np.float64)
        pos = np.asarray(positives, dtype=np.float64)
        total = neg + pos
        seen = total > 0
        if not seen.any():
            raise InvalidInputError(
                "Calibration: the reference has no labelled rows; it needs some of each label."
            )
        centres = (edges[:-1] + edges[1:]) / 2
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(centres[seen], pos[seen] / total[seen], sample_weight=total[seen])
        return cls(edges, np.asarray(model.predict(centres), dtype=np.float64))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of scores in [0, 1] (the probability of the bin they fall in)."""
        index = np.clip(np.searchsorted(self.edges, scores, side="right") - 1, 0, len(self.probabilities) - 1)
        return self.probabilities[index]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "probabilities": self.probabilities.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        return cls(
            np.array(data["edges"], dtype=np.float64), np.array(data["probabilities"], dtype=np.float64)
        )


class FeatureEncoder:
    """Turns named feature columns into the numeric matrix a domain classifier reads.

    Numeric columns become float (missing values NaN); any other column is categorical, coded by its
    ``MAX_CATEGORIES`` most frequent reference values, with unseen or rare values sharing one code.
    """

    def __init__(self, columns: Sequence[str], vocabularies: Mapping[str, Sequence[str]]) -> None:
        self.columns = tuple(columns)
        self.vocabularies = {name: list(values) for name, values in vocabularies.items()}
        self._codes = {
            name: {v: i for i, v in enumerate(values)} for name, values in self.vocabularies.items()
        }

    @classmethod
    def fit(cls, features: Mapping[str, Any]) -> FeatureEncoder:
        vocabularies = {}
        for name in features:
            values = np.asarray(features[name])
            if values.dtype.kind not in "biuf":
                present = values[[v is not None and v == v for v in values]].astype(str)
                kinds, counts = np.unique(present, return_counts=True)
                vocabularies[name] = kinds[np.argsort(-counts, kind="stable")][:MAX_CATEGORIES].tolist()
        return cls(list(features), vocabularies)

    @property
    def categorical(self) -> list[bool]:
        return [name in self.vocabularies for name in self.columns]

    def transform(self, features: Mapping[str, Any]) -> np.ndarray:
        missing = [name for name in self.columns if name not in features]
        if missing:
            raise InvalidInputError(f"features: missing column(s) {missing}; expected {list(self.columns)}.")
        matrix = np.empty((_rows(features, self.columns), len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            values = np.asarray(features[name])
            if name in self.vocabularies:
                codes = self._codes[name]
                other = float(len(codes))
                matrix[:, j] = [
                    np.nan if v is None or v != v else codes.get(str(v), other) for v in values.tolist()
                ]
            elif values.dtype.kind in "biuf":
                matrix[:, j] = values.astype(np.float64)
            else:
                raise InvalidInputError(
                    f"features: column {name!r} was numeric in the reference, got {values.dtype}."
                )
        return matrix


def _rows(features: Mapping[str, Any], columns: Sequence[str]) -> int:
    lengths = {len(features[name]) for name in columns}
    if len(lengths) > 1:
        raise InvalidInputError(f"features: columns differ in length ({sorted(lengths)}).")
    return lengths.pop() if lengths else 0


def density_ratio_weights(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    categorical: Sequence[bool],
    clip: float = 20.0,
    seed: int = 0,
) -> np.ndarray:
    """Weights (mean 1) that make the reference rows' feature distribution look like the window's.

    ``reference`` and ``window`` are matrices from the same ``FeatureEncoder``. Each half of the
    reference is weighted by a classifier trained on the other half against the whole window.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier  # here: a slow import few runs need

    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(reference)) % 2
    odds = np.empty(len(reference), dtype=np.float64)
    for k in (0, 1):
        train = reference[fold != k]
        classifier = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features=np.asarray(categorical, dtype=bool) if any(categorical) else None,
            early_stopping=False,
            random_state=seed,
        )
        x = np.vstack([train, window])
        y = np.r_[np.zeros(len(train)), np.ones(len(window))]
        # one thread: these fits are small, and OpenMP threads competing with other work for the cores
        # slow them down by orders of magnitude
        with threadpool_limits(1, user_api="openmp"):
            classifier.fit(x, y)
            p = np.clip(classifier.predict_proba(reference[fold == k])[:, 1], 1e-6, 1 - 1e-6)
        odds[fold == k] = p / (1 - p) * len(train) / len(window)
    weights = odds / odds.mean()
    weights = np.minimum(weights, clip)
    return np.asarray(weights / weights.mean(), dtype=np.float64)
