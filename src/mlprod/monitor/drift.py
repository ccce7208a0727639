from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from scipy import special
from scipy import stats as scipy_stats

from mlprod.errors import InvalidInputError
from mlprod.monitor.profile import Profile
from mlprod.monitor.results import DATASET_DRIFT, MULTIVARIATE, Check
from mlprod.monitor.sketches import CategoricalSketch, NumericSketch, NumericStats, kll_items

NUMERIC_PRIMARY_METHOD = "wasserstein"
CATEGORICAL_PRIMARY_METHOD = "jensen_shannon"
PRIMARY_METHODS = frozenset({NUMERIC_PRIMARY_METHOD, CATEGORICAL_PRIMARY_METHOD})
DATASET_METHOD = DATASET_DRIFT  # the window-level verdict, on column "*"
_MIN_NORM = 0.001  # Evidently's floor for the reference standard deviation
_MIN_EXPECTED = 5.0  # chi-squared's rule of thumb: pool categories expected fewer times


@dataclass(frozen=True)
class DriftThresholds:
    """When drift checks alert.

    Attributes:
        psi: population stability index (0.2: "significant shift").
        psi_epsilon: share used for a bin empty on either side, so the logarithm stays finite.
        ks: Kolmogorov-Smirnov statistic D, the largest CDF gap (the reported ``ks`` check).
        wasserstein: effect size a numeric column must exceed to drift: Wasserstein-1 distance in
            reference standard deviations (Evidently's default 0.1).
        chi2_p_value: p-value of the chi-squared test under which the reported ``chi2`` check alerts.
        jensen_shannon: effect size a categorical column must exceed to drift: Jensen-Shannon
            distance, base 2 (Evidently's threshold; it uses base e).
        alpha: significance level of each column's test (KS, chi-squared) in the drift verdict.
        drift_share: share of drifted columns (importance-weighted when known) at or above which
            the whole window drifts.
    """

    psi: float = 0.2
    psi_epsilon: float = 1e-4
    ks: float = 0.1
    wasserstein: float = 0.1
    chi2_p_value: float = 0.01
    jensen_shannon: float = 0.1
    alpha: float = 0.01
    drift_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError(f"drift alpha must be between 0 and 1 (exclusive), got {self.alpha}")
        if not 0 < self.drift_share <= 1:
            raise InvalidInputError(f"drift_share must be in (0, 1], got {self.drift_share}")


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
    extremes = (a.get_min_value(), a.get_max_value(), b.get_min_value(), b.get_max_value())
    return _cdfs_of_points(kll_items(a), kll_items(b), extremes)


