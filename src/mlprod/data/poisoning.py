"""Poisoning checks: suspicious rows in a batch about to be committed, judged against a trusted table.

Four checks compare an incoming ``batch`` with a ``reference`` (usually the table's current version).
Each calibrates its threshold on the reference, so a feature that is naturally heavy-tailed or a
table that naturally repeats rows does not raise alarms. The checks report; they never drop rows.

- ``duplicate_flood``: one row content (feature values, key ignored) copied far more often than the
  reference ever repeats a content.
- ``outliers``: rows far outside the reference distribution (robust z-scores, unseen categories).
- ``label_shift``: the class shares of the label jump (large and statistically significant).
- ``label_issues``: rows whose label disagrees confidently with out-of-fold predictions of a quick
  model (confident learning, Northcutt et al. 2021).

Numeric features are integer and floating columns; categorical ones are string, dictionary and
boolean columns. Other column types are left out unless named in ``features`` (then an error).

Examples:
    >>> import pyarrow as pa
    >>> reference = pa.table({"id": list(range(200)), "x": [float(i % 50) for i in range(200)]})
    >>> batch = pa.table({"id": list(range(200, 300)), "x": [7.0] * 60 + [float(i) for i in range(40)]})
    >>> report = check_poisoning(batch, reference, key=["id"])
    >>> [f.check for f in report.flagged]
    ['duplicate_flood']
    >>> len(report.suspicious_rows)
    61
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError

CHECKS = ("duplicate_flood", "outliers", "label_shift", "label_issues")
MAX_EXAMPLES = 5
MAX_NUMERIC_LABEL_CLASSES = 20
MAD_SCALE = 1.4826

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: the statistic, its threshold, and the batch rows involved.

    ``rows`` holds batch row indices and is empty when the check is not flagged; ``count`` is the
    number of rows the statistic is about even when not flagged.
    """

    check: str
    flagged: bool
    statistic: float
    threshold: float
    count: int
    detail: str
    examples: tuple[dict[str, Any], ...] = ()
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, without the full ``rows`` array."""
        return {
            "check": self.check,
            "flagged": self.flagged,
            "statistic": _jsonable(self.statistic),
            "threshold": _jsonable(self.threshold),
            "count": self.count,
            "detail": self.detail,
            "examples": [_jsonable(e) for e in self.examples],
        }


@dataclass(frozen=True)
class PoisoningReport:
    """The findings of every check on one batch."""

    findings: tuple[Finding, ...]

    @property
    def flagged(self) -> tuple[Finding, ...]:
        """The findings whose check raised a flag."""
        return tuple(f for f in self.findings if f.flagged)

    @property
    def suspicious_rows(self) -> np.ndarray:
        """Sorted, unique batch row indices involved in any flagged finding."""
        parts = [f.rows for f in self.flagged]
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts).astype(np.int64))

    def finding(self, check: str) -> Finding:
        """The finding of the check named ``check``."""
        for found in self.findings:
            if found.check == check:
                return found
        raise InvalidInputError(f"no check named {check!r}; checks run: {[f.check for f in self.findings]}")

    def format(self) -> str:
        """Readable text: a summary line, one line per check, examples under flagged checks."""
        lines = [
            f"poisoning checks: {len(self.flagged)} of {len(self.findings)} flagged, "
            f"{len(self.suspicious_rows)} suspicious row(s)"
        ]
        for f in self.findings:
            mark = "FLAGGED" if f.flagged else "ok"
            lines.append(f"  [{mark}] {f.check}: {f.detail}")
            if f.flagged:
                lines.extend(f"      {_jsonable(e)}" for e in f.examples)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: counts and examples, not the full row arrays."""
        return {
            "flagged": [f.check for f in self.flagged],
            "suspicious_rows": len(self.suspicious_rows),
            "findings": [f.to_dict() for f in self.findings],
        }


