"""Mergeable, serializable summaries of one column, with memory that does not grow with rows.

A numeric column is summarised by ``NumericStats`` (rows, missing, min, max, mean, variance and a
KLL quantile sketch) and, once reference bin edges exist, by a ``NumericSketch`` that adds counts
per reference-quantile bin and counts below and above the reference range. A categorical column is
summarised by a ``CategoryCounter`` while the reference is read (exact counts of up to ``max_known``
values) and then by a ``CategoricalSketch``: counts of the reference's top categories, an "other"
bucket for the remaining reference values and an "unseen" bucket for values the reference never had.

Every summary updates with a whole array at once (no Python loop per value), merges with another
summary of the same shape (two windows, two workers) and round-trips through a JSON-safe dict.
A numeric batch is sorted once; its extremes, bin counts and KLL sketch all read the sorted copy.

Results are reproducible: the same batches give the same summary in every run. A numeric column keeps
its sorted values while it has at most ``EXACT_VALUES`` of them (exact statistics, 32 KiB); past
that it is a KLL sketch whose compactions flip a deterministic coin (a hash of the level's position
and the sketch's size) instead of the library's unseeded one, so the same batches merged in the same
order give the same sketch. Its rank error is KLL's: with ``k`` = 800, a rank (a CDF value) is off by
at most 0.35 % with 99 % probability over coin seeds (``kll_doubles_sketch.get_normalized_rank_error``).
"""

from __future__ import annotations

import base64
import copy
import functools
import math
import struct
from dataclasses import dataclass
from typing import Any, Self, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketches import kll_doubles_sketch

from mlprod.errors import InvalidInputError

DEFAULT_K = 800  # KLL accuracy: normalized Wasserstein noise ~0.013 (k=200: ~0.047) at the same speed
DEFAULT_BINS = 20
DEFAULT_MAX_CATEGORIES = 50
DEFAULT_MAX_KNOWN = 10_000
EXACT_VALUES = 4096  # a numeric column keeps its sorted values up to this many (32 KiB), then sketches
_SORTED_BATCH_ABOVE = 4  # batches longer than this many times k are compacted at once on arrival
_POOLED_ITEMS = 8  # batches wait, up to this many times k items, to enter the sketch together

CategoricalValues: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray[Any, Any]


def _sorted_finite(values: Any) -> tuple[np.ndarray[Any, np.dtype[np.float64]], int]:
    """The finite values of an array as a sorted copy, and how many entries were missing.

    Missing means None, NaN or infinite. One sort serves everything: NumPy sorts -inf first and
    +inf then NaN last, so the finite values are a slice; extremes, bin counts and the KLL sketch
    read the sorted values, and the copy is then free to overwrite (see ``NumericStats._add``).
    """
    try:
        ordered = np.sort(np.asarray(values, dtype=np.float64).ravel())
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"numeric values expected, got {np.asarray(values).dtype}: {exc}") from exc
    first, end = int(np.searchsorted(ordered, -np.inf, side="right")), int(np.searchsorted(ordered, np.inf))
    return ordered[first:end], int(ordered.size - (end - first))


# The KLL serialized form (DataSketches' cross-language format): a header of preamble ints, version,
# family, flags, k, m, -, n, min k, levels, -; the start of each level in the item buffer (uint32);
# min and max (float64); then the retained items level by level.
_KLL_HEADER = struct.Struct("<BBBBHBBQHBB")
_KLL_FULL, _KLL_SERIAL_VERSION, _KLL_FAMILY, _KLL_LEVEL_ZERO_SORTED = 5, 1, 15, 2
_KLL_M = 8  # the library's minimum level width
_MASK64 = (1 << 64) - 1


def _coin(*keys: int) -> int:
    """A deterministic fair bit from integers (splitmix64 of their mix): KLL's coin, reproducible."""
    x = 0
    for key in keys:
        x = (x ^ key) * 0x9E3779B97F4A7C15 & _MASK64
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return x >> 63


