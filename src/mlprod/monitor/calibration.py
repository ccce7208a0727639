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
from sklearn.isotonic import isotonic_regression
from threadpoolctl import threadpool_limits

from mlprod.errors import InvalidInputError

MAX_CATEGORIES = 200  # most frequent reference categories kept per column; the rest share one code


class Calibration:
    """Probability of label 1 per score bin, isotonic (non-decreasing) in the score.

    It also keeps what it was fitted on (the label-1 share and the effective number of labelled
    rows per bin), so that ``bootstrap`` can draw the curves other samples of the same size would
    have given: a calibration fitted on few rows varies more, and the band of an estimate made with
    it widens accordingly.

    Examples:
        >>> edges = np.linspace(0.0, 1.0, 5)
        >>> calibration = Calibration.fit(edges, negatives=[9, 6, 4, 1], positives=[1, 4, 6, 9])
        >>> calibration.probabilities.round(2).tolist()
        [0.1, 0.4, 0.6, 0.9]
        >>> calibration(np.array([0.05, 0.99])).round(2).tolist()
        [0.1, 0.9]
        >>> calibration.bootstrap(3, seed=0).shape
        (3, 4)
    """

    def __init__(
        self,
        edges: np.ndarray,
        probabilities: np.ndarray,
        *,
        rates: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        bins = len(self.edges) - 1
        if self.probabilities.shape != (bins,):
            raise InvalidInputError(
                f"Calibration: expected one probability per bin ({bins}), got {self.probabilities.shape}."
            )
        self.rates = None if rates is None else np.asarray(rates, dtype=np.float64)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.float64)
        for name, values in (("rates", self.rates), ("rows", self.rows)):
            if values is not None and values.shape != (bins,):
                raise InvalidInputError(
                    f"Calibration: expected one {name} value per bin ({bins}), got {values.shape}."
                )

    @classmethod
    def fit(
        cls,
        edges: np.ndarray,
        *,
        negatives: ArrayLike,
        positives: ArrayLike,
        effective_rows: ArrayLike | None = None,
    ) -> Calibration:
        """Isotonic regression of the label rate per bin, weighted by the (possibly weighted) rows in it.

        Bins without labelled rows take the curve interpolated between their neighbours' centres.
        ``effective_rows`` is, for weighted rows, the number of unweighted rows each bin is worth
        (``sum(w) ** 2 / sum(w ** 2)``); by default the bin's rows themselves.
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
        rates = np.divide(pos, total, out=np.zeros_like(total), where=seen)
        rows = total if effective_rows is None else np.asarray(effective_rows, dtype=np.float64)
        centres = (edges[:-1] + edges[1:]) / 2
        return cls(edges, _isotonic(centres, rates, total), rates=rates, rows=np.where(seen, rows, 0.0))

    def bootstrap(self, draws: int, *, seed: int = 0) -> np.ndarray:
        """``draws`` calibration curves (draws x bins), each refitted on a resample of the fitted rows.

        A Poisson bootstrap per bin: ``Poisson(rows)`` labelled rows, of which ``Binomial(., rate)``
        are labelled 1, then the same isotonic fit. Seeded: the same calibration and seed give the
        same curves. A calibration without its fitted counts (stored by an older version) has no
        known uncertainty: every curve is its own.
        """
        if draws < 1:
            raise InvalidInputError(f"draws: expected at least 1, got {draws}.")
        curves = np.tile(self.probabilities, (draws, 1))
        if self.rates is None or self.rows is None:
            return curves
        rng = np.random.default_rng(seed)
        centres = (self.edges[:-1] + self.edges[1:]) / 2
        seen = self.rows > 0
        rates = self.rates[seen]
        for k in range(draws):
            rows = np.zeros_like(self.rows)
            rows[seen] = rng.poisson(self.rows[seen])
            positives = np.zeros_like(self.rows)
            positives[seen] = rng.binomial(rows[seen].astype(np.int64), rates)
            if rows.any():
                shares = np.divide(positives, rows, out=np.zeros_like(rows), where=rows > 0)
                curves[k] = _isotonic(centres, shares, rows)
        return curves

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of scores in [0, 1] (the probability of the bin they fall in)."""
        index = np.clip(np.searchsorted(self.edges, scores, side="right") - 1, 0, len(self.probabilities) - 1)
        return self.probabilities[index]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"edges": self.edges.tolist(), "probabilities": self.probabilities.tolist()}
        if self.rates is not None and self.rows is not None:
            data |= {"rates": self.rates.tolist(), "rows": self.rows.tolist()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        optional = {
            name: np.array(data[name], dtype=np.float64) for name in ("rates", "rows") if name in data
        }
        return cls(
            np.array(data["edges"], dtype=np.float64),
            np.array(data["probabilities"], dtype=np.float64),
            **optional,
        )


def _isotonic(centres: np.ndarray, rates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Weighted isotonic fit of the rates of the bins with rows, linearly interpolated (clipped) between."""
    seen = rows > 0
    fitted = isotonic_regression(rates[seen], sample_weight=rows[seen], y_min=0.0, y_max=1.0)
    return np.asarray(np.interp(centres, centres[seen], fitted), dtype=np.float64)


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