def check_poisoning(
    batch: pa.Table,
    reference: pa.Table,
    *,
    key: Sequence[str],
    label: str | None = None,
    features: Sequence[str] | None = None,
    seed: int = 0,
    min_duplicate_count: int = 20,
    duplicate_factor: float = 5.0,
    z_threshold: float = 8.0,
    min_outlier_fraction: float = 0.005,
    outlier_factor: float = 3.0,
    max_label_shift: float = 0.1,
    label_shift_z: float = 4.0,
    min_label_issue_fraction: float = 0.02,
    label_issue_factor: float = 2.0,
) -> PoisoningReport:
    """Run all four checks on ``batch`` against ``reference``; see each check for its thresholds.

    ``features`` defaults to every column of a supported type that both tables share, except the
    key and the label. Without a label the two label checks are reported as skipped.

    Examples:
        >>> import pyarrow as pa
        >>> reference = pa.table({"id": [1, 2, 3, 4], "x": [1.0, 2.0, 3.0, 4.0]})
        >>> report = check_poisoning(reference, reference, key=["id"])
        >>> [f.check for f in report.findings]
        ['duplicate_flood', 'outliers', 'label_shift', 'label_issues']
        >>> report.flagged
        ()
    """
    columns = _resolve(batch, reference, key=key, label=label, features=features)
    return PoisoningReport(
        findings=(
            _duplicate_flood(batch, reference, columns, min_duplicate_count, duplicate_factor),
            _outliers(batch, reference, columns, z_threshold, min_outlier_fraction, outlier_factor),
            _label_shift(batch, reference, columns, max_label_shift, label_shift_z),
            _label_issues(batch, reference, columns, seed, min_label_issue_fraction, label_issue_factor),
        )
    )


def duplicate_flood(
    batch: pa.Table,
    reference: pa.Table,
    *,
    key: Sequence[str],
    features: Sequence[str] | None = None,
    min_duplicate_count: int = 20,
    duplicate_factor: float = 5.0,
) -> Finding:
    """Flag row contents (feature values, key ignored) copied far more often than the reference allows.

    The statistic is the largest number of batch rows sharing one content. The threshold is
    ``max(min_duplicate_count, duplicate_factor * m * len(batch) / len(reference))``, ``m`` being the
    reference's largest repeat count, so tables whose rows naturally repeat are not flagged.

    Examples:
        >>> import pyarrow as pa
        >>> reference = pa.table({"id": list(range(100)), "x": list(range(100))})
        >>> batch = pa.table({"id": list(range(30)), "x": [5] * 25 + [1, 2, 3, 4, 6]})
        >>> found = duplicate_flood(batch, reference, key=["id"])
        >>> found.flagged, found.statistic, found.threshold, found.count
        (True, 25.0, 20.0, 25)
    """
    columns = _resolve(batch, reference, key=key, label=None, features=features)
    return _duplicate_flood(batch, reference, columns, min_duplicate_count, duplicate_factor)


def outliers(
    batch: pa.Table,
    reference: pa.Table,
    *,
    key: Sequence[str],
    features: Sequence[str] | None = None,
    z_threshold: float = 8.0,
    min_outlier_fraction: float = 0.005,
    outlier_factor: float = 3.0,
) -> Finding:
    """Flag a batch with too many rows far outside the reference distribution.

    Each numeric cell gets a robust z-score ``(x - median) / (1.4826 * MAD)`` from the reference
    (when the MAD is 0, the spread of the values off the median stands in); a categorical value the
    reference never has is out of distribution, except in open-ended columns where the reference
    itself keeps meeting new values (more than ``min_outlier_fraction`` of it seen once). A row is
    an outlier when its largest ``|z|`` exceeds ``z_threshold`` or it has an unseen category. The
    statistic is the batch's outlier fraction, flagged above ``max(min_outlier_fraction,
    outlier_factor * the reference's own outlier fraction)``, the latter counting the expected rate
    of new categories (Good-Turing: the share of reference values seen once).

    Examples:
        >>> import pyarrow as pa
        >>> reference = pa.table({"id": list(range(100)), "x": [float(i % 10) for i in range(100)]})
        >>> batch = pa.table({"id": [0, 1, 2, 3], "x": [1.0, 2.0, 3.0, 500.0]})
        >>> found = outliers(batch, reference, key=["id"])
        >>> found.flagged, found.count, found.rows.tolist()
        (True, 1, [3])
    """
    columns = _resolve(batch, reference, key=key, label=None, features=features)
    return _outliers(batch, reference, columns, z_threshold, min_outlier_fraction, outlier_factor)