def _cdfs_of_points(
    a: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    b: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
    extremes: tuple[float, ...],
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    (items_a, weights_a), (items_b, weights_b) = a, b
    points = np.unique(np.concatenate([items_a, items_b, extremes]))
    return points, _cdf(items_a, weights_a, points), _cdf(items_b, weights_b, points)


def _cdf(items: np.ndarray[Any, Any], weights: np.ndarray[Any, Any], points: np.ndarray[Any, Any]) -> Any:
    """Share of a sketch's weight at or below each point (items sorted)."""
    below = np.concatenate([[0], np.cumsum(weights)])
    return below[np.searchsorted(items, points, side="right")] / below[-1]


def kolmogorov_smirnov(a: kll_doubles_sketch, b: kll_doubles_sketch) -> tuple[float, float]:
    """KS statistic D between two non-empty KLL sketches and its p-value (``ks_p_value``).

    Examples:
        >>> a, b = kll_doubles_sketch(200), kll_doubles_sketch(200)
        >>> a.update(np.arange(100.0)); b.update(np.arange(100.0) + 20)
        >>> round(kolmogorov_smirnov(a, b)[0], 12)
        0.2
    """
    _, cdf_a, cdf_b = _cdfs(a, b)
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    return d, ks_p_value(d, a.n, b.n)


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p-value of the two-sample KS statistic ``d`` for samples of ``n`` and ``m`` values.

    The distribution of the one-sample statistic at the effective size ``n m / (n + m)``, rounded:
    ``scipy.stats.ks_2samp``'s asymptotic method, close to its exact one.

    Examples:
        >>> round(ks_p_value(0.2, 100, 100), 3), round(ks_p_value(0.2, 100_000, 20), 3)
        (0.031, 0.353)
    """
    if d <= 0:
        return 1.0
    effective = max(1.0, round(n * m / (n + m)))
    return float(np.clip(scipy_stats.kstwo.sf(d, effective), 0.0, 1.0))


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


def chi_squared(
    reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any], *, min_expected: float = _MIN_EXPECTED
) -> tuple[float, float, int]:
    """Chi-squared test that two count vectors come from one distribution: statistic, p-value, dof.

    Categories empty on both sides are dropped. Categories expected fewer than ``min_expected``
    times in either sample are pooled into one, rarest first, until the pool is expected that often
    too: the chi-squared distribution is a poor approximation of sparse cells (on a 20-row window it
    would alarm on categories seen once). With fewer than two cells left there is nothing to test.

    Examples:
        >>> chi_squared(np.array([50, 50, 0]), np.array([50, 50, 0]))
        (0.0, 1.0, 1)
        >>> chi_squared(np.array([500, 300, 200, 2, 1]), np.array([5, 3, 2, 1, 1]))[2]  # 3 pooled
        1
    """
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    totals = table.sum(axis=0)
    rows = table.sum(axis=1)
    if table.shape[1] >= 2 and rows.min() > 0:
        needed = min_expected * totals.sum() / rows.min()  # a column total expected min_expected times
        order = np.argsort(totals, kind="stable")
        low = int(np.sum(totals < needed))
        if low:
            cumulative = np.cumsum(totals[order])
            last = min(max(low - 1, int(np.searchsorted(cumulative, needed))), order.size - 1)
            pooled = table[:, order[: last + 1]].sum(axis=1, keepdims=True)
            table = np.hstack([table[:, order[last + 1 :]], pooled])
    if table.shape[1] < 2 or rows.min() == 0:
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
    reference: Profile,
    current: Profile,
    thresholds: DriftThresholds | None = None,
    *,
    importance: Mapping[str, float] | None = None,
) -> list[Check]:
    """Drift checks of every feature and the prediction of a window against its reference.

    A column without values in the window (or the reference) gets no checks. The last check is
    the window's verdict (``dataset_drift``), weighted by ``importance`` (column -> weight; columns
    left out weigh 0) when given.

    Examples:
        >>> import pyarrow as pa
        >>> from mlprod.monitor.profile import ProfileSpec, ReferenceBuilder
        >>> spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
        >>> reference = ReferenceBuilder(spec).update(pa.table({"x": np.arange(1000.0)})).finish()
        >>> window = reference.window().update(pa.table({"x": np.arange(1000.0) + 500}))
        >>> [(c.column, c.method, c.alert) for c in drift_checks(reference, window)]
        [('x', 'psi', True), ('x', 'ks', True), ('x', 'wasserstein', True), ('*', 'drift_share', True)]
    """
    thresholds = thresholds or DriftThresholds()
    reference.require_comparable(current)
    weights = _importance_weights(importance, reference.spec.compared)
    checks: list[Check] = []
    for name in reference.spec.compared:
        ref, cur = reference.columns[name], current.columns[name]
        if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
            checks += _numeric_checks(name, ref, cur, thresholds)
        elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
            checks += _categorical_checks(name, ref, cur, thresholds)
    dataset = dataset_drift(checks, threshold=thresholds.drift_share, importance=weights)
    return checks + ([dataset] if dataset else [])


def _importance_weights(
    importance: Mapping[str, float] | None, columns: tuple[str, ...]
) -> dict[str, float] | None:
    if importance is None:
        return None
    unknown = sorted(set(importance) - set(columns))
    if unknown:
        raise InvalidInputError(
            f"feature importance names column {unknown[0]!r}, which is not monitored; "
            f"monitored columns: {list(columns)}"
        )
    bad = [name for name, weight in importance.items() if not (math.isfinite(weight) and weight >= 0)]
    if bad:
        raise InvalidInputError(
            f"feature importance of {bad[0]!r} must be a finite number >= 0, got {importance[bad[0]]}"
        )
    if not any(importance.values()):
        raise InvalidInputError("feature importance must give some column a weight above 0, got all zeros")
    return {name: float(importance.get(name, 0.0)) for name in columns}


def dataset_drift(
    checks: Iterable[Check], *, threshold: float = 0.5, importance: Mapping[str, float] | None = None
) -> Check | None:
    """The window's verdict: the share of columns whose drift verdict alerts, against ``threshold``.

    Each column counts once (its primary check), weighted by ``importance`` when given (columns
    left out weigh 0); the window drifts when the share is at or above ``threshold``. None when no
    column was checked (or none that has a weight).

    Examples:
        >>> a = Check("a", "drift", "wasserstein", 0.3, 0.1, True)
        >>> checks = [a, Check("b", "drift", "wasserstein", 0.0, 0.1, False)]
        >>> dataset_drift(checks).statistic, dataset_drift(checks).alert
        (0.5, True)
        >>> dataset_drift(checks, importance={"a": 1.0, "b": 3.0}).statistic
        0.25
    """
    verdicts = {c.column: c.alert for c in checks if c.kind == "drift" and c.method in PRIMARY_METHODS}
    weights = {name: 1.0 if importance is None else importance.get(name, 0.0) for name in verdicts}
    total = sum(weights.values())
    if not total:
        return None
    drifted = [name for name, alert in verdicts.items() if alert]
    share = sum(weights[name] for name in drifted) / total
    weighting = "equal weights" if importance is None else "weighted by feature importance"
    listed = ", ".join(drifted) if drifted else "none"
    return Check(
        MULTIVARIATE,
        "drift",
        DATASET_METHOD,
        share,
        threshold,
        share >= threshold,
        detail=f"{len(drifted)} of {len(verdicts)} columns drift ({weighting}; at or above the threshold "
        f"alerts): {listed}",
    )


def _rank_error(stats: NumericStats) -> float:
    """How far the column's CDF may be off: 0 when exact, else its sketch's rank error (99 %)."""
    if stats.values is not None or not stats.kll.is_estimation_mode():
        return 0.0
    return float(stats.kll.normalized_rank_error(False))


def _numeric_checks(name: str, ref: NumericSketch, cur: NumericSketch, t: DriftThresholds) -> list[Check]:
    a, b = ref.stats, cur.stats
    if not (a.count and b.count):
        return []
    psi = population_stability_index(ref.counts, cur.counts, epsilon=t.psi_epsilon)
    cdfs = _cdfs_of_points(a.points(), b.points(), (a.min, a.max, b.min, b.max))
    error = _rank_error(a) + _rank_error(b)
    if a.values is not None and b.values is not None:
        result = scipy_stats.ks_2samp(a.values, b.values)
        d, p_value, how = float(result.statistic), float(result.pvalue), "exact (raw values)"
    else:
        d = float(np.max(np.abs(cdfs[1] - cdfs[2])))
        p_value = ks_p_value(max(d - error, 0.0), a.count, b.count)
        how = f"from KLL sketches: D within ±{error:.2g}, tested as D - {error:.2g}"
    norm = max(a.std, _MIN_NORM)
    w1 = _wasserstein(cdfs)
    effect = w1 / norm
    sizes = f"reference n={a.count}, window n={b.count}"
    significant, large = p_value < t.alpha, effect > t.wasserstein
    verdict = (
        f"KS p-value {p_value:.3g} {'<' if significant else '>='} alpha {t.alpha:g} and normed Wasserstein "
        f"{effect:.3g} {'>' if large else '<='} {t.wasserstein:g}: "
        f"{'drift' if significant and large else 'no drift'}; distance {w1:.4g} / reference std "
        f"{norm:.4g}; {sizes}; {how}"
    )
    return [
        Check(
            name, "drift", "psi", psi, t.psi, psi > t.psi, detail=f"{ref.counts.size} reference-quantile bins"
        ),
        Check(name, "drift", "ks", d, t.ks, d > t.ks, p_value=p_value, detail=f"{sizes}; {how}"),
        Check(
            name,
            "drift",
            NUMERIC_PRIMARY_METHOD,
            effect,
            t.wasserstein,
            significant and large,
            p_value=p_value,
            detail=verdict,
            effect_size=effect,
            alpha=t.alpha,
            reference_n=a.count,
            window_n=b.count,
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
    sizes = f"reference n={ref.count}, window n={cur.count}"
    categories = f"{len(ref.vocabulary)} categories + other + unseen"
    significant, large = p_value < t.alpha, js > t.jensen_shannon
    verdict = (
        f"chi-squared p-value {p_value:.3g} {'<' if significant else '>='} alpha {t.alpha:g} and "
        f"Jensen-Shannon {js:.3g} {'>' if large else '<='} {t.jensen_shannon:g}: "
        f"{'drift' if significant and large else 'no drift'}; {categories}; {sizes}"
    )
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
            detail=f"chi-squared {statistic:.4g} with {dof} degrees of freedom (categories expected under "
            f"{_MIN_EXPECTED:g} times pooled); the statistic is its p-value; {sizes}",
        ),
        Check(
            name,
            "drift",
            CATEGORICAL_PRIMARY_METHOD,
            js,
            t.jensen_shannon,
            significant and large,
            p_value=p_value,
            detail=verdict,
            effect_size=js,
            alpha=t.alpha,
            reference_n=ref.count,
            window_n=cur.count,
        ),
    ]


def drifted_columns(checks: Iterable[Check]) -> list[str]:
    """Columns whose drift verdict (the primary check: significant and large enough) alerts, in order.

    Examples:
        >>> psi = Check("x", "drift", "psi", 0.5, 0.2, True)
        >>> wasserstein = Check("y", "drift", "wasserstein", 0.3, 0.1, True)
        >>> drifted_columns([psi, wasserstein])
        ['y']
    """
    drifted = [c.column for c in checks if c.kind == "drift" and c.method in PRIMARY_METHODS and c.alert]
    return list(dict.fromkeys(drifted))
