"""Training/serving skew: how far the distribution of each column moved between two tables.

Each shared column gets a population stability index (PSI) and, when numeric, the two-sample
Kolmogorov-Smirnov statistic, plus the share of missing values on each side. PSI is
``sum((c - r) * ln(c / r))`` over bins, ``r`` and ``c`` being the reference and current shares of a
bin (clipped at ``EPSILON`` so that an empty bin does not give ``log(0)``). Numeric bins are cut at
the reference's quantiles; categorical bins are the categories. Missing values (null, and NaN in
floating columns) form a bin of their own, so a rise in missing values counts as drift. A rule of
thumb reads PSI below 0.1 as stable, 0.1-0.2 as a moderate shift, above 0.2 as drift.

Integer, floating and temporal columns are numeric; anything else is compared as text categories.

Examples:
    >>> import pyarrow as pa
    >>> reference = pa.table({"x": list(range(100)), "c": ["a", "b"] * 50})
    >>> current = pa.table({"x": list(range(50, 150)), "c": ["a", "b"] * 50})
    >>> report = skew(reference, current)
    >>> report.drifted
    ['x']
    >>> report.column("x").ks
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError

EPSILON = 1e-4


@dataclass(frozen=True)
class ColumnSkew:
    """How one column differs between the reference and the current table.

    ``ks`` is the Kolmogorov-Smirnov statistic (numeric columns with values on both sides, else None).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    psi: float
    ks: float | None
    null_fraction_reference: float
    null_fraction_current: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": self.psi,
            "ks": self.ks,
            "null_fraction_reference": self.null_fraction_reference,
            "null_fraction_current": self.null_fraction_current,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class SkewReport:
    """The skew of every compared column, and the columns only one of the tables has."""

    columns: tuple[ColumnSkew, ...]
    only_in_reference: tuple[str, ...]
    only_in_current: tuple[str, ...]
    psi_threshold: float

    @property
    def drifted(self) -> list[str]:
        """Names of the columns whose PSI is above the threshold."""
        return [c.name for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnSkew:
        """The skew of column ``name``."""
        for found in self.columns:
            if found.name == name:
                return found
        compared = ", ".join(c.name for c in self.columns)
        raise InvalidInputError(f"column {name!r} was not compared; compared: {compared}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "drifted": self.drifted,
            "only_in_reference": list(self.only_in_reference),
            "only_in_current": list(self.only_in_current),
            "psi_threshold": self.psi_threshold,
        }

    def format(self) -> str:
        """Readable text: one line per column, then the columns only one table has."""
        lines = [
            f"{len(self.drifted)} of {len(self.columns)} column(s) drifted (PSI > {self.psi_threshold}):"
        ]
        for c in self.columns:
            ks = "" if c.ks is None else f"  ks={c.ks:.3f}"
            nulls = f"nulls {c.null_fraction_reference:.1%} -> {c.null_fraction_current:.1%}"
            mark = "  DRIFTED" if c.drifted else ""
            lines.append(f"  {c.name}  {c.kind}  psi={c.psi:.3f}{ks}  {nulls}{mark}")
        if self.only_in_reference:
            lines.append(f"  only in reference: {', '.join(self.only_in_reference)}")
        if self.only_in_current:
            lines.append(f"  only in current: {', '.join(self.only_in_current)}")
        return "\n".join(lines)


def skew(
    reference: pa.Table,
    current: pa.Table,
    *,
    columns: Sequence[str] | None = None,
    bins: int = 10,
    psi_threshold: float = 0.2,
) -> SkewReport:
    """Compare the distribution of each column of ``current`` with that of ``reference``.

    Compares ``columns`` when given (each must be in both tables), else every column both tables
    share, in the reference's order. Numeric columns are cut into ``bins`` quantile bins of the
    reference; a column drifted when its PSI is above ``psi_threshold``.

    Examples:
        >>> import pyarrow as pa
        >>> table = pa.table({"x": [1.0, 2.0, None, 4.0], "y": ["a", "b", "a", "a"]})
        >>> report = skew(table, table.drop_columns(["y"]))
        >>> report.column("x").psi, report.column("x").null_fraction_current, report.only_in_reference
        (0.0, 0.25, ('y',))
    """
    if bins < 1:
        raise InvalidInputError(f"skew: bins must be at least 1, got {bins}")
    if not psi_threshold >= 0:
        raise InvalidInputError(f"skew: psi_threshold must be >= 0, got {psi_threshold}")
    if reference.num_rows == 0 or current.num_rows == 0:
        side = "reference" if reference.num_rows == 0 else "current"
        raise InvalidInputError(f"skew: the {side} table has no rows; a distribution needs at least one")
    in_reference, in_current = reference.column_names, current.column_names
    if columns is None:
        names = [name for name in in_reference if name in in_current]
    else:
        names = list(columns)
        for name in names:
            if name not in in_reference or name not in in_current:
                side = "reference" if name not in in_reference else "current"
                raise InvalidInputError(
                    f"skew: column {name!r} is not in the {side} table "
                    f"(columns: {', '.join(in_reference if side == 'reference' else in_current)})"
                )
    compared = tuple(
        _column_skew(name, reference.column(name), current.column(name), bins, psi_threshold)
        for name in names
    )
    return SkewReport(
        columns=compared,
        only_in_reference=tuple(n for n in in_reference if n not in in_current),
        only_in_current=tuple(n for n in in_current if n not in in_reference),
        psi_threshold=psi_threshold,
    )


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins.

    Examples:
        >>> round(psi(np.array([50, 50]), np.array([90, 10])), 4)
        0.8789
    """
    r = np.clip(reference_counts / max(reference_counts.sum(), 1), EPSILON, None)
    c = np.clip(current_counts / max(current_counts.sum(), 1), EPSILON, None)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    Examples:
        >>> ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0]))
        0.6666666666666667
    """
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    gap = np.searchsorted(a, both, side="right") / a.size - np.searchsorted(b, both, side="right") / b.size
    return float(np.max(np.abs(gap)))


def _column_skew(
    name: str, reference: pa.ChunkedArray, current: pa.ChunkedArray, bins: int, psi_threshold: float
) -> ColumnSkew:
    ks: float | None = None
    kind: Literal["numeric", "categorical"]
    if _is_numeric(reference.type) and _is_numeric(current.type):
        kind = "numeric"
        ref, cur = _numbers(reference), _numbers(current)
        ref_values, cur_values = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        quantiles = np.quantile(ref_values, np.linspace(0, 1, bins + 1)[1:-1]) if ref_values.size else []
        edges = np.unique(quantiles)
        ref_counts = _histogram(ref_values, edges, ref.size - ref_values.size)
        cur_counts = _histogram(cur_values, edges, cur.size - cur_values.size)
        if ref_values.size and cur_values.size:
            ks = ks_statistic(ref_values, cur_values)
        ref_missing, cur_missing = ref.size - ref_values.size, cur.size - cur_values.size
    else:
        kind = "categorical"
        ref_text, cur_text = _text(reference), _text(current)
        ref_map, cur_map = _value_counts(ref_text), _value_counts(cur_text)
        categories = sorted(ref_map.keys() | cur_map.keys())
        ref_missing, cur_missing = ref_text.null_count, cur_text.null_count
        ref_counts = np.array([ref_map.get(c, 0) for c in categories] + [ref_missing], dtype=np.float64)
        cur_counts = np.array([cur_map.get(c, 0) for c in categories] + [cur_missing], dtype=np.float64)
    index = psi(ref_counts, cur_counts)
    return ColumnSkew(
        name=name,
        kind=kind,
        psi=index,
        ks=ks,
        null_fraction_reference=ref_missing / len(reference),
        null_fraction_current=cur_missing / len(current),
        drifted=index > psi_threshold,
    )


def _is_numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind))


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """The column as float64, missing values (null or NaN) as NaN; times as their integer ticks."""
    kind = column.type
    if pa.types.is_temporal(kind):
        column = column.cast(pa.int32() if kind.bit_width == 32 else pa.int64())
    return np.asarray(column.cast(pa.float64()).to_numpy(), dtype=np.float64)


def _histogram(values: np.ndarray, edges: np.ndarray, missing: int) -> np.ndarray:
    """Counts of ``values`` in the bins cut at ``edges`` (open at both ends), then the missing count."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing).astype(np.float64)


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.drop_null())
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