def label_shift(
    batch: pa.Table,
    reference: pa.Table,
    *,
    label: str | None,
    max_label_shift: float = 0.1,
    label_shift_z: float = 4.0,
) -> Finding:
    """Flag a jump in the label's class shares between the reference and the batch.

    The statistic is the largest absolute difference in one class's share. It is flagged when above
    ``max_label_shift`` and the two-proportion z-test for that class gives ``|z| > label_shift_z``,
    so that small batches do not raise false alarms. The examples list each class's two shares.

    Examples:
        >>> import pyarrow as pa
        >>> reference = pa.table({"y": [0] * 800 + [1] * 200})
        >>> batch = pa.table({"y": [0] * 400 + [1] * 600})
        >>> found = label_shift(batch, reference, label="y")
        >>> found.flagged, round(found.statistic, 2)
        (True, 0.4)
    """
    columns = _resolve(batch, reference, key=(), label=label, features=())
    return _label_shift(batch, reference, columns, max_label_shift, label_shift_z)


def label_issues(
    batch: pa.Table,
    reference: pa.Table,
    *,
    key: Sequence[str],
    label: str | None,
    features: Sequence[str] | None = None,
    seed: int = 0,
    min_label_issue_fraction: float = 0.02,
    label_issue_factor: float = 2.0,
    n_splits: int = 5,
    min_rows_per_class: int = 50,
    max_reference_rows: int = 50_000,
) -> Finding:
    """Flag a batch with too many rows whose label a model confidently disagrees with.

    A LightGBM model is fit ``n_splits`` times on the reference (at most ``max_reference_rows`` of
    it, sampled) plus the batch, giving out-of-fold class probabilities for every row. With
    ``t_j`` the mean probability of class ``j`` over rows labelled ``j``, a row labelled ``i`` is an
    issue when some other class ``j`` has probability at least ``t_j`` and above that of ``i``
    (confident learning). The statistic is the batch's issue fraction, flagged above
    ``max(min_label_issue_fraction, label_issue_factor * the reference rows' issue fraction)``.
    Examples are sorted by self-confidence, the probability of the given label (lower is more
    suspect). Skipped without a label, features, or ``min_rows_per_class`` rows in each class.

    Examples:
        >>> import pyarrow as pa
        >>> table = pa.table({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
        >>> found = label_issues(table, table, key=["id"], label="y")
        >>> found.flagged, found.detail
        (False, 'skipped: class 1 has 2 labelled row(s), fewer than 50')
    """
    columns = _resolve(batch, reference, key=key, label=label, features=features)
    return _label_issues(
        batch,
        reference,
        columns,
        seed,
        min_label_issue_fraction,
        label_issue_factor,
        n_splits=n_splits,
        min_rows_per_class=min_rows_per_class,
        max_reference_rows=max_reference_rows,
    )


# --- column resolution -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Columns:
    key: tuple[str, ...]
    label: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def _kind(kind: pa.DataType) -> Kind | None:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return "numeric"
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_dictionary(kind)
        or pa.types.is_boolean(kind)
    ):
        return "categorical"
    return None


def _require(table: pa.Table, name: str, role: str, side: str) -> None:
    if name not in table.column_names:
        raise InvalidInputError(
            f"{role} column {name!r} is missing from the {side} table; "
            f"it has: {', '.join(table.column_names)}"
        )


def _resolve(
    batch: pa.Table,
    reference: pa.Table,
    *,
    key: Sequence[str],
    label: str | None,
    features: Sequence[str] | None,
) -> _Columns:
    """Check that the named columns exist on both sides and split the features by kind."""
    if isinstance(key, str):
        key = [key]
    for side, table in (("batch", batch), ("reference", reference)):
        for name in key:
            _require(table, name, "key", side)
        if label is not None:
            _require(table, label, "label", side)
        for name in features or ():
            _require(table, name, "feature", side)
    if label is not None:
        _label_kind(batch, reference, label)
    if features is None:
        shared = [c for c in batch.column_names if c in reference.column_names]
        candidates = [c for c in shared if c not in key and c != label]
        explicit = False
    else:
        candidates = list(features)
        explicit = True
        if label is not None and label in candidates:
            raise InvalidInputError(f"label column {label!r} is also listed in features; leave it out")
    numeric: list[str] = []
    categorical: list[str] = []
    for name in candidates:
        kind = _feature_kind(batch.schema.field(name).type, reference.schema.field(name).type, name, explicit)
        if kind == "numeric":
            numeric.append(name)
        elif kind == "categorical":
            categorical.append(name)
    return _Columns(tuple(key), label, tuple(numeric), tuple(categorical))