@functools.lru_cache(maxsize=1024)
def _kll_level_capacity(k: int, depth: int) -> int:
    """Items a KLL level ``depth`` levels below the top holds: about ``k * (2/3) ** depth``, at least m."""
    return max(_KLL_M, int(((2 * k << depth) // 3**depth + 1) >> 1))


def _kll_of_sorted(ordered: np.ndarray[Any, np.dtype[np.float64]], k: int) -> kll_doubles_sketch:
    """A KLL sketch of a sorted batch, built by compacting the whole batch at once.

    ``kll.update`` sorts and compacts small buffers item by item (~50 ns a value, without releasing
    the GIL). Here each level is compacted once, exactly as KLL compacts one: an odd item stays at its
    level, the rest is halved keeping the odd or the even positions by a coin flip, so every level is
    a weight-``2 ** level`` sample and total weight is ``n``. Halving views costs no copies; only the
    sort does work (~10 ns a value). Each halving adds a rank error of at most its weight, so the
    batch's error stays under ``2 / k`` — below the error of ``k``'s own update path.
    The coin is deterministic, so the same batch gives the same sketch.
    """
    if ordered.size <= 1:  # the library's short forms for 0 and 1 item
        sketch = kll_doubles_sketch(k)
        sketch.update(ordered)
        return sketch
    return _kll_of_levels(_kll_parts(ordered, k), k=k, n=ordered.size, low=ordered[0], high=ordered[-1])


def _kll_parts(ordered: np.ndarray[Any, np.dtype[np.float64]], k: int) -> list[np.ndarray[Any, Any]]:
    """The levels of a sorted batch compacted at once (see ``_kll_of_sorted``), lowest first."""
    parts = []
    rest = ordered
    while rest.size > k:
        odd = rest.size % 2
        parts.append(rest[:odd])
        rest = rest[odd + _coin(ordered.size, len(parts), rest.size) :: 2]
    parts.append(rest)
    return parts


def kll_items(sketch: kll_doubles_sketch) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The items a KLL sketch retains, sorted, and the weight of each (weights add up to ``n``).

    Read from the sketch's serialized form (a fixed, cross-language format) in a few array
    operations, where iterating the sketch in Python costs a microsecond an item.

    Examples:
        >>> sketch = kll_doubles_sketch(200)
        >>> sketch.update(np.array([3.0, 1.0, 2.0]))
        >>> [array.tolist() for array in kll_items(sketch)]
        [[1.0, 2.0, 3.0], [1, 1, 1]]
    """
    if sketch.n <= 1:  # the serialized form of 0 or 1 item is a short one
        only = np.array([] if sketch.is_empty() else [sketch.get_min_value()], dtype=np.float64)
        return only, np.ones(only.size, dtype=np.int64)
    data = sketch.serialize()
    fields = _KLL_HEADER.unpack_from(data)
    k, levels = fields[4], fields[9]
    offsets = np.frombuffer(data, "<u4", levels, _KLL_HEADER.size).astype(np.int64)
    capacity = sum(_kll_level_capacity(k, depth) for depth in range(levels))
    items = np.frombuffer(data, "<f8", offset=_KLL_HEADER.size + 4 * levels + 16)
    weights = np.repeat(1 << np.arange(levels, dtype=np.int64), np.diff(offsets, append=capacity))
    order = np.argsort(items, kind="stable")
    return items[order], weights[order]


def _kll_levels(sketch: kll_doubles_sketch) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
    """A KLL sketch's levels, lowest (weight 1) first, each sorted."""
    if sketch.n <= 1:
        return [np.array([] if sketch.is_empty() else [sketch.get_min_value()], dtype=np.float64)]
    data = sketch.serialize()
    fields = _KLL_HEADER.unpack_from(data)
    k, levels = fields[4], fields[9]
    offsets = np.frombuffer(data, "<u4", levels, _KLL_HEADER.size).astype(np.int64)
    capacity = sum(_kll_level_capacity(k, depth) for depth in range(levels))
    items = np.frombuffer(data, "<f8", offset=_KLL_HEADER.size + 4 * levels + 16)
    bounds = (np.append(offsets, capacity) - offsets[0]).tolist()
    found = [items[bounds[h] : bounds[h + 1]] for h in range(levels)]
    if not fields[3] & _KLL_LEVEL_ZERO_SORTED:  # the levels above are always sorted
        found[0] = np.sort(found[0])
    return found


def _kll_of_levels(
    levels: list[np.ndarray[Any, np.dtype[np.float64]]], *, k: int, n: int, low: float, high: float
) -> kll_doubles_sketch:
    """The KLL sketch with these sorted levels (they must fit its capacity), ``n`` items, extremes."""
    if n <= 1:
        sketch = kll_doubles_sketch(k)
        sketch.update(np.array([low] if n else [], dtype=np.float64))
        return sketch
    sizes = [level.size for level in levels]
    capacity = sum(_kll_level_capacity(k, depth) for depth in range(len(levels)))
    offsets = np.cumsum([capacity - sum(sizes), *sizes[:-1]]).astype("<u4")
    header = _KLL_HEADER.pack(
        _KLL_FULL, _KLL_SERIAL_VERSION, _KLL_FAMILY, _KLL_LEVEL_ZERO_SORTED, k, _KLL_M, 0, n, k,
        len(levels), 0,
    )  # fmt: skip
    items = np.concatenate(levels).astype("<f8")
    return kll_doubles_sketch.deserialize(
        header + offsets.tobytes() + struct.pack("<dd", low, high) + items.tobytes()
    )


def kll_merge(a: kll_doubles_sketch, b: kll_doubles_sketch) -> kll_doubles_sketch:
    """A new KLL sketch of both inputs (same ``k``), reproducible: the library's merge flips an
    unseeded coin, this one a deterministic one, with the library's compaction rule otherwise.

    Levels of equal weight are pooled; then, lowest first, a level holding its capacity or more is
    compacted while the sketch holds more than its total capacity: an odd item stays, the rest is
    halved (odd or even positions, by the coin) into the level above.

    Examples:
        >>> a, b = kll_doubles_sketch(200), kll_doubles_sketch(200)
        >>> a.update(np.arange(1000.0)); b.update(np.arange(1000.0, 3000.0))
        >>> merged = kll_merge(a, b)
        >>> merged.n, merged.get_min_value(), merged.get_max_value(), merged.num_retained < 3000
        (3000, 0.0, 2999.0, True)
        >>> kll_merge(a, b).serialize() == merged.serialize()
        True
    """
    if a.k != b.k:
        raise InvalidInputError(f"cannot merge KLL sketches of different k: {a.k} and {b.k}")
    if b.is_empty() or a.is_empty():
        return copy.copy(a if b.is_empty() else b)
    low = min(a.get_min_value(), b.get_min_value())
    high = max(a.get_max_value(), b.get_max_value())
    return _kll_pool([_kll_levels(a), _kll_levels(b)], k=a.k, n=a.n + b.n, low=low, high=high)


def _kll_pool(
    level_sets: list[list[np.ndarray[Any, Any]]], *, k: int, n: int, low: float, high: float
) -> kll_doubles_sketch:
    """One KLL sketch of several sets of sorted levels: levels of equal weight pooled, then compacted."""
    height = max(len(levels) for levels in level_sets)
    pooled = []
    for h in range(height):
        parts = [levels[h] for levels in level_sets if h < len(levels) and levels[h].size]
        pooled.append(
            np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0] if parts else np.empty(0)
        )
    _kll_compress(pooled, k, n)
    return _kll_of_levels(pooled, k=k, n=n, low=low, high=high)


def _kll_compress(levels: list[np.ndarray[Any, np.dtype[np.float64]]], k: int, n: int) -> None:
    """Compact ``levels`` in place until they fit KLL's capacity (the library's general compress)."""
    count = len(levels)
    total = sum(level.size for level in levels)
    target = sum(_kll_level_capacity(k, depth) for depth in range(count))
    while total > target:  # one pass suffices for two sketches; pooled batches may need more
        height = 0
        while height < count:
            level = levels[height]
            if total >= target and level.size >= _kll_level_capacity(k, count - height - 1):
                if height == count - 1:
                    levels.append(np.empty(0, dtype=np.float64))
                odd = level.size % 2
                half = level[odd + _coin(n, height, level.size) :: 2]
                levels[height] = level[:odd]
                levels[height + 1] = _merge_sorted(levels[height + 1], half)
                total -= half.size
                if height == count - 1:
                    count += 1
                    target += _kll_level_capacity(k, count - 1)
            height += 1


def _kll_to_text(sketch: kll_doubles_sketch) -> str:
    return base64.b64encode(sketch.serialize()).decode("ascii")


def _kll_from_text(text: str) -> kll_doubles_sketch:
    try:
        return kll_doubles_sketch.deserialize(base64.b64decode(text, validate=True))
    except (ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"not a serialized KLL sketch: {exc}") from exc


class NumericStats:
    """Rows, missing values, min, max, mean, variance and the distribution of a numeric column.

    Missing means None, NaN or infinite. The variance is kept as the sum of squared deviations
    (``m2``) and merged with Chan's formula, which stays accurate when the mean is large against
    the spread (timestamps, prices in cents) where a raw sum of squares would cancel.

    The distribution is exact while the column has at most ``EXACT_VALUES`` finite values
    (``values`` holds them, sorted); past that it is a KLL sketch of ``k`` (``values`` is None).
    ``kll`` reads either as a KLL sketch; both are reproducible (see the module docstring).

    Examples:
        >>> stats = NumericStats().update(np.array([1.0, 2.0, np.nan, 3.0]))
        >>> stats.rows, stats.missing, stats.mean, stats.kll.get_quantile(0.5), stats.values.tolist()
        (4, 1, 2.0, 2.0, [1.0, 2.0, 3.0])
    """

    def __init__(self, *, k: int = DEFAULT_K) -> None:
        self.rows = 0
        self.missing = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum = 0.0
        self.m2 = 0.0
        self.k = k
        self._values: np.ndarray[Any, np.dtype[np.float64]] | None = np.empty(0, dtype=np.float64)
        self._kll: kll_doubles_sketch | None = None  # of the values, built when read, while exact
        self._pending: list[list[np.ndarray[Any, Any]]] = []  # batches' KLL levels not yet in _kll
        self._pending_size = 0  # items they hold

    @property
    def count(self) -> int:
        """Rows with a finite value."""
        return self.rows - self.missing

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (``ddof=0``, as ``np.std``)."""
        return math.sqrt(self.m2 / self.count) if self.count else math.nan

    @property
    def values(self) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        """The finite values, sorted, while there are at most ``EXACT_VALUES``; otherwise None."""
        return self._values

    @property
    def kll(self) -> kll_doubles_sketch:
        """The column's KLL sketch (of ``k``); while exact, built from the values (exact up to ``k``)."""
        if self._kll is None:
            assert self._values is not None
            self._kll = _kll_of_sorted(self._values, self.k)
        if self._pending:  # batches pooled: one compaction for several, not one each
            sets = [_kll_levels(self._kll), *self._pending]
            self._pending, self._pending_size = [], 0
            self._kll = _kll_pool(sets, k=self.k, n=self.count, low=self.min, high=self.max)
        return self._kll

    def points(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The distribution as sorted points with integer weights adding up to ``count``."""
        if self._values is not None:
            return self._values, np.ones(self._values.size, dtype=np.int64)
        return kll_items(self.kll)

    def update(self, values: Any) -> Self:
        self._add(*_sorted_finite(values))
        return self

    def _add(self, ordered: np.ndarray[Any, np.dtype[np.float64]], missing: int) -> None:
        """Add sorted finite values, which this overwrites (with squared deviations)."""
        self.rows += ordered.size + missing
        self.missing += missing
        if not ordered.size:
            return
        self.min = min(self.min, float(ordered[0]))
        self.max = max(self.max, float(ordered[-1]))
        self._add_distribution(ordered)
        batch_sum = float(np.add.reduce(ordered))
        ordered -= batch_sum / ordered.size
        ordered *= ordered  # not np.dot: BLAS threads crawl on a busy machine
        self._combine_moments(ordered.size, batch_sum, float(np.add.reduce(ordered)))

    def _add_distribution(self, ordered: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        """Keep sorted values while they fit ``EXACT_VALUES``, else merge a KLL sketch of the batch."""
        if self._values is not None and self._values.size + ordered.size <= EXACT_VALUES:
            self._values = _merge_sorted(self._values, ordered)
            self._kll = None
            return
        if self._values is not None:  # past EXACT_VALUES: sketch from now on
            self._kll = _kll_of_sorted(self._values, self.k)
            self._values = None
        if ordered.size < _SORTED_BATCH_ABOVE * self.k:
            levels = [ordered.copy()]
        else:  # copies: the caller overwrites ``ordered``
            levels = [part.copy() for part in _kll_parts(ordered, self.k)]
        self._pending.append(levels)
        self._pending_size += sum(level.size for level in levels)
        if self._pending_size >= _POOLED_ITEMS * self.k:
            self._kll = self.kll  # pools the pending batches into the sketch

    def _combine_moments(self, n: int, total: float, m2: float) -> None:
        """Chan's parallel update of (sum, m2) with ``n`` more values, already included in ``count``."""
        before = self.count - n
        if before:
            delta = total / n - self.sum / before
            self.m2 += m2 + delta * delta * before * n / (before + n)
        else:
            self.m2 = m2
        self.sum += total

    def copy(self) -> NumericStats:
        """An independent copy (the KLL sketch too)."""
        duplicate = copy.copy(self)
        if self._values is None:
            duplicate._kll = copy.copy(self.kll)
        duplicate._pending = []
        return duplicate

    def merge(self, other: NumericStats) -> NumericStats:
        """A new summary of both inputs: exact while both are and their values fit ``EXACT_VALUES``."""
        merged = self.copy()
        merged.rows += other.rows
        merged.missing += other.missing
        if other.count:
            merged._combine_moments(other.count, other.sum, other.m2)
            merged.min = min(merged.min, other.min)
            merged.max = max(merged.max, other.max)
        mine, theirs = merged._values, other._values
        if mine is not None and theirs is not None and mine.size + theirs.size <= EXACT_VALUES:
            merged._values = _merge_sorted(mine, theirs)
            merged._kll = None
            return merged
        merged._kll = kll_merge(self.kll, other.kll)
        merged._values = None
        return merged

    def empty(self) -> NumericStats:
        """A fresh summary with the same KLL ``k``."""
        return NumericStats(k=self.k)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rows": self.rows,
            "missing": self.missing,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "sum": self.sum,
            "m2": self.m2,
            "k": self.k,
        }
        if self._values is not None:
            data["values"] = base64.b64encode(self._values.astype("<f8").tobytes()).decode("ascii")
        else:
            data["kll"] = _kll_to_text(self.kll)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericStats:
        stats = cls()
        stats.rows = int(data["rows"])
        stats.missing = int(data["missing"])
        stats.min = math.inf if data["min"] is None else float(data["min"])
        stats.max = -math.inf if data["max"] is None else float(data["max"])
        stats.sum = float(data["sum"])
        stats.m2 = float(data["m2"])
        if "values" in data:
            stats.k = int(data.get("k", DEFAULT_K))
            stats._values = _values_from_text(data["values"], stats.count)
        else:
            stats._kll = _kll_from_text(data["kll"])
            stats.k = stats._kll.k
            stats._values = None
        return stats


def _merge_sorted(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Two sorted arrays as one sorted array."""
    if not a.size or not b.size:
        return (b if not a.size else a).copy()
    return np.sort(np.concatenate([a, b]), kind="mergesort")


def _values_from_text(text: str, count: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        values = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)
    except ValueError as exc:
        raise InvalidInputError(f"not serialized numeric values: {exc}") from exc
    if values.size != count or not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
        raise InvalidInputError(f"serialized values must be {count} sorted finite numbers, got {values.size}")
    return values


def _largest_remainder(shares: np.ndarray[Any, np.dtype[np.float64]], total: int) -> np.ndarray[Any, Any]:
    """Integer counts proportional to ``shares`` that add up to exactly ``total``."""
    exact = np.clip(shares, 0.0, None) * total
    counts: np.ndarray[Any, Any] = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(counts - exact, kind="stable")[:short]] += 1
    return counts


class NumericSketch:
    """Counts per fixed reference-quantile bin, out-of-range counts and ``NumericStats`` of a column.

    Bin ``i`` holds values in ``[edges[i], edges[i + 1])``, the last bin also its right edge; values
    below the first edge count in bin 0 and above the last edge in the last bin, and additionally in
    ``below`` / ``above`` (the edges are the reference minimum and maximum). With a single edge (a
    constant reference) there is one bin; with none (an empty reference) there is one bin and no range.

    Examples:
        >>> sketch = NumericSketch(np.array([0.0, 1.0, 2.0])).update(np.array([-1.0, 0.5, 1.5, 2.0, 9.0]))
        >>> sketch.counts.tolist(), sketch.below, sketch.above
        ([2, 3], 1, 1)
    """

    def __init__(self, edges: np.ndarray[Any, Any], *, k: int = DEFAULT_K) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or not np.isfinite(edges).all() or np.any(np.diff(edges) <= 0):
            raise InvalidInputError(f"bin edges must be finite and strictly increasing, got {edges.tolist()}")
        self.edges = edges
        self.counts = np.zeros(max(edges.size - 1, 1), dtype=np.int64)
        self.below = 0
        self.above = 0
        self.stats = NumericStats(k=k)

    @classmethod
    def from_stats(cls, stats: NumericStats, *, bins: int = DEFAULT_BINS) -> NumericSketch:
        """The reference sketch: edges at min, max and KLL quantiles, counts from its CDF (no second pass).

        Tied quantiles (a value holding a large share of rows) collapse into one edge, so a column
        can end with fewer than ``bins`` bins; when the maximum is such a value it gets a bin of its
        own (bins are closed on the left), so a 0/1 flag has the bins {0} and {1}. Counts are the
        CDF's shares rounded to add up to the column's finite values exactly.
        """
        if bins < 1:
            raise InvalidInputError(f"bins must be at least 1, got {bins}")
        if stats.count:
            inner = stats.kll.get_quantiles(np.linspace(0.0, 1.0, bins + 1)[1:-1].tolist())
            edges = np.unique(np.asarray([stats.min, *inner, stats.max]))
            if len(inner) and inner[-1] >= stats.max > stats.min:  # the maximum holds a bin's share or more:
                edges = np.append(edges, np.nextafter(stats.max, np.inf))  # give it a bin of its own
        else:
            edges = np.empty(0)
        sketch = cls(edges, k=stats.k)
        sketch.stats = stats.copy()
        if stats.count:
            cdf = np.asarray(stats.kll.get_cdf(edges[1:-1].tolist()))
            sketch.counts = _largest_remainder(np.diff(cdf, prepend=0.0), stats.count)
        return sketch

    @property
    def rows(self) -> int:
        return self.stats.rows

    @property
    def missing(self) -> int:
        return self.stats.missing

    def update(self, values: Any) -> Self:
        ordered, missing = _sorted_finite(values)
        if ordered.size:
            self._count_bins(ordered)
        self.stats._add(ordered, missing)
        return self

    def _count_bins(self, ordered: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        """Bin counts of sorted values: where each edge falls, not where each value does."""
        if not self.edges.size:
            self.counts[0] += ordered.size
            return
        ends = np.searchsorted(ordered, self.edges[1:-1], side="left")
        self.counts += np.diff(ends, prepend=0, append=ordered.size)
        self.below += int(np.searchsorted(ordered, self.edges[0], side="left"))
        self.above += ordered.size - int(np.searchsorted(ordered, self.edges[-1], side="right"))

    def compatible(self, other: ColumnSketch) -> bool:
        """Whether ``other`` counts the same bins, so the two can merge or be compared."""
        return isinstance(other, NumericSketch) and np.array_equal(self.edges, other.edges)

    def merge(self, other: NumericSketch) -> NumericSketch:
        """A new sketch of both inputs; they must share bin edges."""
        if not self.compatible(other):
            raise InvalidInputError(
                f"cannot merge numeric sketches with different bin edges: "
                f"{self.edges.tolist()} and {getattr(other, 'edges', np.empty(0)).tolist()}"
            )
        merged = self.empty()
        merged.counts = self.counts + other.counts
        merged.below = self.below + other.below
        merged.above = self.above + other.above
        merged.stats = self.stats.merge(other.stats)
        return merged

    def empty(self) -> NumericSketch:
        """A sketch with the same bin edges and nothing counted, to accumulate a window."""
        return NumericSketch(self.edges, k=self.stats.k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "numeric",
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "below": self.below,
            "above": self.above,
            "stats": self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        sketch = cls(np.asarray(data["edges"], dtype=np.float64))
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != sketch.counts.shape:
            raise InvalidInputError(f"{counts.size} bin counts do not fit {sketch.edges.size} bin edges")
        sketch.counts = counts
        sketch.below = int(data["below"])
        sketch.above = int(data["above"])
        sketch.stats = NumericStats.from_dict(data["stats"])
        return sketch


def as_strings(values: CategoricalValues) -> pa.Array | pa.ChunkedArray:
    """Categorical values as Arrow strings; None and float NaN become null, numbers their decimal text."""
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, from_pandas=True)
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    try:
        return pc.cast(array, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"categorical values must convert to text, got {array.type}: {exc}") from exc


@dataclass(frozen=True)
class _Tally:
    """A batch of categorical values counted: its rows, missing values, and each value's count.

    A value can appear more than once in ``values`` (each chunk of a dictionary array has its own
    dictionary); its counts then add up.
    """

    rows: int
    missing: int
    values: pa.Array
    counts: np.ndarray[Any, Any]


def _tally(values: CategoricalValues) -> _Tally:
    """Count a batch; dictionary arrays (Parquet's categorical columns) count their codes, not strings."""
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, from_pandas=True)
    if not pa.types.is_dictionary(array.type):
        strings = as_strings(array)
        counted = pc.value_counts(strings.drop_null())
        counts = counted.field("counts").to_numpy().astype(np.int64)
        return _Tally(len(strings), strings.null_count, counted.field("values"), counts)
    missing, names, tallies = 0, [pa.array([], pa.string())], [np.zeros(0, dtype=np.int64)]
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        dictionary = as_strings(chunk.dictionary)
        codes = chunk.indices.drop_null().to_numpy()
        counts = np.bincount(codes, minlength=len(dictionary)).astype(np.int64)
        present = dictionary.is_valid().to_numpy(zero_copy_only=False)
        missing += chunk.null_count + int(counts[~present].sum())
        kept = present & (counts > 0)
        names.append(dictionary.filter(pa.array(kept)))
        tallies.append(counts[kept])
    return _Tally(len(array), missing, pa.concat_arrays(names), np.concatenate(tallies))


def _ranked(values: pa.Array, counts: np.ndarray[Any, Any]) -> tuple[list[str], np.ndarray[Any, Any]]:
    """Values and counts by decreasing count, ties by value, so the order is deterministic."""
    names = values.to_pylist()
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))
    return [names[i] for i in order], counts[order]


class CategoryCounter:
    """Exact counts of up to ``max_known`` distinct categories: the reference pass of a categorical column.

    Past ``max_known`` distinct values only the most frequent are kept (``overflowed`` turns true),
    so top categories stay right for heavy hitters while memory stays bounded.

    Examples:
        >>> counter = CategoryCounter().update(np.array(["a", "b", None, "a"], dtype=object))
        >>> counter.rows, counter.missing, sorted(zip(counter.values.to_pylist(), counter.counts.tolist()))
        (4, 1, [('a', 2), ('b', 1)])
    """

    def __init__(self, *, max_known: int = DEFAULT_MAX_KNOWN) -> None:
        if max_known < 1:
            raise InvalidInputError(f"max_known must be at least 1, got {max_known}")
        self.max_known = max_known
        self.rows = 0
        self.missing = 0
        self.overflowed = False
        self.values: pa.Array = pa.array([], pa.string())
        self.counts: np.ndarray[Any, Any] = np.zeros(0, dtype=np.int64)

    def update(self, values: CategoricalValues) -> Self:
        tally = _tally(values)
        self.rows += tally.rows
        self.missing += tally.missing
        self._absorb(tally.values, tally.counts, overflowed=False)
        return self

    def _absorb(self, values: pa.Array, counts: np.ndarray[Any, Any], *, overflowed: bool) -> None:
        # each distinct value once (first seen first) and its counts added up; not Table.group_by: loading
        # its Acero engine cost 0.1-0.3 CPU s in each fresh process (measured end to end at 1M rows)
        encoded = pc.dictionary_encode(pa.concat_arrays([self.values, values]))
        totals = np.zeros(len(encoded.dictionary), dtype=np.int64)
        np.add.at(totals, encoded.indices.to_numpy(), np.concatenate([self.counts, counts]))
        self.values, self.counts = encoded.dictionary, totals
        self.overflowed = self.overflowed or overflowed
        if len(self.values) > self.max_known:
            names, ranked = _ranked(self.values, self.counts)
            self.values = pa.array(names[: self.max_known], pa.string())
            self.counts = ranked[: self.max_known]
            self.overflowed = True

    def merge(self, other: CategoryCounter) -> CategoryCounter:
        """A new counter of both inputs (bounded by the larger ``max_known``)."""
        merged = CategoryCounter(max_known=max(self.max_known, other.max_known))
        merged.rows = self.rows + other.rows
        merged.missing = self.missing + other.missing
        merged._absorb(self.values, self.counts, overflowed=self.overflowed)
        merged._absorb(other.values, other.counts, overflowed=other.overflowed)
        return merged


class CategoricalSketch:
    """Counts of a categorical column against a reference vocabulary.

    ``vocabulary`` holds the reference's top categories; a value the reference had outside them
    counts in ``other``, a value the reference never had in ``unseen`` (only when ``known``, the
    reference's distinct values, is complete — ``tracks_unseen``; otherwise in ``other``).

    Examples:
        >>> sketch = CategoricalSketch(("a", "b"), known=("a", "b", "c"))
        >>> _ = sketch.update(np.array(["a", "c", "z", None, "a"], dtype=object))
        >>> sketch.counts.tolist(), sketch.other, sketch.unseen, sketch.missing
        ([2, 0], 1, 1, 1)
    """

    def __init__(
        self, vocabulary: tuple[str, ...], *, known: tuple[str, ...], tracks_unseen: bool = True
    ) -> None:
        if len(set(vocabulary)) != len(vocabulary) or not set(vocabulary) <= set(known):
            raise InvalidInputError("a categorical vocabulary must be distinct values, all of them known")
        self.vocabulary = tuple(vocabulary)
        self.known = tuple(sorted(set(known)))
        self.tracks_unseen = tracks_unseen
        self.counts = np.zeros(len(vocabulary), dtype=np.int64)
        self.other = 0
        self.unseen = 0
        self.missing = 0
        self.rows = 0
        self._vocabulary_array = pa.array(self.vocabulary, pa.string())
        self._known_array = pa.array(self.known, pa.string())

    @classmethod
    def from_counter(
        cls, counter: CategoryCounter, *, max_categories: int = DEFAULT_MAX_CATEGORIES
    ) -> CategoricalSketch:
        """The reference sketch: the ``max_categories`` most frequent values, the rest in ``other``."""
        if max_categories < 1:
            raise InvalidInputError(f"max_categories must be at least 1, got {max_categories}")
        names, counts = _ranked(counter.values, counter.counts)
        sketch = cls(tuple(names[:max_categories]), known=tuple(names), tracks_unseen=not counter.overflowed)
        sketch.counts = counts[:max_categories].copy()
        sketch.other = counter.rows - counter.missing - int(sketch.counts.sum())
        sketch.missing = counter.missing
        sketch.rows = counter.rows
        return sketch

    @property
    def count(self) -> int:
        """Rows with a value."""
        return self.rows - self.missing

    def distribution(self) -> np.ndarray[Any, Any]:
        """Counts per vocabulary category, then other, then unseen."""
        return np.concatenate([self.counts, [self.other, self.unseen]])

    def update(self, values: CategoricalValues) -> Self:
        tally = _tally(values)
        self.rows += tally.rows
        self.missing += tally.missing
        counts = tally.counts
        index = pc.index_in(tally.values, value_set=self._vocabulary_array).fill_null(-1).to_numpy()
        in_vocabulary = index >= 0
        np.add.at(self.counts, index[in_vocabulary], counts[in_vocabulary])
        rest = ~in_vocabulary
        if self.tracks_unseen:
            known = pc.is_in(tally.values, value_set=self._known_array).to_numpy(zero_copy_only=False)
            self.other += int(counts[rest & known].sum())
            self.unseen += int(counts[rest & ~known].sum())
        else:
            self.other += int(counts[rest].sum())
        return self

    def compatible(self, other: ColumnSketch) -> bool:
        """Whether ``other`` counts the same categories, so the two can merge or be compared."""
        return isinstance(other, CategoricalSketch) and (self.vocabulary, self.known, self.tracks_unseen) == (
            other.vocabulary,
            other.known,
            other.tracks_unseen,
        )

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        """A new sketch of both inputs; they must share vocabulary and known values."""
        if not self.compatible(other):
            raise InvalidInputError(
                f"cannot merge categorical sketches with different vocabularies: "
                f"{list(self.vocabulary)[:5]}… and {list(getattr(other, 'vocabulary', ()))[:5]}…"
            )
        merged = self.empty()
        merged.counts = self.counts + other.counts
        merged.other = self.other + other.other
        merged.unseen = self.unseen + other.unseen
        merged.missing = self.missing + other.missing
        merged.rows = self.rows + other.rows
        return merged

    def empty(self) -> CategoricalSketch:
        """A sketch with the same vocabulary and nothing counted, to accumulate a window."""
        return CategoricalSketch(self.vocabulary, known=self.known, tracks_unseen=self.tracks_unseen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "vocabulary": list(self.vocabulary),
            "known": list(self.known),
            "tracks_unseen": self.tracks_unseen,
            "counts": self.counts.tolist(),
            "other": self.other,
            "unseen": self.unseen,
            "missing": self.missing,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoricalSketch:
        sketch = cls(
            tuple(data["vocabulary"]), known=tuple(data["known"]), tracks_unseen=bool(data["tracks_unseen"])
        )
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != sketch.counts.shape:
            raise InvalidInputError(
                f"{counts.size} category counts do not fit {len(sketch.vocabulary)} categories"
            )
        sketch.counts = counts
        sketch.other = int(data["other"])
        sketch.unseen = int(data["unseen"])
        sketch.missing = int(data["missing"])
        sketch.rows = int(data["rows"])
        return sketch


ColumnSketch = NumericSketch | CategoricalSketch


def sketch_from_dict(data: dict[str, Any]) -> ColumnSketch:
    """Rebuild a column sketch from ``to_dict`` output, whichever kind it is."""
    kind = data.get("kind")
    if kind == "numeric":
        return NumericSketch.from_dict(data)
    if kind == "categorical":
        return CategoricalSketch.from_dict(data)
    raise InvalidInputError(f"column sketch kind must be 'numeric' or 'categorical', got {kind!r}")
