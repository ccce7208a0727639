"""Multivariate drift: how far the rows of a window lie from the principal subspace of the reference.

Univariate tests compare each column's marginal distribution, so a broken correlation between
columns whose marginals stay the same goes unseen. Like NannyML's data reconstruction drift, the
detector learns the principal components of a reference sample and measures each row's distance to
its reconstruction from them; rows that stop following the reference correlations lie further away
and the window's mean reconstruction error rises.

Preparation. Each column is standardised by its reference mean and standard deviation; a missing
or non-finite value becomes the reference mean (0 after standardising). Columns that are constant
or empty in the reference are ignored: they have no correlation to break, and the univariate
checks watch their values. The smallest number of components whose share of the reference variance
reaches ``explained_variance`` is kept, at most one fewer than the columns so a residual always
remains to be watched.

Threshold. The reference sample is split into ``chunks`` consecutive chunks and each chunk's rows
are reconstructed by a PCA fitted on the other chunks, so the reference errors are out of sample
(fitting and scoring the same rows would bias them low and raise false alarms). From these ``N``
errors: the mean ``mu``, the row standard deviation ``s``, the variance of the chunk means ``v`` and
the chunk sizes ``n_j``. Then

* ``tau2 = max(0, v - s**2 * mean(1 / n_j))`` — variation between chunks beyond row noise (slow
  natural change within the reference period; about 0 for a shuffled sample);
* ``se2 = s**2 / N + tau2 / chunks`` — the variance of ``mu`` itself;
* under no drift the mean error of a window of ``n`` rows is about normal with mean ``mu`` and
  variance ``s**2 / n + tau2 + se2`` (central limit theorem; sound from a few dozen rows);
* ``upper(n) = mu + max(3 * sqrt(s**2 / n + tau2 + se2), min_relative_shift * mu, 1e-6)``.

For a window the size of a chunk this is NannyML's band, mean + 3 standard deviations of the chunk
means; it narrows for larger windows, but never below ``min_relative_shift`` (1 % by default) of the
reference mean, so in very large windows a shift too small to matter does not alert, nor below
1e-6 standard units, so float rounding does not alert when the reference lies exactly in its
subspace (collinear columns). Only a rise alerts: a window that fits the reference subspace better
than the reference itself is no concern. The approximation wants a reference sample of about ten
rows per column or more; with fewer the PCA itself is noisy and false alarms rise above the nominal
0.1 % (measured: 1-2 % at 2.5 rows per column, none in 300 trials at 25).

A window keeps only the row count and the sum and sum of squares of its errors, so it updates batch
by batch and merges across batches and workers with the same result as all at once (up to float
rounding).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlprod.errors import InvalidInputError
from mlprod.monitor.results import MULTIVARIATE, Check

METHOD = "pca_reconstruction"
_BLOCK_ROWS = 65_536  # rows projected at once: bounds temporary memory for any window size
_Z = 3.0
_NUMERIC_FLOOR = 1e-6  # standard units: far above float noise, far below any real change


class PcaDetector:
    """A PCA of a reference sample and the band its reconstruction error stays in without drift.

    Build one with ``PcaDetector.fit``; its state is plain arrays (``to_dict``/``from_dict``).
    ``explained_variance`` is the share of reference variance the kept components reach,
    ``mean_error``, ``row_sd`` and ``between_chunk_var`` are the reference statistics of the threshold
    rule (module docstring), ``fingerprint`` identifies the state so windows of two detectors never mix.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=2000)
        >>> reference = np.column_stack([x, x + 0.3 * rng.normal(size=2000)])
        >>> detector = PcaDetector.fit(reference, ["x", "y"])
        >>> detector.components
        1
        >>> x = rng.normal(size=500)
        >>> broken = np.column_stack([x, -x + 0.3 * rng.normal(size=500)])
        >>> detector.check(detector.window().update(broken)).alert
        True
    """

    def __init__(
        self,
        *,
        columns: Sequence[str],
        ignored: Sequence[str],
        mean: np.ndarray,
        scale: np.ndarray,
        components: np.ndarray,
        explained_variance: float,
        reference_rows: int,
        mean_error: float,
        row_sd: float,
        between_chunk_var: float,
        chunks: int,
        min_relative_shift: float,
    ) -> None:
        self.columns = tuple(columns)
        self.ignored = tuple(ignored)
        self.explained_variance = explained_variance
        self.reference_rows = reference_rows
        self.mean_error = mean_error
        self.row_sd = row_sd
        self.between_chunk_var = between_chunk_var
        self.chunks = chunks
        self.min_relative_shift = min_relative_shift
        self._used = np.array([c not in self.ignored for c in self.columns], dtype=bool)
        self._mean = np.asarray(mean, dtype=np.float64)
        self._scale = np.asarray(scale, dtype=np.float64)
        self._components = np.asarray(components, dtype=np.float64)  # k x used columns, orthonormal rows
        # residual = (x - mean) / scale @ (I - V'V), folded into one product over all columns: x @ A - b
        residual = np.eye(self._components.shape[1]) - self._components.T @ self._components
        self._residual_map = np.zeros((len(self.columns), residual.shape[1]))
        self._residual_map[self._used] = residual / self._scale[:, None]
        self._residual_shift = (self._mean / self._scale) @ residual
        state = json.dumps(self.to_dict(), sort_keys=True).encode()
        self.fingerprint = hashlib.sha256(state).hexdigest()[:16]

    @classmethod
    def fit(
        cls,
        matrix: np.ndarray,
        columns: Sequence[str],
        *,
        explained_variance: float = 0.65,
        chunks: int = 10,
        min_relative_shift: float = 0.01,
    ) -> PcaDetector:
        """Learn the reference subspace and error band from a reference sample (rows x columns).

        The sample should be representative of the reference period, in time order if there is one
        (chunks then capture its natural variation); a random sample of a large table is enough.
        """
        columns = _column_names(columns)
        if not 0.0 < explained_variance <= 1.0:
            raise InvalidInputError(f"explained_variance must be in (0, 1], got {explained_variance}")
        if chunks < 2:
            raise InvalidInputError(f"chunks must be at least 2, got {chunks}")
        if min_relative_shift < 0.0:
            raise InvalidInputError(f"min_relative_shift must be >= 0, got {min_relative_shift}")
        x = _as_matrix(matrix, columns, "reference sample")
        rows, width = x.shape
        if rows < max(2 * width, 2 * chunks):
            raise InvalidInputError(
                f"reference sample has {rows} rows; the PCA detector needs at least "
                f"{max(2 * width, 2 * chunks)} (2 per column and 2 per chunk)"
            )
        mean, scale, used = _column_scales(x)
        if used.sum() < 2:
            raise InvalidInputError(
                "the PCA detector needs at least 2 columns that vary in the reference sample; "
                f"constant or empty: {', '.join(c for c, u in zip(columns, used, strict=True) if not u)}"
            )
        mean, scale = mean[used], scale[used]
        z = _standardise(x[:, used], mean, scale)
        bounds = np.linspace(0, rows, chunks + 1).astype(int)
        spans = list(itertools.pairwise(bounds))
        grams = [z[a:b].T @ z[a:b] for a, b in spans]
        total = np.sum(grams, axis=0)
        share, components = _principal_axes(total)
        kept = min(int(np.searchsorted(share, explained_variance - 1e-12)) + 1, int(used.sum()) - 1)
        out_of_fold = [
            _errors(z[a:b], _principal_axes(total - gram)[1][:kept])
            for (a, b), gram in zip(spans, grams, strict=True)
        ]
        errors = np.concatenate(out_of_fold)
        chunk_means = np.array([chunk.mean() for chunk in out_of_fold])
        row_var = float(errors.var(ddof=1))
        chunk_var = float(chunk_means.var(ddof=1))
        return cls(
            columns=columns,
            ignored=[c for c, u in zip(columns, used, strict=True) if not u],
            mean=mean,
            scale=scale,
            components=components[:kept],
            explained_variance=float(share[kept - 1]),
            reference_rows=rows,
            mean_error=float(errors.mean()),
            row_sd=float(np.sqrt(row_var)),
            between_chunk_var=max(0.0, chunk_var - row_var * float(np.mean(1.0 / np.diff(bounds)))),
            chunks=chunks,
            min_relative_shift=min_relative_shift,
        )

    @property
    def components(self) -> int:
        """How many principal components the reconstruction keeps."""
        return int(self._components.shape[0])

    def errors(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's reconstruction error: Euclidean distance, in reference standard deviations."""
        x = _as_matrix(matrix, self.columns, "matrix")
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], _BLOCK_ROWS):
            block = x[start : start + _BLOCK_ROWS]
            with np.errstate(invalid="ignore", over="ignore"):
                residual = block @ self._residual_map
                residual -= self._residual_shift
            errors = out[start : start + len(block)]
            np.sqrt(np.einsum("ij,ij->i", residual, residual), out=errors)
            # the fused product spreads a missing value over its row: redo those rows with imputation
            missing = ~np.isfinite(errors)
            if missing.any():
                z = _standardise(block[missing][:, self._used], self._mean, self._scale)
                errors[missing] = _errors(z, self._components)
        return out

    def threshold(self, rows: int) -> float:
        """The upper bound of the mean error of a window of ``rows`` rows without drift."""
        if rows < 1:
            raise InvalidInputError(f"rows must be at least 1, got {rows}")
        reference_var = self.row_sd**2 / self.reference_rows + self.between_chunk_var / self.chunks
        spread = np.sqrt(self.row_sd**2 / rows + self.between_chunk_var + reference_var)
        floor = max(self.min_relative_shift * self.mean_error, _NUMERIC_FLOOR)
        return self.mean_error + max(_Z * float(spread), floor)

    def window(self) -> ReconstructionWindow:
        """An empty window to feed with rows of the same columns as the reference."""
        return ReconstructionWindow(self)

    def check(self, window: ReconstructionWindow) -> Check:
        """The drift verdict of a window: alert when its mean error is above ``threshold(rows)``."""
        window.require_detector(self)
        if window.rows == 0:
            return Check(
                column=MULTIVARIATE,
                kind="drift",
                method=METHOD,
                statistic=0.0,
                threshold=self.threshold(1),
                alert=False,
                detail="no rows",
            )
        statistic, threshold = window.mean_error, self.threshold(window.rows)
        return Check(
            column=MULTIVARIATE,
            kind="drift",
            method=METHOD,
            statistic=statistic,
            threshold=threshold,
            alert=statistic > threshold,
            detail=(
                f"{self.components} of {int(self._used.sum())} components keep "
                f"{self.explained_variance:.0%} of the reference variance; reference mean error "
                f"{self.mean_error:.4g}, window of {window.rows} rows has sd {window.std_error:.4g}"
                + (
                    f"; ignored (constant or empty in the reference): {', '.join(self.ignored)}"
                    if self.ignored
                    else ""
                )
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "columns": list(self.columns),
            "ignored": list(self.ignored),
            "mean": self._mean.tolist(),
            "scale": self._scale.tolist(),
            "components": self._components.tolist(),
            "explained_variance": self.explained_variance,
            "reference_rows": self.reference_rows,
            "mean_error": self.mean_error,
            "row_sd": self.row_sd,
            "between_chunk_var": self.between_chunk_var,
            "chunks": self.chunks,
            "min_relative_shift": self.min_relative_shift,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PcaDetector:
        try:
            if data["method"] != METHOD:
                raise ValueError(f"method is {data['method']!r}, not {METHOD!r}")
            columns, ignored = [str(c) for c in data["columns"]], [str(c) for c in data["ignored"]]
            used = len(columns) - len(ignored)
            mean, scale = np.array(data["mean"], dtype=np.float64), np.array(data["scale"], dtype=np.float64)
            components = np.array(data["components"], dtype=np.float64)
            if mean.shape != (used,) or scale.shape != (used,) or components.ndim != 2:
                raise ValueError("mean, scale and components do not match the columns")
            if components.shape[1] != used:
                raise ValueError("mean, scale and components do not match the columns")
            return cls(
                columns=columns,
                ignored=ignored,
                mean=mean,
                scale=scale,
                components=components,
                explained_variance=float(data["explained_variance"]),
                reference_rows=int(data["reference_rows"]),
                mean_error=float(data["mean_error"]),
                row_sd=float(data["row_sd"]),
                between_chunk_var=float(data["between_chunk_var"]),
                chunks=int(data["chunks"]),
                min_relative_shift=float(data["min_relative_shift"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a PCA detector state: {exc}") from exc


class ReconstructionWindow:
    """The reconstruction errors of one window, as row count, sum and sum of squares.

    ``update`` and ``merge`` change the window in place and return it.

    Examples:
        >>> rng = np.random.default_rng(1)
        >>> detector = PcaDetector.fit(rng.normal(size=(400, 3)), ["a", "b", "c"])
        >>> rows = rng.normal(size=(100, 3))
        >>> parts = detector.window().update(rows[:30]).merge(detector.window().update(rows[30:]))
        >>> whole = detector.window().update(rows)
        >>> parts.rows, bool(np.isclose(parts.mean_error, whole.mean_error))
        (100, True)
    """

    def __init__(self, detector: PcaDetector, *, rows: int = 0, total: float = 0.0, squares: float = 0.0):
        self._detector = detector
        self.rows = rows
        self._total = total
        self._squares = squares

    @property
    def mean_error(self) -> float:
        """Mean reconstruction error of the window's rows (0.0 while empty)."""
        return self._total / self.rows if self.rows else 0.0

    @property
    def std_error(self) -> float:
        """Sample standard deviation of the rows' errors (0.0 below two rows)."""
        if self.rows < 2:
            return 0.0
        return float(np.sqrt(max(0.0, (self._squares - self._total * self.mean_error) / (self.rows - 1))))

    def update(self, matrix: np.ndarray) -> ReconstructionWindow:
        """Add rows (same columns, in the same order, as the reference sample)."""
        errors = self._detector.errors(matrix)
        self.rows += len(errors)
        self._total += float(errors.sum())
        self._squares += float(np.dot(errors, errors))
        return self

    def merge(self, other: ReconstructionWindow) -> ReconstructionWindow:
        """Add another window of the same detector (another batch, worker or time span)."""
        other.require_detector(self._detector)
        self.rows += other.rows
        self._total += other._total
        self._squares += other._squares
        return self

    def require_detector(self, detector: PcaDetector) -> None:
        """Raise unless this window measures errors with ``detector`` (same fingerprint)."""
        if self._detector.fingerprint != detector.fingerprint:
            raise InvalidInputError(
                f"window belongs to PCA detector {self._detector.fingerprint}, not {detector.fingerprint}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self._detector.fingerprint,
            "rows": self.rows,
            "sum": self._total,
            "sum_squares": self._squares,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], detector: PcaDetector) -> ReconstructionWindow:
        """Restore a window; ``detector`` must be the one it was measured with."""
        try:
            window = cls(
                detector, rows=int(data["rows"]), total=float(data["sum"]), squares=float(data["sum_squares"])
            )
            fingerprint = str(data["detector"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a reconstruction window state: {exc}") from exc
        if fingerprint != detector.fingerprint:
            raise InvalidInputError(
                f"window belongs to PCA detector {fingerprint}, not {detector.fingerprint}"
            )
        return window


def _column_names(columns: Sequence[str]) -> list[str]:
    names = [str(c) for c in columns]
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise InvalidInputError(f"columns must be unique; repeated: {', '.join(duplicates)}")
    return names


def _as_matrix(matrix: np.ndarray, columns: Sequence[str], what: str) -> np.ndarray:
    try:
        x = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be numeric: {exc}") from exc
    if x.ndim != 2:
        raise InvalidInputError(f"{what} must be 2-D (rows x columns), got {x.ndim}-D")
    if x.shape[1] != len(columns):
        shown = ", ".join(columns[:5]) + (", ..." if len(columns) > 5 else "")
        raise InvalidInputError(f"{what} has {x.shape[1]} columns, expected {len(columns)} ({shown})")
    return x


def _column_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column's finite values, and which columns vary."""
    finite = np.isfinite(x)
    counts = finite.sum(axis=0)
    mean = np.where(finite, x, 0.0).sum(axis=0) / np.maximum(counts, 1)
    squares = (np.where(finite, x - mean, 0.0) ** 2).sum(axis=0)
    scale = np.sqrt(squares / np.maximum(counts - 1, 1))
    # a constant column's float mean is off by rounding, leaving a tiny spurious spread
    used = (counts >= 2) & (scale > 1e-9 * np.abs(mean)) & (scale > 0.0)
    return mean, np.where(used, scale, 1.0), used


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standard units of the reference; missing and non-finite values become its mean (0)."""
    z: np.ndarray = np.nan_to_num((x - mean) / scale, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return z


def _principal_axes(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of variance and unit axes (rows), largest variance first."""
    values, vectors = np.linalg.eigh(gram)
    values = np.clip(values[::-1], 0.0, None)
    share: np.ndarray = np.cumsum(values) / max(float(values.sum()), np.finfo(float).tiny)
    return share, vectors[:, ::-1].T


def _errors(z: np.ndarray, components: np.ndarray) -> np.ndarray:
    residual = z - (z @ components.T) @ components
    errors: np.ndarray = np.sqrt(np.einsum("ij,ij->i", residual, residual))
    return errors
