import collections
import json

import numpy as np
import pyarrow as pa
import pytest
from datasketches import kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.errors import InvalidInputError
from mlprod.monitor.sketches import (
    EXACT_VALUES,
    CategoricalSketch,
    CategoryCounter,
    NumericSketch,
    NumericStats,
    kll_items,
    kll_merge,
    sketch_from_dict,
)

EDGES = np.array([-1.0, 0.0, 0.5, 2.0])
floats = st.one_of(st.floats(min_value=-5, max_value=5), st.just(float("nan")))


def reference_bins(values: list[float], edges: np.ndarray) -> tuple[list[int], int, int]:
    """Bin counts by the documented rule, one value at a time: the oracle for the vectorised code."""
    counts = [0] * (len(edges) - 1)
    below = above = 0
    for value in values:
        if np.isnan(value):
            continue
        below += value < edges[0]
        above += value > edges[-1]
        index = max(i for i in range(len(edges) - 1) if edges[i] <= value) if value >= edges[0] else 0
        counts[index] += 1
    return counts, below, above


def test_numeric_stats_match_numpy_over_batches() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(1e6, 3.0, 30_000)  # a large mean: a raw sum of squares would lose the variance
    values[rng.random(values.size) < 0.1] = np.nan
    stats = NumericStats()
    for part in np.array_split(values, 7):
        stats.update(part)
    finite = values[np.isfinite(values)]
    assert (stats.rows, stats.missing, stats.count) == (values.size, values.size - finite.size, finite.size)
    assert (stats.min, stats.max) == (finite.min(), finite.max())
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert stats.std == pytest.approx(finite.std(), rel=1e-9)
    assert stats.kll.n == finite.size


def test_numeric_stats_count_none_and_infinity_as_missing() -> None:
    stats = NumericStats().update(np.array([1.0, None, np.inf, -np.inf, 3.0], dtype=object))
    assert (stats.rows, stats.missing, stats.min, stats.max, stats.mean) == (5, 3, 1.0, 3.0, 2.0)


def test_numeric_stats_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 5000), rng.normal(4, 2, 3000)
    merged = NumericStats().update(a).merge(NumericStats().update(b))
    both = np.concatenate([a, b])
    assert (merged.rows, merged.min, merged.max) == (8000, both.min(), both.max())
    assert merged.mean == pytest.approx(both.mean(), rel=1e-12)
    assert merged.std == pytest.approx(both.std(), rel=1e-12)
    assert merged.kll.n == 8000


def test_numeric_stats_of_nothing_are_empty_not_errors() -> None:
    stats = NumericStats().update(np.array([np.nan, np.nan]))
    assert (stats.rows, stats.missing, stats.count) == (2, 2, 0)
    assert np.isnan(stats.mean) and np.isnan(stats.std)
    assert NumericStats.from_dict(json.loads(json.dumps(stats.to_dict()))).max == -np.inf


