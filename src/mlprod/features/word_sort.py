"""Sorting packed 64-bit words whose top bits are a small key code, fast on every x86 CPU.

numpy's quicksort of 64-bit integers runs x86-simd-sort's AVX-512 code wherever the CPU has AVX-512.
On AMD Zen 4 that code is slow: its partition step stores through ``vpcompressq`` with a memory
operand, which Zen 4 runs in microcode, and a million words take about 50 ns each, three times its
AVX2 code (numpy/x86-simd-sort#6). numpy picks the code once, at import, for the whole process.

Where the quicksort is slow, the words are first grouped by key code with a counting sort (pandas'
``groupsort_indexer``, linear and stable), then sorted with timsort (``kind="stable"``). Within each
code the words are then short runs in nearly the right order, which timsort merges almost for free:
about 15 ns a word for a block of a million source rows with 100,000 keys, against 50 ns. Where the
quicksort is fast, or pandas lacks the function, the words take the quicksort.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np

_SLOW_NS_PER_WORD = 12.0  # the SIMD quicksorts take 3-8 ns a word on 2^15 words; scalar ones 30 or more
_PROBE_WORDS = 1 << 15


def sort_words(words: np.ndarray, codes: np.ndarray, code_count: int) -> np.ndarray:
    """``words`` (uint64) ascending, sorted in place or as a new array. ``codes`` (each in
    ``0 .. code_count - 1``) ascend with the words: their top bits, say."""
    group = _grouping()
    if group is None or not _quicksort_is_slow() or len(words) < 2:
        words.sort()
        return words
    order, _ = group(codes.astype(np.intp, copy=False), code_count)
    grouped: np.ndarray = words[order]
    grouped.sort(kind="stable")
    return grouped


@functools.cache
def _grouping() -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None:
    try:
        from pandas._libs.algos import groupsort_indexer
    except ImportError:
        return None
    return groupsort_indexer  # type: ignore[no-any-return]


@functools.cache
def _quicksort_is_slow() -> bool:
    """Whether numpy's quicksort of 64-bit words takes longer here than a SIMD one does (timed once
    per process on random words, the fastest of three)."""
    words = np.random.default_rng(0).integers(0, 1 << 63, _PROBE_WORDS, dtype=np.uint64)
    fastest = float("inf")
    for _ in range(3):
        copy = words.copy()
        started = time.perf_counter()
        copy.sort()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest / _PROBE_WORDS * 1e9 > _SLOW_NS_PER_WORD
