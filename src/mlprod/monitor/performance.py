"""Performance of a binary classifier per window: realized once labels arrive, estimated before.

A window is a ``ScoreSketch``: a histogram of the scores in fine fixed bins (uniform over [0, 1],
with the decision threshold on a bin edge), kept separately for rows labelled 0, labelled 1 and not
labelled yet. It is O(bins) memory whatever the rows, updates batch by batch and merges across
batches and workers exactly. A row is predicted positive when its score is >= ``threshold``.

Realized metrics (accuracy, precision, recall, F1 at the threshold, ROC AUC) come from the labelled
rows' histograms: the threshold metrics are exact, the AUC counts a pair of rows in the same bin as a
tie, which is off from the exact AUC by at most half the share of (negative, positive) pairs that
share a bin (< 0.001 in practice with 1,000 bins).

Estimated metrics use no label of the window. Confidence-based performance estimation (CBPE, as in
NannyML): scores are calibrated on reference data by isotonic regression, so each bin has a
probability ``p`` that its rows are labelled 1; a window's expected confusion matrix then counts
``n * p`` positives and ``n * (1 - p)`` negatives per bin, from which the metrics follow, the AUC
with fractional labels. Calibrated probabilities only predict the window's labels when the relation
between score and label is the reference's; with ``method="density_ratio"`` the calibration is
refitted per window on reference rows weighted to look like the window (see
``mlprod.monitor.calibration.density_ratio_weights``), so that windows whose features resemble the
reference's good or bad days get those days' calibration.

Confidence band (nominal 95 %): a seeded Monte Carlo over the window's rows. Each of ``simulations``
draws takes one calibration curve refitted on a bootstrap resample of the reference
(``Calibration.bootstrap``: the calibration's own uncertainty, larger when it was fitted on few
reference rows) and draws ``Binomial(n, p)`` positives per bin with that curve's ``p`` (the window's
sampling variance given its rows' probabilities); the 2.5 % and 97.5 % percentiles of the metrics
over the draws are the band. When the reference is given in windows (``fit(..., windows=...)``), the
spread of its windows' realized metrics around their estimates beyond that sampling noise
(a between-window variance ``tau**2`` per metric) is added to the band's half-widths too.

What the estimate and the band can see: a change in the distribution of the scores (covariate
shift, as far as the model's score reflects it). What they cannot see: a change in the relation
between score and label (concept shift, ``P(y | x)`` changes), e.g. weather or a strike making
flights late whatever their features. Under concept shift the realized metric leaves the band with
no warning from the estimate; only realized performance (labels) reveals it, and the measured
coverage (``mlprod.monitor.coverage``) tells how often that happened. The between-window term covers
concept changes only as large as those seen between the reference's own windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from mlprod.errors import InvalidInputError
from mlprod.monitor.calibration import Calibration, FeatureEncoder, density_ratio_weights
from mlprod.monitor.results import PerformancePoint

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal
Method = Literal["cbpe", "density_ratio"]


class ScoreSketch:
    """Score histogram of a window, split by label (0, 1, unknown); mergeable and serializable.

    Examples:
        >>> sketch = ScoreSketch(bins=10).update([0.1, 0.7, 0.8, 0.3], labels=[0, 1, 0, np.nan])
        >>> sketch.rows, sketch.labelled_rows
        (4, 3)
        >>> round(realized_metrics(sketch)["accuracy"], 3)
        0.667
    """

    def __init__(self, *, bins: int = 1000, threshold: float = 0.5) -> None:
        if bins < 2:
            raise InvalidInputError(f"bins: expected at least 2, got {bins}.")
        if not 0.0 < threshold < 1.0:
            raise InvalidInputError(f"threshold: expected a value strictly between 0 and 1, got {threshold}.")
        self.bins = bins
        self.threshold = float(threshold)
        self.edges = np.union1d(np.linspace(0.0, 1.0, bins + 1), [self.threshold])
        self.cut = int(np.searchsorted(self.edges, self.threshold))  # first bin predicted positive
        self.negatives = np.zeros(len(self.edges) - 1)
        self.positives = np.zeros(len(self.edges) - 1)
        self.unlabelled = np.zeros(len(self.edges) - 1)

    @property
    def counts(self) -> np.ndarray:
        """Rows (or weights) per bin, labelled or not."""
        return self.negatives + self.positives + self.unlabelled

    @property
    def rows(self) -> int:
        return round(float(self.counts.sum()))

    @property
    def labelled_rows(self) -> int:
        return round(float(self.negatives.sum() + self.positives.sum()))

    def update(
        self, scores: ArrayLike, labels: ArrayLike | None = None, *, weights: ArrayLike | None = None
    ) -> ScoreSketch:
        """Add rows: scores in [0, 1], labels 0/1 with NaN for "not known yet" (None: none known)."""
        s = _scores(scores)
        y = np.full(len(s), np.nan) if labels is None else _labels(labels, len(s))
        w = np.ones(len(s)) if weights is None else _weights(weights, len(s))
        index = np.clip(np.searchsorted(self.edges, s, side="right") - 1, 0, len(self.negatives) - 1)
        size = len(self.negatives)
        self.negatives += np.bincount(index, weights=w * (y == 0), minlength=size)
        self.positives += np.bincount(index, weights=w * (y == 1), minlength=size)
        self.unlabelled += np.bincount(index, weights=w * np.isnan(y), minlength=size)
        return self

    def merge(self, other: ScoreSketch) -> ScoreSketch:
        """Add another window's rows (same bins and threshold) to this one."""
        if not np.array_equal(self.edges, other.edges):
            raise InvalidInputError("ScoreSketch.merge: the sketches have different bins or thresholds.")
        self.negatives += other.negatives
        self.positives += other.positives
        self.unlabelled += other.unlabelled
        return self

    def empty(self) -> ScoreSketch:
        """A sketch with no rows and the same bins and threshold."""
        return ScoreSketch(bins=self.bins, threshold=self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "threshold": self.threshold,
            "negatives": self.negatives.tolist(),
            "positives": self.positives.tolist(),
            "unlabelled": self.unlabelled.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreSketch:
        sketch = cls(bins=int(data["bins"]), threshold=float(data["threshold"]))
        for name in ("negatives", "positives", "unlabelled"):
            values = np.array(data[name], dtype=np.float64)
            if values.shape != sketch.negatives.shape:
                raise InvalidInputError(f"ScoreSketch.from_dict: {name!r} has {values.shape}, expected bins.")
            setattr(sketch, name, values)
        return sketch


def realized_metrics(sketch: ScoreSketch) -> dict[str, float | None]:
    """Metrics of the labelled rows; None where undefined (e.g. AUC without both labels)."""
    values = _metrics(sketch.negatives[None, :], sketch.positives[None, :], sketch.cut)
    return {name: _scalar(v[0]) for name, v in values.items()}


def realized_points(sketch: ScoreSketch) -> list[PerformancePoint]:
    """Realized metrics alone (no reference to compare with, nothing estimated); none without labels."""
    if sketch.labelled_rows == 0:
        return []
    realized = realized_metrics(sketch)
    return [
        PerformancePoint(
            metric=name, reference=float("nan"), realized=realized[name], labelled_rows=sketch.labelled_rows
        )
        for name in METRICS
    ]


def expected_metrics(sketch: ScoreSketch, calibration: Calibration) -> dict[str, float | None]:
    """Metrics expected over all of the window's rows, with labels 1 at the calibrated probabilities."""
    return _expected(sketch.counts, calibration, sketch.cut)


def _expected(counts: np.ndarray, calibration: Calibration, cut: int) -> dict[str, float | None]:
    p = calibration.probabilities
    values = _metrics((counts * (1 - p))[None, :], (counts * p)[None, :], cut)
    return {name: _scalar(v[0]) for name, v in values.items()}


class PerformanceEstimator:
    """Realized and label-free estimated metrics per window, against a reference.

    ``fit`` takes the reference's scores and labels (and, for ``method="density_ratio"``, its features,
    a bounded sample is enough; optionally the window each reference row belongs to); ``evaluate``
    takes a window's ``ScoreSketch`` (and features). Each point's ``lower``/``upper`` is the nominal
    95 % band: sampling variance plus the calibration's bootstrap uncertainty (plus the reference
    windows' spread when given). It assumes ``P(label | score)`` is the reference's: concept shift
    is invisible to it (see the module docstring); ``mlprod.monitor.coverage`` measures how often it held.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> scores = rng.uniform(size=5000)
        >>> estimator = PerformanceEstimator().fit(scores, rng.uniform(size=5000) < scores)
        >>> window = estimator.window().update(rng.uniform(size=2000) ** 2)
        >>> point = estimator.evaluate(window)[0]
        >>> point.metric, round(point.reference, 2), round(point.estimated, 2), point.realized
        ('accuracy', 0.75, 0.81, None)
    """

    def __init__(
        self,
        *,
        method: Method = "cbpe",
        threshold: float = 0.5,
        bins: int = 1000,
        simulations: int = 500,
        calibration_draws: int = 100,
        max_reference_rows: int = 20_000,
        max_window_rows: int = 20_000,
        clip: float = 20.0,
        seed: int = 0,
    ) -> None:
        if method not in ("cbpe", "density_ratio"):
            raise InvalidInputError(f"method: expected 'cbpe' or 'density_ratio', got {method!r}.")
        if simulations < 40:
            raise InvalidInputError(f"simulations: expected at least 40 for a 95 % band, got {simulations}.")
        if calibration_draws < 0:
            raise InvalidInputError(
                f"calibration_draws: expected 0 (sampling variance only) or more, got {calibration_draws}."
            )
        self.method = method
        self.threshold = threshold
        self.bins = bins
        self.simulations = simulations
        self.calibration_draws = calibration_draws
        self.max_reference_rows = max_reference_rows
        self.max_window_rows = max_window_rows
        self.clip = clip
        self.seed = seed

    def fit(
        self,
        scores: ArrayLike,
        labels: ArrayLike,
        features: Mapping[str, Any] | None = None,
        *,
        windows: ArrayLike | None = None,
    ) -> PerformanceEstimator:
        """Learn the reference: its metrics, its calibration, and for density ratios a feature sample.

        ``windows`` (optional, one value per row, e.g. the row's week) splits the reference into the
        windows it would be monitored in; the spread of their realized metrics around their
        estimates then widens every band (see the module docstring).
        """
        s = _scores(scores)
        y = _labels(labels, len(s))
        parts: list[ScoreSketch] = []
        if windows is not None:
            keys = np.asarray(windows).ravel()
            if len(keys) != len(s):
                raise InvalidInputError(f"windows: expected one per score ({len(s)}), got {len(keys)}.")
            _, index = np.unique(keys, return_inverse=True)
            parts = [
                ScoreSketch(bins=self.bins, threshold=self.threshold).update(s[index == k], y[index == k])
                for k in range(int(index.max()) + 1 if len(index) else 0)
            ]
        self.fit_sketch(ScoreSketch(bins=self.bins, threshold=self.threshold).update(s, y), windows=parts)
        if self.method == "density_ratio":
            if features is None:
                raise InvalidInputError("features: method 'density_ratio' needs the reference features.")
            keep = _sample(len(s), self.max_reference_rows, self.seed, mask=~np.isnan(y))
            self.encoder_ = FeatureEncoder.fit({name: np.asarray(features[name])[keep] for name in features})
            self.sample_ = self.encoder_.transform(
                {name: np.asarray(features[name])[keep] for name in features}
            )
            self.sample_scores_ = s[keep]
            self.sample_labels_ = y[keep]
        return self

    def fit_sketch(
        self, reference: ScoreSketch, *, windows: Sequence[ScoreSketch] = ()
    ) -> PerformanceEstimator:
        """Learn the reference from its score sketch (built batch by batch: any size in O(bins)).

        ``windows``: the reference's rows split into windows (sketches with the same bins), whose
        realized metrics' spread around their estimates beyond sampling noise widens the bands.
        """
        if reference.bins != self.bins or reference.threshold != self.threshold:
            raise InvalidInputError("reference: its sketch has other bins or threshold than the estimator's.")
        self.reference_ = reference
        self.calibration_ = Calibration.fit(
            reference.edges, negatives=reference.negatives, positives=reference.positives
        )
        self.reference_metrics_ = realized_metrics(reference)
        self._curves: np.ndarray | None = None
        self.spread_ = self._spread(windows)
        return self

    def _spread(self, windows: Sequence[ScoreSketch]) -> dict[str, float]:
        """Between-window standard deviation per metric: realized minus estimated, beyond sampling noise.

        Method of moments over the reference windows: ``tau**2 = mean((realized - estimated)**2 -
        sampling variance)``, floored at 0; 0 with fewer than two windows where the metric is defined.
        """
        squares: dict[str, list[float]] = {name: [] for name in METRICS}
        for window in windows:
            if not np.array_equal(window.edges, self.reference_.edges):
                raise InvalidInputError("windows: a reference window has other bins or threshold.")
            if window.labelled_rows == 0:
                continue
            realized = realized_metrics(window)
            labelled = window.negatives + window.positives
            expected = _expected(labelled, self.calibration_, window.cut)
            draws = self._draws(labelled, self.calibration_.probabilities[None, :], window.cut)
            for name in METRICS:
                r, e, d = realized[name], expected[name], draws[name]
                d = d[np.isfinite(d)]
                if r is not None and e is not None and len(d) > 1:
                    squares[name].append((r - e) ** 2 - float(np.var(d)))
        return {
            name: float(np.sqrt(max(0.0, float(np.mean(v))))) if len(v) >= 2 else 0.0
            for name, v in squares.items()
        }

    def to_dict(self) -> dict[str, Any]:
        """The fitted CBPE estimator as JSON-safe data (density ratios hold a feature sample: not stored)."""
        if self.method != "cbpe":
            raise InvalidInputError(f"method: only 'cbpe' estimators are stored, not {self.method!r}.")
        return {
            "threshold": self.threshold, "bins": self.bins, "simulations": self.simulations,
            "calibration_draws": self.calibration_draws, "seed": self.seed,
            "reference": self.reference_.to_dict(), "calibration": self.calibration_.to_dict(),
            "spread": self.spread_,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PerformanceEstimator:
        """The estimator ``to_dict`` wrote; the calibration is refitted from the stored reference sketch.

        Refitting (deterministic) also restores the calibration's fitted counts, which references
        stored before they were kept lack; the band then includes the calibration's uncertainty.
        """
        estimator = cls(
            threshold=float(data["threshold"]), bins=int(data["bins"]),
            simulations=max(int(data["simulations"]), 40),
            calibration_draws=int(data.get("calibration_draws", 100)), seed=int(data["seed"]),
        )  # fmt: skip
        estimator.fit_sketch(ScoreSketch.from_dict(data["reference"]))
        spread = data.get("spread", {})
        estimator.spread_ = {name: float(spread.get(name, 0.0)) for name in METRICS}
        return estimator

    def window(self) -> ScoreSketch:
        """An empty window sketch with the reference's bins and threshold."""
        return self.reference_.empty()

    def calibration_for(self, features: Mapping[str, Any] | None = None) -> Calibration:
        """The calibration a window is estimated with: the reference's, or one reweighted to its features."""
        if self.method == "cbpe":
            return self.calibration_
        if features is None:
            raise InvalidInputError("features: method 'density_ratio' needs the window's features.")
        rows = len(np.asarray(next(iter(features.values())))) if features else 0
        if rows == 0:
            return self.calibration_
        keep = _sample(rows, self.max_window_rows, self.seed)
        window = self.encoder_.transform({name: np.asarray(features[name])[keep] for name in features})
        weights = density_ratio_weights(
            self.sample_, window, categorical=self.encoder_.categorical, clip=self.clip, seed=self.seed
        )
        weighted = self.window().update(self.sample_scores_, self.sample_labels_, weights=weights)
        squared = self.window().update(self.sample_scores_, self.sample_labels_, weights=weights**2)
        total = weighted.negatives + weighted.positives
        second = squared.negatives + squared.positives
        effective = np.divide(total**2, second, out=np.zeros_like(total), where=second > 0)
        return Calibration.fit(
            weighted.edges,
            negatives=weighted.negatives,
            positives=weighted.positives,
            effective_rows=effective,
        )

    def curves(self, calibration: Calibration) -> np.ndarray:
        """The bootstrap calibration curves the band draws from (computed once for the reference's).

        With ``calibration_draws=0`` only the calibration itself: the band is then the sampling
        variance alone, as if the calibration were exact.
        """
        if self.calibration_draws == 0:
            return calibration.probabilities[None, :]
        if calibration is self.calibration_:
            if self._curves is None:
                self._curves = calibration.bootstrap(self.calibration_draws, seed=self.seed)
            return self._curves
        return calibration.bootstrap(self.calibration_draws, seed=self.seed)

    def evaluate(
        self, window: ScoreSketch, features: Mapping[str, Any] | None = None
    ) -> list[PerformancePoint]:
        """One point per metric: reference value, estimate with its band, realized value once labelled."""
        if not np.array_equal(window.edges, self.reference_.edges):
            raise InvalidInputError("window: its sketch has other bins or threshold than the reference's.")
        realized = realized_metrics(window)
        estimated: dict[str, float | None] = dict.fromkeys(METRICS)
        lower: dict[str, float | None] = dict.fromkeys(METRICS)
        upper: dict[str, float | None] = dict.fromkeys(METRICS)
        if window.rows > 0:
            calibration = self.calibration_for(features)
            estimated = expected_metrics(window, calibration)
            lower, upper = self._band(window.counts, self.curves(calibration), window.cut, estimated)
        return [
            PerformancePoint(
                metric=name,
                reference=_nan(self.reference_metrics_[name]),
                estimated=estimated[name],
                lower=lower[name],
                upper=upper[name],
                realized=realized[name],
                labelled_rows=window.labelled_rows,
            )
            for name in METRICS
        ]

    def _draws(self, counts: np.ndarray, curves: np.ndarray, cut: int) -> dict[str, np.ndarray]:
        """Metrics of ``simulations`` label draws: curve ``k % len(curves)`` gives draw k's probabilities."""
        rng = np.random.default_rng(self.seed)
        n = np.rint(counts).astype(np.int64)
        occupied = n > 0  # empty bins change no metric: drawing only the others is much cheaper
        p = curves[np.arange(self.simulations) % len(curves)][:, occupied]
        positives = rng.binomial(n[occupied][None, :], p).astype(np.float64)
        return _metrics(n[occupied][None, :] - positives, positives, int(occupied[:cut].sum()))

    def _band(
        self, counts: np.ndarray, curves: np.ndarray, cut: int, estimated: Mapping[str, float | None]
    ) -> tuple[dict[str, float | None], dict[str, float | None]]:
        draws = self._draws(counts, curves, cut)
        lower: dict[str, float | None] = {}
        upper: dict[str, float | None] = {}
        for name, values in draws.items():
            finite = values[np.isfinite(values)]
            centre = estimated[name]
            if len(finite) == 0 or centre is None:
                lower[name] = upper[name] = None
                continue
            low, high = np.percentile(finite, [2.5, 97.5])
            extra = (Z95 * self.spread_.get(name, 0.0)) ** 2
            below, above = max(centre - low, 0.0), max(high - centre, 0.0)
            lower[name] = float(max(centre - np.sqrt(below**2 + extra), 0.0))
            upper[name] = float(min(centre + np.sqrt(above**2 + extra), 1.0))
        return lower, upper


def _metrics(negatives: np.ndarray, positives: np.ndarray, cut: int) -> dict[str, np.ndarray]:
    """Threshold metrics and binned ROC AUC per row of (draws x bins) label histograms; NaN: undefined."""
    tp = positives[:, cut:].sum(axis=1)
    fp = negatives[:, cut:].sum(axis=1)
    fn = positives[:, :cut].sum(axis=1)
    tn = negatives[:, :cut].sum(axis=1)
    total_pos, total_neg = tp + fn, fp + tn
    below = np.cumsum(negatives, axis=1) - negatives  # negatives in lower bins
    pairs = (positives * (below + negatives / 2)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": (tp + tn) / (total_pos + total_neg),
            "precision": tp / (tp + fp),
            "recall": tp / total_pos,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "roc_auc": np.where((total_pos > 0) & (total_neg > 0), pairs / (total_pos * total_neg), np.nan),
        }


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _scalar(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _scores(scores: ArrayLike) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    bad = ~((s >= 0.0) & (s <= 1.0))
    if bad.any():
        raise InvalidInputError(
            f"scores: expected probabilities in [0, 1], got {float(s[bad][0])} "
            f"({int(bad.sum())} value(s) outside)."
        )
    return s


def _labels(labels: ArrayLike, rows: int) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64).ravel()
    if len(y) != rows:
        raise InvalidInputError(f"labels: expected one per score ({rows}), got {len(y)}.")
    bad = ~(np.isnan(y) | (y == 0) | (y == 1))
    if bad.any():
        raise InvalidInputError(f"labels: expected 0, 1 or NaN (not known yet), got {float(y[bad][0])}.")
    return y


def _weights(weights: ArrayLike, rows: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != rows:
        raise InvalidInputError(f"weights: expected one per score ({rows}), got {len(w)}.")
    if not (np.isfinite(w) & (w >= 0)).all():
        raise InvalidInputError("weights: expected finite non-negative values.")
    return w


def _sample(rows: int, limit: int, seed: int, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most ``limit`` rows (among ``mask``), seeded."""
    index = np.flatnonzero(mask) if mask is not None else np.arange(rows)
    if len(index) <= limit:
        return index
    return np.sort(np.random.default_rng(seed).choice(index, limit, replace=False))