def test_numeric_values_must_be_numbers() -> None:
    with pytest.raises(InvalidInputError, match="numeric values expected"):
        NumericStats().update(np.array(["a", "b"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, max_size=60), st.lists(floats, max_size=60))
def test_numeric_sketch_bins_follow_the_rule_and_merge_like_concatenation(
    a: list[float], b: list[float]
) -> None:
    left = NumericSketch(EDGES).update(np.array(a, dtype=np.float64))
    right = NumericSketch(EDGES).update(np.array(b, dtype=np.float64))
    merged = left.merge(right)
    counts, below, above = reference_bins(a + b, EDGES)
    assert (merged.counts.tolist(), merged.below, merged.above) == (counts, below, above)
    assert (merged.rows, merged.missing) == (len(a) + len(b), sum(np.isnan(a + b)))
    assert merged.stats.kll.n == sum(counts)


def test_large_batches_bin_by_the_rule_and_count_nan_and_infinity_as_missing() -> None:
    rng = np.random.default_rng(11)
    values = np.round(rng.normal(0.5, 1.5, 20_000), 1)  # rounded: many values sit exactly on edges
    values[rng.random(values.size) < 0.05] = np.nan
    values[:3] = [np.inf, -np.inf, np.nan]
    sketch = NumericSketch(EDGES)
    given = values.copy()
    for part in np.array_split(values, 3):
        sketch.update(part)
    assert np.array_equal(values, given, equal_nan=True)  # sorted a copy, not the caller's array
    finite = values[np.isfinite(values)]
    index = np.clip(np.searchsorted(EDGES, finite, side="right") - 1, 0, EDGES.size - 2)
    assert sketch.counts.tolist() == np.bincount(index, minlength=EDGES.size - 1).tolist()
    assert (sketch.below, sketch.above) == ((finite < EDGES[0]).sum(), (finite > EDGES[-1]).sum())
    assert (sketch.rows, sketch.missing, sketch.stats.kll.n) == (
        values.size,
        values.size - finite.size,
        finite.size,
    )


@pytest.mark.parametrize("k", [200, 800])
def test_large_batches_keep_quantiles_within_the_kll_error(k: int) -> None:
    rng = np.random.default_rng(12)
    values = rng.lognormal(0, 1, 200_003)  # odd: a level keeps a leftover item
    stats = NumericStats(k=k)
    for part in np.array_split(values, 3):
        stats.update(part)
    ordered = np.sort(values)
    points = ordered[::997]
    exact = np.searchsorted(ordered, points, side="right") / values.size
    estimated = np.asarray(stats.kll.get_cdf(points.tolist()))[:-1]
    assert np.abs(estimated - exact).max() <= stats.kll.normalized_rank_error(False)
    assert (stats.kll.n, stats.kll.get_min_value(), stats.kll.get_max_value()) == (
        values.size,
        ordered[0],
        ordered[-1],
    )
    assert stats.kll.num_retained < 4 * k  # still a sketch, not the data


def test_kll_items_are_the_sketch_points_with_weights_adding_up_to_n() -> None:
    rng = np.random.default_rng(13)
    merged = NumericStats().update(rng.normal(0, 1, 30_000)).merge(NumericStats().update(rng.normal(0, 1, 7)))
    for sketch in (merged.kll, NumericStats().update(np.arange(5.0)).kll, NumericStats().update([2.5]).kll):
        items, weights = kll_items(sketch)
        assert np.all(np.diff(items) >= 0) and weights.sum() == sketch.n
        cdf = np.cumsum(weights)[np.searchsorted(items, items, side="right") - 1] / sketch.n
        assert np.allclose(cdf, np.asarray(sketch.get_cdf(items.tolist(), True))[:-1], rtol=0, atol=1e-12)
    assert kll_items(NumericStats().kll)[0].size == 0


def test_numeric_sketch_puts_edges_in_the_right_bin() -> None:
    sketch = NumericSketch(EDGES).update(EDGES)
    assert sketch.counts.tolist() == [1, 1, 2]  # the last bin is closed on the right
    assert (sketch.below, sketch.above) == (0, 0)


def test_reference_sketch_edges_are_min_quantiles_max() -> None:
    values = np.random.default_rng(3).normal(0, 1, 50_000)
    sketch = NumericSketch.from_stats(NumericStats().update(values), bins=10)
    assert sketch.edges[0] == values.min() and sketch.edges[-1] == values.max()
    assert sketch.counts.size == 10 and sketch.counts.sum() == values.size
    exact = np.histogram(values, bins=sketch.edges)[0]
    error = sketch.stats.kll.normalized_rank_error(False)
    assert np.abs(sketch.counts - exact).max() <= 2 * error * values.size
    assert np.abs(exact / values.size - 0.1).max() <= 2 * error


def test_reference_sketch_collapses_tied_quantiles() -> None:
    values = np.concatenate([np.zeros(8000), np.linspace(1, 2, 2000)])
    sketch = NumericSketch.from_stats(NumericStats().update(values), bins=20)
    assert np.all(np.diff(sketch.edges) > 0) and sketch.edges[0] == 0
    assert sketch.counts.size < 20 and sketch.counts.sum() == 10_000
    exact = np.histogram(values, bins=sketch.edges)[0]
    assert exact[0] >= 8000  # every zero shares the first bin
    assert np.abs(sketch.counts - exact).max() <= 2 * sketch.stats.kll.normalized_rank_error(False) * 10_000


def test_reference_sketch_of_a_constant_or_empty_column() -> None:
    constant = NumericSketch.from_stats(NumericStats().update(np.full(100, 7.0)))
    assert constant.edges.tolist() == [7.0] and constant.counts.tolist() == [100]
    window = constant.empty().update(np.array([7.0, 6.0, 8.0]))
    assert (window.counts.tolist(), window.below, window.above) == ([3], 1, 1)
    empty = NumericSketch.from_stats(NumericStats().update(np.array([np.nan])))
    assert empty.edges.size == 0 and empty.counts.tolist() == [0]
    assert empty.empty().update(np.array([1.0, 2.0])).counts.tolist() == [2]


def test_numeric_sketch_round_trips_through_json() -> None:
    sketch = NumericSketch(EDGES).update(np.random.default_rng(4).normal(0, 1, 5000))
    back = sketch_from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert isinstance(back, NumericSketch)
    assert np.array_equal(back.edges, sketch.edges) and np.array_equal(back.counts, sketch.counts)
    assert (back.below, back.above, back.rows, back.stats.sum, back.stats.m2) == (
        sketch.below,
        sketch.above,
        sketch.rows,
        sketch.stats.sum,
        sketch.stats.m2,
    )
    ranks = [0.01, 0.5, 0.99]
    assert back.stats.kll.get_quantiles(ranks) == sketch.stats.kll.get_quantiles(ranks)


def test_numeric_sketches_with_other_edges_do_not_merge() -> None:
    with pytest.raises(InvalidInputError, match="different bin edges"):
        NumericSketch(EDGES).merge(NumericSketch(EDGES + 1))


@pytest.mark.parametrize("edges", [[1.0, 1.0], [2.0, 1.0], [0.0, np.inf]])
def test_numeric_sketch_edges_must_increase(edges: list[float]) -> None:
    with pytest.raises(InvalidInputError, match="strictly increasing"):
        NumericSketch(np.array(edges))


def test_category_counter_counts_exactly() -> None:
    rng = np.random.default_rng(5)
    values = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), 10_000)
    values[:10] = None
    counter = CategoryCounter()
    for part in np.array_split(values, 3):
        counter.update(pa.array(part))
    expected = collections.Counter(v for v in values if v is not None)
    assert dict(zip(counter.values.to_pylist(), counter.counts.tolist(), strict=True)) == expected
    assert (counter.rows, counter.missing, counter.overflowed) == (10_000, 10, False)


