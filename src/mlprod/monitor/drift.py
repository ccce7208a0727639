"""Drift of each feature and of the prediction: a window's sketches against the reference's.

Numeric columns get three statistics, all from sketches (no raw rows):

- ``psi``: population stability index on the reference-quantile bins (empty bins count as
  ``psi_epsilon``), the credit-scoring rule of thumb being 0.1 "watch" and 0.2 "act".
- ``ks``: the Kolmogorov-Smirnov statistic D, the largest gap between the two KLL sketches' CDFs
  over every point either sketch retained. ``p_value`` is asymptotic; it ignores the sketches' rank
  error, so with large samples it is tiny for any visible gap — the verdict uses D.
- ``wasserstein`` (primary): Wasserstein-1 distance between the two sketches' distributions
  divided by the reference standard deviation (at least 0.001), Evidently's "normed" distance,
  which it uses by default for numeric columns above 1,000 rows with the same threshold 0.1.

Categorical columns compare category shares over the reference vocabulary plus "other" and "unseen":

- ``chi2``: chi-squared test of homogeneity of the two samples; ``statistic`` is its p-value (so
  the check alerts below the threshold, ``higher_is_worse=False``) and the detail gives chi-squared.
  With tens of thousands of rows any difference is significant, so it flags changes too small to
  matter; it is reported, not primary.
- ``jensen_shannon`` (primary): Jensen-Shannon distance with base-2 logarithms, in [0, 1].

``drifted_columns`` reads only the primary methods, one verdict per column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from scipy import special

from mlprod.monitor.profile import Profile
from mlprod.monitor.results import Check
from mlprod.monitor.sketches import CategoricalSketch, NumericSketch, kll_items

NUMERIC_PRIMARY_METHOD = "wasserstein"
CATEGORICAL_PRIMARY_METHOD = "jensen_shannon"
PRIMARY_METHODS = frozenset({NUMERIC_PRIMARY_METHOD, CATEGORICAL_PRIMARY_METHOD})
_MIN_NORM = 0.001  # Evidently's floor for the reference standard deviation


@dataclass(frozen=True)
class DriftThresholds:
    """When a drift statistic alerts: above its threshold (the chi-squared p-value: below).

    Attributes:
        psi: population stability index (0.2: "significant shift").
        psi_epsilon: share used for a bin empty on either side, so the logarithm stays finite.
        ks: Kolmogorov-Smirnov statistic D, the largest CDF gap.
        wasserstein: Wasserstein-1 distance in reference standard deviations (Evidently's default).
        chi2_p_value: p-value of the chi-squared test under which it alerts.
        jensen_shannon: Jensen-Shannon distance, base 2 (Evidently's threshold; it uses base e).
    """

    psi: float = 0.2
    psi_epsilon: float = 1e-4
    ks: float = 0.1
    wasserstein: float = 0.1
    chi2_p_value: float = 0.01
    jensen_shannon: float = 0.1


def population_stability_index(
    reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any], *, epsilon: float = 1e-4
) -> float:
    """PSI of two count vectors over the same bins: sum of (q - p) * ln(q / p) over shares.

    Examples:
        >>> population_stability_index(np.array([50, 50]), np.array([50, 50]))
        0.0
        >>> round(population_stability_index(np.array([50, 50]), np.array([80, 20])), 4)
        0.4159
    """
    p = _shares(reference, epsilon)
    q = _shares(current, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _shares(counts: np.ndarray[Any, Any], epsilon: float) -> np.ndarray[Any, Any]:
    shares = np.asarray(counts, dtype=np.float64) / np.sum(counts)
    return np.where(shares == 0, epsilon, shares)


def _cdfs(
    a: kll_doubles_sketch, b: kll_doubles_sketch
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Every point either sketch retained (and both extremes), with each sketch's CDF there (≤ x)."""
    (items_a, weights_a), (items_b, weights_b) = kll_items(a), kll_items(b)
    extremes = [a.get_min_value(), a.get_max_value(), b.get_min_value(), b.get_max_value()]
    points = np.unique(np.concatenate([items_a, items_b, extremes]))
    return points, _cdf(items_a, weights_a, points), _cdf(items_b, weights_b, points)


def _cdf(items: np.ndarray[Any, Any], weights: np.ndarray[Any, Any], points: np.ndarray[Any, Any]) -> Any:
    """Share of a sketch's weight at or below each point (items sorted)."""
    below = np.concatenate([[0], np.cumsum(weights)])
    return below[np.searchsorted(items, points, side="right")] / below[-1]


def kolmogorov_smirnov(a: kll_doubles_sketch, b: kll_doubles_sketch) -> tuple[float, float]:
    """KS statistic D between two non-empty KLL sketches and its asymptotic p-value.

    Examples:
        >>> a, b = kll_doubles_sketch(200), kll_doubles_sketch(200)
        >>> a.update(np.arange(100.0)); b.update(np.arange(100.0) + 20)
        >>> round(kolmogorov_smirnov(a, b)[0], 12)
        0.2
    """
    return _kolmogorov_smirnov(a.n, b.n, _cdfs(a, b))


def _kolmogorov_smirnov(n_a: int, n_b: int, cdfs: tuple[Any, Any, Any]) -> tuple[float, float]:
    _, cdf_a, cdf_b = cdfs
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    effective_n = n_a * n_b / (n_a + n_b)
    return d, float(special.kolmogorov(math.sqrt(effective_n) * d))


def wasserstein_distance(a: kll_doubles_sketch, b: kll_doubles_sketch) -> float:
    """Wasserstein-1 distance between two non-empty KLL sketches: the area between their CDFs.

    Exact for the sketches' weighted points, so equal to the integral of the gap between their
    quantile functions without a grid.

    Examples:
        >>> a, b = kll_doubles_sketch(200), kll_doubles_sketch(200)
        >>> a.update(np.arange(100.0)); b.update(np.arange(100.0) + 20)
        >>> wasserstein_distance(a, b)
        20.0
    """
    return _wasserstein(_cdfs(a, b))


def _wasserstein(cdfs: tuple[Any, Any, Any]) -> float:
    points, cdf_a, cdf_b = cdfs
    return float(np.sum(np.abs(cdf_a - cdf_b)[:-1] * np.diff(points)))


def chi_squared(reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]) -> tuple[float, float, int]:
    """Chi-squared test that two count vectors come from one distribution: statistic, p-value, dof.

    Categories empty on both sides are dropped; with fewer than two left there is nothing to test.

    Examples:
        >>> chi_squared(np.array([50, 50, 0]), np.array([50, 50, 0]))
        (0.0, 1.0, 1)
    """
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return statistic, float(special.chdtrc(dof, statistic)), dof


def jensen_shannon(reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the shares of two count vectors.

    Examples:
        >>> jensen_shannon(np.array([10, 0]), np.array([0, 10]))
        1.0
    """
    p = reference / reference.sum()
    q = current / current.sum()
    middle = (p + q) / 2
    divergence = (special.rel_entr(p, middle).sum() + special.rel_entr(q, middle).sum()) / 2
    return float(np.sqrt(max(divergence, 0.0) / np.log(2)))


def drift_checks(
    reference: Profile, current: Profile, thresholds: DriftThresholds | None = None
) -> list[Check]:
    """Drift checks of every feature and the prediction of a window against its reference.

    A column without values in the window (or the reference) gets no checks.

    Examples:
        >>> import pyarrow as pa
        >>> from mlprod.monitor.profile import ProfileSpec, ReferenceBuilder
        >>> spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
        >>> reference = ReferenceBuilder(spec).update(pa.table({"x": np.arange(1000.0)})).finish()
        >>> window = reference.window().update(pa.table({"x": np.arange(1000.0) + 500}))
        >>> [(c.method, c.alert) for c in drift_checks(reference, window)]
        [('psi', True), ('ks', True), ('wasserstein', True)]
    """
    thresholds = thresholds or DriftThresholds()
    reference.require_comparable(current)
    checks: list[Check] = []
    for name in reference.spec.compared:
        ref, cur = reference.columns[name], current.columns[name]
        if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
            checks += _numeric_checks(name, ref, cur, thresholds)
        elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
            checks += _categorical_checks(name, ref, cur, thresholds)
    return checks


def _numeric_checks(name: str, ref: NumericSketch, cur: NumericSketch, t: DriftThresholds) -> list[Check]:
    if not (ref.stats.count and cur.stats.count):
        return []
    psi = population_stability_index(ref.counts, cur.counts, epsilon=t.psi_epsilon)
    cdfs = _cdfs(ref.stats.kll, cur.stats.kll)  # once for both statistics
    d, p_value = _kolmogorov_smirnov(ref.stats.kll.n, cur.stats.kll.n, cdfs)
    norm = max(ref.stats.std, _MIN_NORM)
    w1 = _wasserstein(cdfs)
    sizes = f"reference n={ref.stats.count}, window n={cur.stats.count}"
    return [
        Check(
            name, "drift", "psi", psi, t.psi, psi > t.psi, detail=f"{ref.counts.size} reference-quantile bins"
        ),
        Check(name, "drift", "ks", d, t.ks, d > t.ks, p_value=p_value, detail=sizes),
        Check(
            name,
            "drift",
            "wasserstein",
            w1 / norm,
            t.wasserstein,
            w1 / norm > t.wasserstein,
            detail=f"distance {w1:.4g} / reference std {norm:.4g}",
        ),
    ]


def _categorical_checks(
    name: str, ref: CategoricalSketch, cur: CategoricalSketch, t: DriftThresholds
) -> list[Check]:
    if not (ref.count and cur.count):
        return []
    expected, observed = ref.distribution(), cur.distribution()
    statistic, p_value, dof = chi_squared(expected, observed)
    js = jensen_shannon(expected, observed)
    categories = f"{len(ref.vocabulary)} categories + other + unseen"
    return [
        Check(
            name,
            "drift",
            "chi2",
            p_value,
            t.chi2_p_value,
            p_value < t.chi2_p_value,
            higher_is_worse=False,
            p_value=p_value,
            detail=f"chi-squared {statistic:.4g} with {dof} degrees of freedom; the statistic is its p-value",
        ),
        Check(
            name, "drift", "jensen_shannon", js, t.jensen_shannon, js > t.jensen_shannon, detail=categories
        ),
    ]


def drifted_columns(checks: Iterable[Check]) -> list[str]:
    """Columns whose primary drift method alerts, in the order of the checks.

    Examples:
        >>> psi = Check("x", "drift", "psi", 0.5, 0.2, True)
        >>> wasserstein = Check("y", "drift", "wasserstein", 0.3, 0.1, True)
        >>> drifted_columns([psi, wasserstein])
        ['y']
    """
    drifted = [c.column for c in checks if c.kind == "drift" and c.method in PRIMARY_METHODS and c.alert]
    return list(dict.fromkeys(drifted))
