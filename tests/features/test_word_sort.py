"""``sort_words`` gives numpy's sort on both of its paths: the quicksort, and grouping by key code
followed by timsort (taken where the quicksort is slow, as on AMD Zen 4)."""

from __future__ import annotations

import numpy as np
import pytest

import mlprod.features.in_memory_join as in_memory_join
import mlprod.features.word_sort as word_sort
from mlprod.features.word_sort import sort_words


@pytest.fixture(params=[False, True], ids=["quicksort", "grouped"])
def slow_quicksort(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    slow: bool = request.param
    monkeypatch.setattr(word_sort, "_quicksort_is_slow", lambda: slow)
    return slow


def words_of(codes: np.ndarray, times: np.ndarray, code_bits: int) -> np.ndarray:
    """(code, time, row) packed as the search packs them: the row number makes each word distinct."""
    row_bits, time_bits = 20, 64 - 20 - code_bits
    words = codes.astype(np.uint64) << np.uint64(time_bits + row_bits)
    words |= times.astype(np.uint64) << np.uint64(row_bits)
    words |= np.arange(len(codes), dtype=np.uint64)
    return words


@pytest.mark.parametrize(
    ("rows", "codes", "arrival"),
    [
        (0, 1, "random"),
        (1, 1, "random"),
        (5000, 1, "random"),  # one code: timsort on its own
        (5000, 3, "time order"),
        (20000, 5000, "random"),
        (20000, 5000, "time order"),
        (20000, 5000, "nearly time order"),  # event times a little out of order, as rows land
        (20000, 20000, "reversed"),
    ],
)
def test_words_come_out_as_numpy_sorts_them(
    slow_quicksort: bool, rows: int, codes: int, arrival: str
) -> None:
    rng = np.random.default_rng(rows + codes)
    code = rng.integers(0, codes, rows)
    time = rng.integers(0, 1 << 20, rows)
    if arrival == "time order":
        time.sort()
    elif arrival == "nearly time order":
        time = np.sort(time) + rng.integers(0, 600, rows)
    elif arrival == "reversed":
        code, time = np.sort(code)[::-1].copy(), np.sort(time)[::-1].copy()
    words = words_of(code, time, code_bits=max(codes - 1, 1).bit_length())
    expected = np.sort(words)
    assert np.array_equal(sort_words(words.copy(), code, codes), expected)


def test_the_quicksort_probe_runs_once() -> None:
    word_sort._quicksort_is_slow.cache_clear()
    first = word_sort._quicksort_is_slow()
    assert word_sort._quicksort_is_slow() is first
    assert word_sort._quicksort_is_slow.cache_info().misses == 1


def test_many_short_runs_are_grouped_where_the_quicksort_is_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grouped path is the one taken for a block of many keys (so the tests above test it)."""
    calls: list[int] = []
    group = word_sort._grouping()
    assert group is not None
    monkeypatch.setattr(word_sort, "_quicksort_is_slow", lambda: True)
    monkeypatch.setattr(
        word_sort, "_grouping", lambda: lambda codes, count: (calls.append(count), group(codes, count))[1]
    )
    code = np.random.default_rng(1).integers(0, 5000, 20000)
    words = words_of(code, np.zeros(20000, dtype=np.int64), code_bits=13)
    assert np.array_equal(sort_words(words.copy(), code, 5000), np.sort(words))
    assert calls == [5000]
    sort_words(words.copy(), np.zeros(20000, dtype=np.int64), 1)  # one long run: the quicksort
    assert calls == [5000]


@pytest.mark.parametrize(
    ("codes", "code_count"),
    [([2, 0, 1, 0], 2), ([10**9, 0, 1, 0], 2), ([-5, 0, 1, 0], 2), ([0, 1, 2, 3], 1 << 40)],
    ids=["past the count", "far past it", "negative", "sparse"],
)
def test_codes_outside_their_range_or_sparse_take_the_quicksort(
    monkeypatch: pytest.MonkeyPatch, codes: list[int], code_count: int
) -> None:
    monkeypatch.setattr(word_sort, "_quicksort_is_slow", lambda: True)
    words = np.array([40, 10, 30, 20], dtype=np.uint64)
    assert sort_words(words.copy(), np.array(codes), code_count).tolist() == [10, 20, 30, 40]


@pytest.mark.parametrize(
    "values",
    [[], [7], [3, 3, 1, 3, 0], list(range(1000, 0, -1)), [2**62 - 1, 0, 2**61], [2**63 - 1, 5, 5]],
    ids=["empty", "one", "duplicates", "descending", "near 2^62", "past the word"],
)
def test_the_chosen_rows_argsort_is_numpys(slow_quicksort: bool, values: list[int]) -> None:
    array = np.array(values, dtype=np.int64)
    order = in_memory_join._argsort(array)
    assert np.array_equal(array[order], np.sort(array))
    assert np.array_equal(order, np.argsort(array, kind="stable"))  # ties in index order