def test_category_counter_keeps_the_most_frequent_past_its_bound() -> None:
    frequent = ["x"] * 50 + ["y"] * 40
    rare = [f"rare{i}" for i in range(30)]
    counter = CategoryCounter(max_known=5).update(np.array(frequent + rare, dtype=object))
    assert counter.overflowed and len(counter.values) == 5
    assert counter.counts.max() == 50
    reference = CategoricalSketch.from_counter(counter, max_categories=2)
    assert reference.vocabulary == ("x", "y") and reference.other == 30 and not reference.tracks_unseen


def test_category_counters_merge() -> None:
    left = CategoryCounter().update(np.array(["a", "b", None], dtype=object))
    right = CategoryCounter().update(np.array(["b", "c"], dtype=object))
    merged = left.merge(right)
    assert sorted(zip(merged.values.to_pylist(), merged.counts.tolist(), strict=True)) == [
        ("a", 1),
        ("b", 2),
        ("c", 1),
    ]
    assert (merged.rows, merged.missing) == (5, 1)


def reference_categories() -> CategoricalSketch:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] + [None] * 2
    return CategoricalSketch.from_counter(
        CategoryCounter().update(np.array(values, dtype=object)), max_categories=2
    )


def test_reference_vocabulary_is_the_most_frequent_with_ties_by_name() -> None:
    sketch = reference_categories()
    assert sketch.vocabulary == ("a", "b") and sketch.known == ("a", "b", "c", "d")
    assert (sketch.counts.tolist(), sketch.other, sketch.unseen, sketch.missing, sketch.rows) == (
        [5, 3],
        4,
        0,
        2,
        14,
    )