def _feature_kind(
    batch_type: pa.DataType, reference_type: pa.DataType, name: str, explicit: bool
) -> Kind | None:
    kinds = {_kind(t) for t in (batch_type, reference_type) if not pa.types.is_null(t)}
    if not kinds:
        return "categorical"
    if None in kinds:
        if explicit:
            raise InvalidInputError(
                f"feature column {name!r} has type {batch_type} in the batch and {reference_type} in the "
                "reference; expected integer, floating, string, dictionary or boolean"
            )
        return None
    if len(kinds) > 1:
        raise InvalidInputError(
            f"feature column {name!r} is {batch_type} in the batch but {reference_type} in the reference; "
            "cast one side so both are numeric or both categorical"
        )
    return kinds.pop()


def _label_kind(batch: pa.Table, reference: pa.Table, label: str) -> None:
    """Refuse a label that is not binary or categorical (e.g. a continuous target)."""
    for side, table in (("batch", batch), ("reference", reference)):
        kind = table.schema.field(label).type
        if pa.types.is_null(kind) or _kind(kind) == "categorical":
            continue
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise InvalidInputError(
                f"label column {label!r} has type {kind} in the {side} table; expected a binary or "
                "categorical label (boolean, integer, string or dictionary)"
            )
        values = _numbers(table.column(label))
        values = values[~np.isnan(values)]
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise InvalidInputError(
                f"label column {label!r} has non-integer values in the {side} table; expected a binary or "
                "categorical label, not a continuous target"
            )
        distinct = len(np.unique(values))
        if distinct > MAX_NUMERIC_LABEL_CLASSES:
            raise InvalidInputError(
                f"label column {label!r} has {distinct} distinct numeric values in the {side} table; "
                f"expected a binary or categorical label (at most {MAX_NUMERIC_LABEL_CLASSES} classes)"
            )
    families = {_label_family(table.schema.field(label).type) for table in (batch, reference)} - {None}
    if len(families) > 1:
        raise InvalidInputError(
            f"label column {label!r} is {batch.schema.field(label).type} in the batch but "
            f"{reference.schema.field(label).type} in the reference; cast one side to match"
        )


def _label_family(kind: pa.DataType) -> str | None:
    if pa.types.is_null(kind):
        return None
    if pa.types.is_boolean(kind):
        return "boolean"
    return "numeric" if _kind(kind) == "numeric" else "text"


# --- value extraction --------------------------------------------------------------------------


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A float64 array, nulls as NaN."""
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _texts(column: pa.ChunkedArray) -> np.ndarray:
    """An object array of strings, nulls as None, so both tables encode categories alike."""
    if pa.types.is_null(column.type):
        return np.full(len(column), None, dtype=object)
    if pa.types.is_dictionary(column.type):
        column = pa.chunked_array(
            [chunk.dictionary_decode() for chunk in column.chunks], column.type.value_type
        )
    return np.asarray(pc.cast(column, pa.string()).to_numpy(zero_copy_only=False), dtype=object)


def _labels(table: pa.Table, label: str) -> np.ndarray:
    """The label as an object array of Python values (integral floats as ints), nulls as None."""
    kind = table.schema.field(label).type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = _numbers(table.column(label))
        return np.array([None if math.isnan(v) else int(v) for v in values.tolist()], dtype=object)
    if pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return np.array(table.column(label).to_pylist(), dtype=object)
    return _texts(table.column(label))


def _frame(table: pa.Table, columns: _Columns) -> pd.DataFrame:
    data: dict[str, Any] = {name: _numbers(table.column(name)) for name in columns.numeric}
    for name in columns.categorical:
        data[name] = pd.Series(_texts(table.column(name)), dtype=object)
    return pd.DataFrame(data, index=pd.RangeIndex(table.num_rows))


def _key_values(batch: pa.Table, columns: _Columns, rows: np.ndarray) -> list[dict[str, Any]]:
    if not columns.key or len(rows) == 0:
        return [{} for _ in rows]
    picked: list[dict[str, Any]] = batch.select(list(columns.key)).take(pa.array(rows)).to_pylist()
    return picked


# --- duplicate flood ---------------------------------------------------------------------------


def _content_counts(table: pa.Table, columns: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Per row, an id of its feature content; and per id, how many rows share it."""
    if table.num_rows == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if not columns.features:
        return np.zeros(table.num_rows, dtype=np.int64), np.array([table.num_rows])
    hashes = pd.util.hash_pandas_object(_frame(table, columns), index=False).to_numpy()
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return inverse.astype(np.int64), counts.astype(np.int64)


