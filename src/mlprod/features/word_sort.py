"""Sorting packed 64-bit words whose top bits are a key code, fast on every x86 CPU we know of.

numpy's quicksort of 64-bit integers runs x86-simd-sort's AVX-512 code wherever the CPU has AVX-512.
On AMD Zen 4 that code is slow: its partition step stores through ``vpcompressq`` with a memory
operand, which Zen 4 runs in microcode, and a million words take about 50 ns each, several times its
AVX2 code (numpy/x86-simd-sort#6). numpy picks the code once, at import, for the whole process.

Where the quicksort is slow, words with many codes are first grouped by code with a counting sort
(pandas' ``groupsort_indexer``, linear and stable), then sorted with timsort (``kind="stable"``).
Within each code the words are then short runs in nearly the right order, which timsort merges almost
for free: about 16 ns a word for a block of a million source rows with 100,000 keys, against 50 ns.
Few codes (long runs, which timsort would sort from scratch), codes outside their stated range, a
CPU whose quicksort is fast, or a pandas without the function: the words take the quicksort.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


_GROUPED_PER_CODE = 64  # longest mean run of one code worth grouping first
_SLOW_RATIO = 0.4  # quicksort / timsort time on random words: about 0.1 with SIMD sorts, 0.75 on Zen 4
_PROBE_WORDS = 1 << 15


def sort_words(
    words: np.ndarray, codes: np.ndarray, code_count: int, spare: np.ndarray | None = None
) -> np.ndarray:
    """``words`` (uint64) ascending. They are sorted in place or into ``spare`` (a uint64 array as
    long, else a new one): use the result.

    ``codes`` ascend with the words (their top bits, say) and should lie in ``0 .. code_count - 1``;
    they only choose the method, so codes out of that range just take the quicksort.
    """
    if not _worth_grouping(len(words), code_count) or not _quicksort_is_slow():
        words.sort()
        return words
    group = _grouping()
    if group is None or int(codes.min()) < 0 or int(codes.max()) >= code_count:
        words.sort()
        return words
    order, _ = group(codes.astype(np.intp, copy=False), code_count)
    grouped: np.ndarray = np.take(words, order, out=spare, mode="clip")  # "raise" would copy through a buffer
    grouped.sort(kind="stable")
    return grouped


def _worth_grouping(count: int, code_count: int) -> bool:
    """Enough words for the setup to pay, short runs per code, and a counting array no longer than
    the words (plus a floor)."""
    return count >= 2 and count <= code_count * _GROUPED_PER_CODE and code_count <= 4 * count + (1 << 16)


@functools.cache
def _grouping() -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None:
    try:
        from pandas._libs.algos import groupsort_indexer
    except ImportError:
        return None
    return groupsort_indexer  # type: ignore[no-any-return]


@functools.cache
def _quicksort_is_slow() -> bool:
    """Whether numpy's quicksort of random 64-bit words takes more than ``_SLOW_RATIO`` of timsort's
    time here (timed once per process, alternating, the fastest of three each: a ratio, so that a
    busy machine does not look slow)."""
    words = np.random.default_rng(0).integers(0, 1 << 63, _PROBE_WORDS, dtype=np.uint64)
    quick = stable = float("inf")
    for _ in range(3):
        quick = min(quick, _seconds_to_sort(words, "quicksort"))
        stable = min(stable, _seconds_to_sort(words, "stable"))
    return quick > _SLOW_RATIO * stable


def _seconds_to_sort(words: np.ndarray, kind: Literal["quicksort", "stable"]) -> float:
    copy = words.copy()
    started = time.perf_counter()
    copy.sort(kind=kind)
    return time.perf_counter() - started