def test_categorical_window_counts_other_unseen_and_missing() -> None:
    window = reference_categories().empty()
    window.update(pa.chunked_array([["a", "c", "zz", None], ["b", "zz", "d"]]))
    assert (window.counts.tolist(), window.other, window.unseen, window.missing, window.rows) == (
        [1, 1],
        2,
        2,
        1,
        7,
    )
    assert window.distribution().tolist() == [1, 1, 2, 2]


def test_categorical_values_of_other_types_count_by_their_text() -> None:
    counter = CategoryCounter().update(pa.array([0, 1, 1]))
    sketch = CategoricalSketch.from_counter(counter)
    window = sketch.empty().update(np.array([1.0, 0.0, np.nan, 1.0]))
    window.update(pa.array(["1", "0"]).dictionary_encode())
    assert sketch.vocabulary == ("1", "0")
    assert (window.counts.tolist(), window.missing, window.unseen) == ([3, 2], 1, 0)


def test_dictionary_arrays_count_like_their_strings() -> None:
    rng = np.random.default_rng(14)
    words = np.array(["a", "b", "c", "d", None], dtype=object)
    parts = [rng.choice(words, 1000), rng.choice(words[1:], 500)]
    strings = pa.chunked_array([pa.array(part, pa.string()) for part in parts])
    encoded = pa.chunked_array(
        [
            pa.array(parts[0], pa.string()).dictionary_encode(),
            # another chunk's dictionary: other order, a duplicate entry, an unused one and a null
            pa.DictionaryArray.from_arrays(
                pa.array(rng.integers(0, 4, 500).astype(np.int32), mask=rng.random(500) < 0.1),
                pa.array(["d", "b", "d", None, "zz"]),
            ),
        ]
    )
    expected_strings = pa.chunked_array([strings.chunk(0), encoded.chunk(1).cast(pa.string())])
    by_text = CategoryCounter().update(expected_strings)
    by_code = CategoryCounter().update(encoded)
    assert (by_code.rows, by_code.missing) == (by_text.rows, by_text.missing)
    assert sorted(zip(by_code.values.to_pylist(), by_code.counts.tolist(), strict=True)) == sorted(
        zip(by_text.values.to_pylist(), by_text.counts.tolist(), strict=True)
    )
    window_by_text = reference_categories().empty().update(expected_strings)
    window_by_code = reference_categories().empty().update(encoded)
    assert window_by_code.to_dict() == window_by_text.to_dict()
    nothing = CategoryCounter().update(pa.chunked_array([], pa.dictionary(pa.int32(), pa.string())))
    assert (nothing.rows, nothing.missing, len(nothing.values)) == (0, 0, 0)


def test_categorical_sketch_merges_and_round_trips() -> None:
    reference = reference_categories()
    left = reference.empty().update(np.array(["a", "zz"], dtype=object))
    right = reference.empty().update(np.array(["b", None, "c"], dtype=object))
    merged = left.merge(right)
    assert (merged.counts.tolist(), merged.other, merged.unseen, merged.missing, merged.rows) == (
        [1, 1],
        1,
        1,
        1,
        5,
    )
    back = sketch_from_dict(json.loads(json.dumps(merged.to_dict())))
    assert isinstance(back, CategoricalSketch)
    assert back.to_dict() == merged.to_dict()
    assert back.update(np.array(["zz"], dtype=object)).unseen == 2