def _duplicate_flood(
    batch: pa.Table, reference: pa.Table, columns: _Columns, min_count: int, factor: float
) -> Finding:
    _, reference_counts = _content_counts(reference, columns)
    inverse, counts = _content_counts(batch, columns)
    largest_reference = int(reference_counts.max()) if len(reference_counts) else 0
    scaled = largest_reference * batch.num_rows / reference.num_rows if reference.num_rows else 0.0
    threshold = max(float(min_count), factor * scaled)
    statistic = float(counts.max()) if len(counts) else 0.0
    flooded = np.flatnonzero(counts > threshold)
    rows = np.flatnonzero(np.isin(inverse, flooded)) if len(flooded) else np.empty(0, dtype=np.int64)
    flagged = len(flooded) > 0
    order = flooded[np.argsort(-counts[flooded], kind="stable")][:MAX_EXAMPLES]
    firsts = np.array([np.flatnonzero(inverse == content)[0] for content in order], dtype=np.int64)
    frame = _frame(batch.take(pa.array(firsts, type=pa.int64())), columns) if len(firsts) else None
    examples = []
    for i, (keys, content) in enumerate(zip(_key_values(batch, columns, firsts), order, strict=True)):
        values = {} if frame is None else {c: _python(frame[c].iloc[i]) for c in columns.features}
        examples.append({**keys, **values, "copies": int(counts[content])})
    reference_part = (
        f"the reference repeats a row at most {largest_reference} time(s) in {reference.num_rows}"
    )
    if flagged:
        detail = (
            f"{len(flooded)} row content(s) repeated more than {threshold:g} times fill {len(rows)} of "
            f"{batch.num_rows} batch rows (most copies: {statistic:g}); {reference_part}"
        )
    else:
        detail = f"most copies of one row content: {statistic:g}, threshold {threshold:g}; {reference_part}"
    return Finding(
        check="duplicate_flood",
        flagged=flagged,
        statistic=statistic,
        threshold=threshold,
        count=len(rows),
        detail=detail,
        examples=tuple(examples),
        rows=rows.astype(np.int64),
    )


# --- outliers ----------------------------------------------------------------------------------


def _robust_scale(values: np.ndarray, median: float) -> float:
    """A standard-deviation-like spread that is not pulled by outliers and is 0 only for constants."""
    mad = float(np.median(np.abs(values - median))) * MAD_SCALE
    if mad > 0:
        return mad
    # Most values equal the median (e.g. a mostly-zero feature): measure the spread of the rest.
    off = np.abs(values[values != median] - median)
    if len(off):
        return float(np.median(off)) * MAD_SCALE
    # A constant reference: any other value is out of distribution, yet float noise must not be.
    return 1e-6 * max(1.0, abs(median))


