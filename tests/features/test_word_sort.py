"""``sort_words`` gives numpy's sort on both of its paths: the quicksort, and grouping by key code
followed by timsort (taken where the quicksort is slow, as on AMD Zen 4)."""

from __future__ import annotations

import numpy as np
import pytest

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