def test_categorical_sketches_with_other_vocabularies_do_not_merge() -> None:
    with pytest.raises(InvalidInputError, match="different vocabularies"):
        reference_categories().merge(CategoricalSketch(("a",), known=("a",)))


def test_sketch_kind_must_be_known() -> None:
    with pytest.raises(InvalidInputError, match="'numeric' or 'categorical', got 'histogram'"):
        sketch_from_dict({"kind": "histogram"})


def test_numeric_stats_keep_exact_values_up_to_the_cap_then_sketch() -> None:
    rng = np.random.default_rng(20)
    values = rng.normal(0, 1, EXACT_VALUES + 1)
    stats = NumericStats()
    for part in np.array_split(values[:EXACT_VALUES], 7):
        stats.update(part)
    assert stats.values is not None and np.array_equal(stats.values, np.sort(values[:EXACT_VALUES]))
    assert stats.kll.n == EXACT_VALUES
    merged = stats.merge(NumericStats().update(values[EXACT_VALUES:]))
    assert merged.values is None and merged.kll.n == values.size and merged.kll.is_estimation_mode()
    assert stats.values is not None  # merge made a new summary
    stats.update(values[EXACT_VALUES:])
    assert stats.values is None and stats.kll.n == values.size
    small = NumericStats().update([3.0, 1.0]).merge(NumericStats().update([2.0, np.nan]))
    assert small.values is not None and small.values.tolist() == [1.0, 2.0, 3.0]


def test_exact_values_round_trip_through_json_and_bad_ones_are_refused() -> None:
    stats = NumericStats().update(np.array([2.5, -1.0, 7.0, np.nan]))
    data = json.loads(json.dumps(stats.to_dict()))
    assert "kll" not in data
    back = NumericStats.from_dict(data)
    assert back.values is not None and back.values.tolist() == [-1.0, 2.5, 7.0] and back.k == stats.k
    with pytest.raises(InvalidInputError, match="serialized values must be 3 sorted finite numbers, got 2"):
        NumericStats.from_dict({**data, "values": NumericStats().update([1.0, 2.0]).to_dict()["values"]})
    with pytest.raises(InvalidInputError, match="not serialized numeric values"):
        NumericStats.from_dict({**data, "values": "@@"})


def test_sketches_are_reproducible_batch_for_batch() -> None:
    rng = np.random.default_rng(21)
    values = rng.lognormal(0, 1, 120_000)
    sizes = rng.integers(1, 9000, 40)
    parts = np.split(values, np.cumsum(sizes)[np.cumsum(sizes) < values.size])

    def build() -> bytes:
        stats = NumericStats()
        for part in parts:
            stats.update(part)
        return bytes(stats.kll.serialize())

    first = build()
    assert all(build() == first for _ in range(5))


def test_kll_merge_is_reproducible_and_within_the_rank_error() -> None:
    rng = np.random.default_rng(22)
    values = rng.normal(0, 1, 200_000)
    sketches = []
    for part in np.array_split(values, 50):
        sketch = kll_doubles_sketch(200)
        sketch.update(part)
        sketches.append(sketch)
    merged = sketches[0]
    for sketch in sketches[1:]:
        merged = kll_merge(merged, sketch)
    again = sketches[0]
    for sketch in sketches[1:]:
        again = kll_merge(again, sketch)
    assert merged.serialize() == again.serialize()
    assert merged.n == values.size and (merged.get_min_value(), merged.get_max_value()) == (
        values.min(),
        values.max(),
    )
    _, weights = kll_items(merged)
    assert weights.sum() == values.size and merged.num_retained < 3 * 200
    ordered = np.sort(values)
    points = ordered[::499]
    exact = np.searchsorted(ordered, points, side="right") / values.size
    estimated = np.asarray(merged.get_cdf(points.tolist()))[:-1]
    assert np.abs(estimated - exact).max() <= merged.normalized_rank_error(False)
    with pytest.raises(InvalidInputError, match="cannot merge KLL sketches of different k: 200 and 800"):
        kll_merge(merged, kll_doubles_sketch(800))