def _outlier_scores(
    table: pa.Table,
    columns: _Columns,
    stats: dict[str, tuple[float, float]],
    seen: dict[str, set[Any] | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: largest |z|, the numeric column giving it, the number of unseen categories, the first
    unseen column (index into categorical, -1 when none)."""
    n = table.num_rows
    z = np.zeros((n, len(columns.numeric)))
    for j, name in enumerate(columns.numeric):
        median, scale = stats[name]
        values = _numbers(table.column(name))
        with np.errstate(invalid="ignore", over="ignore"):
            z[:, j] = np.nan_to_num(np.abs(values - median) / scale, nan=0.0, posinf=np.inf)
    unseen = np.zeros((n, len(columns.categorical)), dtype=bool)
    for j, name in enumerate(columns.categorical):
        known_values = seen[name]
        if known_values is None:
            continue
        texts = _texts(table.column(name))
        present = np.array([t is not None for t in texts], dtype=bool)
        known = pd.Series(texts, dtype=object).isin(known_values).to_numpy()
        unseen[:, j] = present & ~known
    if columns.numeric:
        worst = np.argmax(z, axis=1)
        score = z[np.arange(n), worst]
    else:
        worst = np.zeros(n, dtype=np.int64)
        score = np.zeros(n)
    n_unseen = unseen.sum(axis=1)
    if columns.categorical:
        first_unseen = np.where(n_unseen > 0, np.argmax(unseen, axis=1), -1)
    else:
        first_unseen = np.full(n, -1)
    return score, worst, n_unseen, first_unseen


def _outliers(
    batch: pa.Table,
    reference: pa.Table,
    columns: _Columns,
    z_threshold: float,
    min_fraction: float,
    factor: float,
) -> Finding:
    stats: dict[str, tuple[float, float]] = {}
    for name in columns.numeric:
        values = _numbers(reference.column(name))
        values = values[np.isfinite(values)]
        if len(values) == 0:
            stats[name] = (0.0, math.inf)  # nothing to compare with: no z-scores
            continue
        median = float(np.median(values))
        stats[name] = (median, _robust_scale(values, median))
    seen: dict[str, set[Any] | None] = {}
    novelty = 0.0
    open_ended: list[str] = []
    for name in columns.categorical:
        counts = pd.Series(_texts(reference.column(name)), dtype=object).value_counts(dropna=True)
        # Good-Turing: the share of values seen once estimates how often a new value turns up. In
        # open-ended columns (names, free text) a new value is ordinary, so it is not counted.
        unseen_rate = float((counts == 1).sum() / counts.sum()) if len(counts) else 0.0
        if unseen_rate > min_fraction:
            seen[name] = None
            open_ended.append(name)
        else:
            seen[name] = set(counts.index)
            novelty += unseen_rate
    ref_score = _outlier_scores(reference, columns, stats, seen)[0]
    ref_fraction = float(np.mean(ref_score > z_threshold)) if reference.num_rows else 0.0
    ref_fraction = min(1.0, ref_fraction + novelty)
    score, worst, n_unseen, first_unseen = _outlier_scores(batch, columns, stats, seen)
    is_outlier = (score > z_threshold) | (n_unseen > 0)
    candidates = np.flatnonzero(is_outlier)
    statistic = float(len(candidates) / batch.num_rows) if batch.num_rows else 0.0
    threshold = max(min_fraction, factor * ref_fraction)
    flagged = statistic > threshold
    order = candidates[np.lexsort((-score[candidates], -n_unseen[candidates]))][:MAX_EXAMPLES]
    examples = []
    for keys, row in zip(_key_values(batch, columns, order), order, strict=True):
        example: dict[str, Any] = dict(keys)
        if n_unseen[row] > 0:
            name = columns.categorical[int(first_unseen[row])]
            example.update(column=name, value=_texts(batch.column(name).slice(int(row), 1))[0], unseen=True)
        else:
            name = columns.numeric[int(worst[row])]
            example.update(column=name, value=_python(_numbers(batch.column(name).slice(int(row), 1))[0]))
        example["score"] = float(score[row])
        examples.append(example)
    detail = (
        f"{len(candidates)} of {batch.num_rows} batch rows ({statistic:.2%}) have "
        f"|robust z| > {z_threshold:g} or an unseen category, "
        f"threshold {threshold:.2%} (reference: {ref_fraction:.2%})"
    )
    if open_ended:
        detail += f"; new values not counted in open-ended column(s) {', '.join(open_ended)}"
    return Finding(
        check="outliers",
        flagged=flagged,
        statistic=statistic,
        threshold=threshold,
        count=len(candidates),
        detail=detail,
        examples=tuple(examples),
        rows=candidates.astype(np.int64) if flagged else np.empty(0, dtype=np.int64),
    )


# --- label shift -------------------------------------------------------------------------------


def _skipped(check: str, threshold: float, reason: str) -> Finding:
    return Finding(check=check, flagged=False, statistic=0.0, threshold=threshold, count=0, detail=reason)


def _label_shift(
    batch: pa.Table, reference: pa.Table, columns: _Columns, max_shift: float, min_z: float
) -> Finding:
    if columns.label is None:
        return _skipped("label_shift", max_shift, "skipped: no label column given")
    ours = pd.Series(_labels(batch, columns.label), dtype=object).dropna()
    theirs = pd.Series(_labels(reference, columns.label), dtype=object).dropna()
    if len(ours) == 0 or len(theirs) == 0:
        side = "batch" if len(ours) == 0 else "reference"
        return _skipped("label_shift", max_shift, f"skipped: the {side} has no labelled rows")
    batch_counts = ours.value_counts()
    reference_counts = theirs.value_counts()
    classes = sorted(set(batch_counts.index) | set(reference_counts.index), key=repr)
    n_b, n_r = len(ours), len(theirs)
    shares = []
    for cls in classes:
        c_b, c_r = int(batch_counts.get(cls, 0)), int(reference_counts.get(cls, 0))
        p_b, p_r = c_b / n_b, c_r / n_r
        pooled = (c_b + c_r) / (n_b + n_r)
        spread = math.sqrt(pooled * (1 - pooled) * (1 / n_b + 1 / n_r))
        z = (p_b - p_r) / spread if spread > 0 else 0.0
        shares.append((abs(p_b - p_r), cls, p_b, p_r, z))
    statistic, cls, p_b, p_r, z = max(shares, key=lambda s: s[0])
    flagged = statistic > max_shift and abs(z) > min_z
    examples = tuple(
        {"class": _python(c), "batch_share": b, "reference_share": r, "z": zz}
        for _, c, b, r, zz in sorted(shares, key=lambda s: -s[0])[:MAX_EXAMPLES]
    )
    detail = (
        f"class {cls!r} is {p_b:.1%} of {n_b} batch rows vs {p_r:.1%} of {n_r} reference rows "
        f"(shift {statistic:.3f}, z={z:.1f}); flagged when shift > {max_shift:g} and |z| > {min_z:g}"
    )
    return Finding(
        check="label_shift",
        flagged=flagged,
        statistic=float(statistic),
        threshold=max_shift,
        count=n_b,
        detail=detail,
        examples=examples,
    )


# --- label issues ------------------------------------------------------------------------------


def _model_matrix(frames: list[pd.DataFrame], columns: _Columns) -> tuple[np.ndarray, list[int]]:
    """Stack the tables' features as floats, categories as shared integer codes (NaN for null)."""
    parts: list[np.ndarray] = []
    for name in columns.numeric:
        parts.append(np.concatenate([f[name].to_numpy(dtype=np.float64) for f in frames]))
    for name in columns.categorical:
        values = np.concatenate([f[name].to_numpy(dtype=object) for f in frames])
        codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        parts.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
    matrix = np.column_stack(parts)
    categorical = list(range(len(columns.numeric), len(columns.numeric) + len(columns.categorical)))
    return matrix, categorical


def _out_of_fold(
    x: np.ndarray, y: np.ndarray, n_classes: int, categorical: list[int], n_splits: int, seed: int
) -> np.ndarray:
    import lightgbm as lgb  # deferred: a heavy import only this check needs
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.zeros((len(y), n_classes))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y):
        model = lgb.LGBMClassifier(
            n_estimators=60,
            learning_rate=0.1,
            num_leaves=31,
            min_child_samples=20,
            subsample_freq=0,
            num_threads=1,
            deterministic=True,
            random_state=seed,
            verbose=-1,
        )
        model.fit(x[train], y[train], categorical_feature=categorical or "auto")
        predicted = np.asarray(model.predict_proba(x[test]))
        probabilities[np.ix_(test, model.classes_.astype(np.int64))] = predicted
    return probabilities


def _confident_issues(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Confident learning: rows whose label loses to another class at or above that class's threshold."""
    n_classes = probabilities.shape[1]
    thresholds = np.array([probabilities[y == j, j].mean() for j in range(n_classes)])
    given = probabilities[np.arange(len(y)), y]
    confident = probabilities >= thresholds[None, :]
    confident[np.arange(len(y)), y] = False
    beats = probabilities > given[:, None]
    result: np.ndarray = np.any(confident & beats, axis=1)
    return result


def _label_issues(
    batch: pa.Table,
    reference: pa.Table,
    columns: _Columns,
    seed: int,
    min_fraction: float,
    factor: float,
    *,
    n_splits: int = 5,
    min_rows_per_class: int = 50,
    max_reference_rows: int = 50_000,
) -> Finding:
    if columns.label is None:
        return _skipped("label_issues", min_fraction, "skipped: no label column given")
    if not columns.features:
        return _skipped("label_issues", min_fraction, "skipped: no feature columns to learn the label from")
    if reference.num_rows > max_reference_rows:
        picked = np.sort(
            np.random.default_rng(seed).choice(reference.num_rows, max_reference_rows, replace=False)
        )
        reference = reference.take(pa.array(picked, type=pa.int64()))
    batch_labels = _labels(batch, columns.label)
    reference_labels = _labels(reference, columns.label)
    batch_rows = np.flatnonzero(pd.notna(pd.Series(batch_labels, dtype=object)).to_numpy())
    reference_rows = np.flatnonzero(pd.notna(pd.Series(reference_labels, dtype=object)).to_numpy())
    if len(batch_rows) == 0:
        return _skipped("label_issues", min_fraction, "skipped: the batch has no labelled rows")
    labels = np.concatenate([reference_labels[reference_rows], batch_labels[batch_rows]])
    codes, classes = pd.factorize(pd.Series(labels, dtype=object), sort=True)
    y = codes.astype(np.int64)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        return _skipped("label_issues", min_fraction, "skipped: fewer than two label classes")
    if counts.min() < max(min_rows_per_class, n_splits):
        smallest = int(np.argmin(counts))
        return _skipped(
            "label_issues",
            min_fraction,
            f"skipped: class {_python(classes[smallest])!r} has {int(counts[smallest])} labelled row(s), "
            f"fewer than {max(min_rows_per_class, n_splits)}",
        )
    frames = [_frame(reference, columns).iloc[reference_rows], _frame(batch, columns).iloc[batch_rows]]
    x, categorical = _model_matrix(frames, columns)
    probabilities = _out_of_fold(x, y, len(classes), categorical, n_splits, seed)
    issues = _confident_issues(probabilities, y)
    n_ref = len(reference_rows)
    ref_fraction = float(issues[:n_ref].mean()) if n_ref else 0.0
    batch_issues = issues[n_ref:]
    statistic = float(batch_issues.mean())
    threshold = max(min_fraction, factor * ref_fraction)
    flagged = statistic > threshold
    found = np.flatnonzero(batch_issues)
    confidence = probabilities[n_ref:][np.arange(len(batch_rows)), y[n_ref:]]
    order = found[np.argsort(confidence[found], kind="stable")][:MAX_EXAMPLES]
    examples = []
    for keys, i in zip(_key_values(batch, columns, batch_rows[order]), order, strict=True):
        predicted = int(np.argmax(probabilities[n_ref + i]))
        examples.append(
            {
                **keys,
                "label": _python(classes[y[n_ref + i]]),
                "predicted": _python(classes[predicted]),
                "score": float(confidence[i]),
            }
        )
    detail = (
        f"{len(found)} of {len(batch_rows)} labelled batch rows ({statistic:.2%}) have a label the model "
        f"confidently disagrees with, threshold {threshold:.2%} (reference: {ref_fraction:.2%})"
    )
    return Finding(
        check="label_issues",
        flagged=flagged,
        statistic=statistic,
        threshold=threshold,
        count=len(found),
        detail=detail,
        examples=tuple(examples),
        rows=batch_rows[found].astype(np.int64) if flagged else np.empty(0, dtype=np.int64),
    )


# --- helpers -----------------------------------------------------------------------------------


def _python(value: Any) -> Any:
    """A plain Python value for a numpy or pandas scalar; None for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _python(value.item())
    return value


def _jsonable(value: Any) -> Any:
    """Make examples and statistics JSON-safe: non-finite floats as strings, other objects as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
