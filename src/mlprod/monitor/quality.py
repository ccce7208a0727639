"""Data quality of a window against its reference: missing values, out-of-range values, unseen categories.

Each check's ``statistic`` is the window's rate and ``threshold`` the limit actually applied, so a
reader sees both numbers; the detail gives the reference figure it was derived from. Columns are the
features and the prediction; a column with no rows in the window (or, for the value-based rates,
no values) gets no checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlprod.monitor.profile import Profile
from mlprod.monitor.results import Check
from mlprod.monitor.sketches import CategoricalSketch, ColumnSketch, NumericSketch


@dataclass(frozen=True)
class QualityThresholds:
    """When a data-quality rate alerts (rates are shares in [0, 1]).

    Attributes:
        missing_rate_increase: the window's missing rate may exceed the reference's by this much.
        out_of_range_rate: share of a numeric column's values outside the reference [min, max].
        unseen_rate: share of a categorical column's values the reference never had.
    """

    missing_rate_increase: float = 0.05
    out_of_range_rate: float = 0.01
    unseen_rate: float = 0.01


def quality_checks(
    reference: Profile, current: Profile, thresholds: QualityThresholds | None = None
) -> list[Check]:
    """Missing-rate checks of every compared column, out-of-range of numeric, unseen of categorical ones.

    Examples:
        >>> import pyarrow as pa
        >>> from mlprod.monitor.profile import ProfileSpec, ReferenceBuilder
        >>> spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
        >>> reference = ReferenceBuilder(spec).update(pa.table({"x": [1.0, 2.0, 3.0, 4.0]})).finish()
        >>> window = reference.window().update(pa.table({"x": [2.0, None, 3.0, 9.0]}))
        >>> [(c.method, c.statistic, c.alert) for c in quality_checks(reference, window)]
        [('missing_rate', 0.25, True), ('out_of_range_rate', 0.3333333333333333, True)]
    """
    thresholds = thresholds or QualityThresholds()
    reference.require_comparable(current)
    checks: list[Check] = []
    for name in reference.spec.compared:
        ref, cur = reference.columns[name], current.columns[name]
        if not cur.rows:
            continue
        checks.append(_missing_rate(name, ref, cur, thresholds))
        if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
            checks += _out_of_range(name, ref, cur, thresholds)
        elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
            checks += _unseen(name, ref, cur, thresholds)
    return checks


def _missing_rate(name: str, ref: ColumnSketch, cur: ColumnSketch, t: QualityThresholds) -> Check:
    reference_rate = ref.missing / ref.rows if ref.rows else 0.0
    rate = cur.missing / cur.rows
    limit = reference_rate + t.missing_rate_increase
    return Check(
        name,
        "quality",
        "missing_rate",
        rate,
        limit,
        rate > limit,
        detail=f"reference rate {reference_rate:.4f}",
    )


def _out_of_range(name: str, ref: NumericSketch, cur: NumericSketch, t: QualityThresholds) -> list[Check]:
    if not (cur.stats.count and ref.stats.count):
        return []
    rate = (cur.below + cur.above) / cur.stats.count
    detail = (
        f"{cur.below} below and {cur.above} above the reference range [{ref.stats.min:g}, {ref.stats.max:g}]"
    )
    return [
        Check(
            name,
            "quality",
            "out_of_range_rate",
            rate,
            t.out_of_range_rate,
            rate > t.out_of_range_rate,
            detail=detail,
        )
    ]


def _unseen(name: str, ref: CategoricalSketch, cur: CategoricalSketch, t: QualityThresholds) -> list[Check]:
    if not (cur.count and ref.tracks_unseen):
        return []
    rate = cur.unseen / cur.count
    detail = f"{cur.unseen} values outside the reference's {len(ref.known)} distinct values"
    return [
        Check(name, "quality", "unseen_categories", rate, t.unseen_rate, rate > t.unseen_rate, detail=detail)
    ]
