"""The latest source row at or before each entity row, in memory: sorts and binary searches, no join.

The source comes in blocks (a Parquet row group, a batch), which can be worked on in parallel. Each
block is sorted by (key code, feature time, created time) and every entity row searched in it; the
block's candidate replaces the entity row's current one when later by (feature time, created time).
numpy sorts plain 64-bit words with SIMD several times faster than it argsorts, so a word packs the
key code, the time (in its coarsest exact unit, days to the time's own, from an origin on a coarse grid
so that blocks share it; or else as its rank among the block's distinct times) and the row number.
The entity rows are sorted once by (code, time): any block's search keys then ascend in that order,
searching ascending keys is fast, and blocks on the same axis share them. A found word gives the
candidate's key and time back without looking up its row.

With the created-time filter a row counts only once it exists at the event: it is *available* at
``max(feature time, created time)``. A block is then also sorted by (key, available time); a running
maximum of each row's rank in (key, feature time, created time) order gives, at every position, the
greatest row available so far, and each entity row takes it at its own position.

Examples:
    >>> import numpy as np
    >>> latest_rows(
    ...     entity_codes=np.array([0, 0, 1, -1]), entity_times=np.array([15, 5, 30, 30]),
    ...     source_codes=np.array([0, 0, 1]), source_times=np.array([10, 20, 40]),
    ... ).tolist()
    [0, -1, -1, -1]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlprod.features.scratch import Scratch, array_of
from mlprod.features.word_sort import sort_words
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

NO_ROW = -1
_NEVER, _LATEST = -(2**63), 2**63 - 1  # the int64 range; _NEVER: the time of no row
BLOCK_ROWS = 1 << 20
_WORD_BITS = 64
_REACH = 1 << 62  # time units (µs or ns) an axis may span, so that time differences on it stay in 64 bits
_SLICE = 1 << 16  # elements checked at a time, so that the remainders stay in cache
# Units tried, coarsest first: a day, hour, minute, second and millisecond in nanoseconds, then in µs.
_STEPS = (86_400_000_000_000, 3_600_000_000_000, 86_400_000_000, 60_000_000_000, 3_600_000_000,
          1_000_000_000, 60_000_000, 1_000_000, 1_000, 1)  # fmt: skip


class TooWideError(ValueError):
    """Key codes, times and row numbers do not fit in a 64-bit word: use the ASOF join."""


def latest_rows(
    *,
    entity_codes: np.ndarray,
    entity_times: np.ndarray,
    source_codes: np.ndarray,
    source_times: np.ndarray,
    source_created: np.ndarray | None = None,
    ttl: int | None = None,
    created_filter: bool = False,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """For each entity row, the number of the source row it sees, or ``NO_ROW`` (-1).

    Codes are non-negative integers naming the key (-1: a null key or a null time, which never
    matches); times and ``ttl`` are integers in one unit (microseconds, or nanoseconds). A row sees
    the source row of its key with the greatest (time, created) among those with
    ``event - ttl <= time <= event`` and, with ``created_filter``, ``created <= event``.
    """
    search = LatestRows(entity_codes, entity_times, ttl=ttl, created_filter=created_filter)
    scratch = Scratch()
    for start in range(0, len(source_codes), block_rows):
        rows = slice(start, start + block_rows)
        created = source_created[rows] if source_created is not None else None
        search.add(start, search.block(source_codes[rows], source_times[rows], created, scratch))
    return search.result().rows


@dataclass(frozen=True)
class Candidates:
    """Per entity row (of those at ``positions`` in the sorted entity rows, when given): a source row
    (-1: none), its feature time and its created time."""

    rows: np.ndarray
    times: np.ndarray
    created: np.ndarray
    positions: np.ndarray | None = None


class LatestRows:
    """Each entity row's latest source row, found block by block: ``block`` may run on several
    threads at once, ``add`` merges a block's candidates in (one thread, in block order), ``result``
    gives the row numbers in entity order."""

    def __init__(
        self, codes: np.ndarray, times: np.ndarray, *, ttl: int | None = None, created_filter: bool = False
    ) -> None:
        self._order = _ascending(codes, times)
        self._codes, self._times = codes[self._order], times[self._order]
        self._greatest_code = int(codes.max(initial=0))
        self._code_bits = (self._greatest_code + 1).bit_length()  # and one past it for unknown keys
        self._ttl, self._created_filter = ttl, created_filter
        self._best = np.full(len(codes), NO_ROW, dtype=np.int64)
        self._best_times = np.full(len(codes), _NEVER, dtype=np.int64)
        self._best_created = np.zeros(len(codes), dtype=np.int64)
        self._probes_by_axis: dict[tuple[int, int, int], np.ndarray] = {}
        self._by_time: tuple[np.ndarray, np.ndarray] | None = None  # entity times' order and sorted times

    def block(
        self, codes: np.ndarray, times: np.ndarray, created: np.ndarray | None, scratch: Scratch | None = None
    ) -> Candidates:
        """The candidates of one block of source rows (codes -1 where the key or time is null, which
        is dropped; a code no entity row has never matches), for the entity rows the block can give a
        value to. An entity row without a candidate has row -1 and the least time. A worker searching
        block after block passes its ``scratch`` for the block's temporaries."""
        kept: np.ndarray | None = None
        if len(codes) and int(codes.min()) < 0:
            kept = np.flatnonzero(codes >= 0)
            codes, times = codes[kept], times[kept]
            created = created[kept] if created is not None else None
        positions = self._reachable(times)
        if positions is not None and len(positions) == 0:
            return Candidates(positions, positions, positions, positions)
        if int(codes.max()) > self._greatest_code:  # keys no entity row has: one code past the greatest
            clipped = array_of(scratch, "codes", len(codes), codes.dtype.type)
            codes = np.minimum(codes, self._greatest_code + 1, out=clipped)
        entity_codes, entity_times = self._codes, self._times
        if positions is not None:
            entity_codes, entity_times = entity_codes[positions], entity_times[positions]
        row_bits = max(len(codes) - 1, 1).bit_length()
        by_time, units = _Axis.of(
            times, self._code_bits + row_bits, array_of(scratch, "units", len(times), np.int64)
        )
        order, keys = _sorted(codes, units, self._code_bits, by_time.bits, row_bits, scratch, "time")
        if created is not None:
            order = _created_order(order, keys, created)
        if self._created_filter and created is not None:
            available = np.maximum(times, created, out=array_of(scratch, "available", len(times), np.int64))
            arrival_units = array_of(scratch, "arrival units", len(times), np.int64)
            by_arrival, units = _Axis.of(available, self._code_bits + row_bits, arrival_units)
            arrival, arrival_keys = _sorted(
                codes, units, self._code_bits, by_arrival.bits, row_bits, scratch, "arrival"
            )
            at = _last_at_or_before(arrival_keys, _subset(self._probes(by_arrival), positions))
            np.maximum(at, 0, out=at)
            last = arrival[at]
            unseen = (codes[last] != entity_codes) | (available[last] > entity_times)
            rows = order[_greatest_so_far(order, arrival)[at]]
            row_times = times[rows]
        else:
            at = _last_at_or_before(keys, _subset(self._probes(by_time), positions))
            np.maximum(at, 0, out=at)
            found = keys[at]
            rows = order[at]
            row_times = by_time.times(found & np.uint64((1 << by_time.bits) - 1))
            found >>= np.uint64(by_time.bits)
            unseen = found.view(np.int64) != entity_codes
            unseen |= row_times > entity_times
        row_created = created[rows] if created is not None else row_times
        if kept is not None:
            rows = kept[rows]
        rows[unseen] = NO_ROW
        row_times[unseen] = _NEVER
        return Candidates(rows, row_times, row_created, positions)

    def add(self, start: int, candidates: Candidates) -> None:
        """Merge a block's candidates (its first row is source row ``start``)."""
        at = candidates.positions
        best_times = self._best_times if at is None else self._best_times[at]
        take = candidates.times > best_times
        tie = candidates.times == best_times  # full ties go to the later block, as within one
        tie &= candidates.rows >= 0
        if tie.any():
            best_created = self._best_created if at is None else self._best_created[at]
            take |= tie & (candidates.created >= best_created)
        if at is None:
            np.add(candidates.rows, start, out=self._best, where=take)
            np.copyto(self._best_times, candidates.times, where=take)
            np.copyto(self._best_created, candidates.created, where=take)
            return
        taken = at[take]
        self._best[taken] = candidates.rows[take] + start
        self._best_times[taken] = candidates.times[take]
        self._best_created[taken] = candidates.created[take]

    def result(self, *, with_times: bool = True) -> Candidates:
        """Per entity row, in entity order: the chosen source row (-1: none) and, ``with_times``, its
        times (else the times are left empty)."""
        best = self._best
        if self._ttl is not None:
            oldest = np.maximum(self._times, _NEVER + self._ttl) - self._ttl  # no wrap below int64
            best = np.where(self._best_times >= oldest, best, NO_ROW)
        kept = [best, self._best_times, self._best_created] if with_times else [best]
        unsorted = [np.empty(len(array), dtype=np.int64) for array in kept]
        for into, array in zip(unsorted, kept, strict=True):
            into[self._order] = array
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(unsorted[0], *(unsorted[1:] or [empty, empty]))

    def _reachable(self, times: np.ndarray) -> np.ndarray | None:
        """The positions of the sorted entity rows a block with these feature times can give a value
        to (None: all): those at or after its first time and, with a TTL, before its last time
        expires. (A value that has expired loses to any later one, and leaves the row without a value
        if none is.)"""
        if len(times) == 0:
            return np.zeros(0, dtype=np.int64)
        reachable = self._times >= int(times.min())
        if self._ttl is not None:
            reachable &= self._times <= min(int(times.max()) + self._ttl, _LATEST)
        return None if reachable.all() else np.flatnonzero(reachable)

    def _ranks_on(self, distinct: np.ndarray) -> np.ndarray:
        """The entity times as ranks among ``distinct`` (the last at or before, 0 when none is), searched
        in ascending time order: many times faster than searching them in (code, time) order."""
        if self._by_time is None:  # made once, by whichever thread gets here first
            order = np.argsort(self._times)
            self._by_time = order, self._times[order]
        order, ascending = self._by_time
        ranks = np.empty(len(order), dtype=np.int64)
        found = np.searchsorted(distinct, ascending, side="right") - 1
        ranks[order] = np.maximum(found, 0, out=found)
        return ranks

    def _probes(self, axis: _Axis) -> np.ndarray:
        """The entity rows' search keys on ``axis``, ascending (times map to units monotonically);
        kept for the next blocks on the same axis."""
        key = (axis.origin, axis.step, axis.bits)
        cached = self._probes_by_axis.get(key) if axis.distinct is None else None
        if cached is not None:
            return cached
        units = axis.units(self._times, clip=True) if axis.distinct is None else self._ranks_on(axis.distinct)
        probes: np.ndarray = self._codes.view(np.uint64) << np.uint64(axis.bits)
        probes |= units.view(np.uint64)
        if axis.distinct is None:
            self._probes_by_axis = {key: probes}
        return probes


@dataclass(frozen=True)
class _Axis:
    """Times as small non-negative integers in the same order: offsets from ``origin`` in a unit of
    ``step`` time units, or (``distinct`` given) ranks among the block's distinct times."""

    origin: int
    step: int
    bits: int
    distinct: np.ndarray | None = None

    @staticmethod
    def of(times: np.ndarray, other_bits: int, out: np.ndarray | None = None) -> tuple[_Axis, np.ndarray]:
        """The axis for ``times`` in the ``64 - other_bits`` bits a word leaves free, and ``times`` on
        it (in ``out`` when given and they fit: int64, as long as ``times``)."""
        first = int(times.min())
        if int(times.max()) - first < _REACH:  # else differences of times would not fit in 64 bits
            units = np.subtract(times, first, out=out)
            step = _coarsest_step(units)
            if step > 1:
                units //= step
            bits = min(_WORD_BITS - other_bits, (_REACH // step).bit_length() - 1)  # 2**bits steps <= _REACH
            span = int(units.max())
            if bits > 0 and span < 1 << bits:
                # The origin goes back to a grid of half the axis, so that blocks share it (and probes).
                back = (first // step) % (1 << (bits - 1))
                if span + back >= 1 << bits or first - back * step <= _NEVER:
                    back = 0
                units += back
                return _Axis(first - back * step, step, bits), units
        bits = max(len(times) - 1, 1).bit_length()  # ranks are below the number of times
        if other_bits + bits > _WORD_BITS:
            raise TooWideError(f"{other_bits}-bit codes and rows leave too few bits for {bits}-bit times")
        distinct, ranks = _ranks(times, first, out)
        return _Axis(first, 1, bits, distinct), ranks

    def units(self, times: np.ndarray, *, clip: bool = False) -> np.ndarray:
        """``times`` on this axis; with ``clip`` (entity times), a time before the first is 0 (checked
        later) and one after the last takes the greatest unit."""
        units: np.ndarray
        if self.distinct is not None:
            units = np.searchsorted(self.distinct, times, side="right") - 1
            return np.maximum(units, 0) if clip else units
        if clip:
            last = min(self.origin + ((1 << self.bits) - 1) * self.step, _LATEST)
            times = np.clip(times, self.origin, last)
        offsets = times - self.origin
        units = offsets // self.step if self.step > 1 else offsets
        return units

    def times(self, units: np.ndarray) -> np.ndarray:
        """The times of ``units`` (uint64) on this axis."""
        if self.distinct is not None:
            times: np.ndarray = self.distinct[units.view(np.int64)]
            return times
        offsets = units.view(np.int64) * self.step if self.step > 1 else units.view(np.int64)
        return offsets + self.origin


def _ranks(times: np.ndarray, first: int, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``times`` ascending (``first`` is the least) and each time's rank among them (in
    ``out`` when given). Sorting packed (time offset, row) words and counting the distinct ones is many
    times faster than ``np.unique`` (which hashes first in numpy 2.3+) then a search per time."""
    row_bits = max(len(times) - 1, 1).bit_length()
    if (int(times.max()) - first).bit_length() + row_bits <= 64:  # a word of its own, not the search's
        words = np.subtract(times, first).view(np.uint64)  # wraps past 2**63: as uint64 it is exact
        words <<= np.uint64(row_bits)
        words |= row_numbers(len(times))
        words.sort()
        order = np.bitwise_and(words, np.uint64((1 << row_bits) - 1)).view(np.int64)
        words >>= np.uint64(row_bits)
        ascending = words.view(np.int64)
        ascending += first
    else:
        order = np.argsort(times, kind="stable")
        ascending = times[order]
    new = np.empty(len(times), dtype=bool)
    new[:1] = True
    np.not_equal(ascending[1:], ascending[:-1], out=new[1:])
    ranks = np.empty(len(times), dtype=np.int64) if out is None else out
    ranks[order] = np.cumsum(new) - 1
    return ascending[new], ranks


def _sorted(
    codes: np.ndarray,
    units: np.ndarray,
    code_bits: int,
    unit_bits: int,
    row_bits: int,
    scratch: Scratch | None = None,
    name: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers in (code, unit) order (in ``units``, which is reused) and the sorted (code, unit)
    search keys (in ``scratch``'s arrays ``name`` + " words" or " spare" when given)."""
    assert code_bits + unit_bits + row_bits <= _WORD_BITS
    words = array_of(scratch, f"{name} words", len(codes), np.uint64)
    np.left_shift(codes.view(np.uint64), np.uint64(unit_bits + row_bits), out=words)
    words |= np.left_shift(units.view(np.uint64), np.uint64(row_bits), out=units.view(np.uint64))
    words |= row_numbers(len(codes))
    spare = None if scratch is None else scratch.array(f"{name} spare", len(codes), np.uint64)
    words = sort_words(words, codes, 1 << code_bits, spare)
    order = np.bitwise_and(words, np.uint64((1 << row_bits) - 1), out=units.view(np.uint64)).view(np.int64)
    words >>= np.uint64(row_bits)
    return order, words


def _coarsest_step(offsets: np.ndarray) -> int:
    """The greatest of ``_STEPS`` dividing every offset (checked on a sample first: most fail there)."""
    sample = offsets[:: max(1, len(offsets) // 4096)]
    return next(s for s in _STEPS if not np.any(sample % s) and _divides(s, offsets))


def _divides(step: int, offsets: np.ndarray) -> bool:
    """Whether ``step`` divides every offset, checked a slice at a time (no array as large as them)."""
    return step == 1 or not any(
        np.any(offsets[start : start + _SLICE] % step) for start in range(0, len(offsets), _SLICE)
    )


@functools.cache
def _shared_row_numbers() -> np.ndarray:
    numbers = np.arange(BLOCK_ROWS, dtype=np.uint64)
    numbers.setflags(write=False)
    return numbers


def row_numbers(count: int) -> np.ndarray:
    """0..count-1 as uint64, shared for blocks up to ``BLOCK_ROWS`` (it is read-only)."""
    return _shared_row_numbers()[:count] if count <= BLOCK_ROWS else np.arange(count, dtype=np.uint64)


def _ascending(codes: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The order of (code, time) ascending: a sort of packed words when they fit, else a lexsort."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    shifted = codes + 1  # codes from -1
    code_bits = max(int(shifted.max()), 1).bit_length()
    row_bits = max(len(codes) - 1, 1).bit_length()
    try:
        axis, units = _Axis.of(times, code_bits + row_bits)
    except TooWideError:
        return np.lexsort((times, codes))
    return _sorted(shifted, units, code_bits, axis.bits, row_bits)[0]


def _subset(array: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    return array if positions is None else array[positions]


def _greatest_so_far(order: np.ndarray, arrival: np.ndarray) -> np.ndarray:
    """At each position of ``arrival`` (row numbers in available-time order), the greatest rank in
    ``order`` (row numbers in (time, created) order) of the rows up to it, key by key as keys ascend."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    greatest: np.ndarray = np.maximum.accumulate(rank[arrival])
    return greatest


def _last_at_or_before(keys: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Position of the last key <= each (ascending) probe, -1 if none."""
    found: np.ndarray = np.searchsorted(keys, probes, side="right") - 1
    return found


def _created_order(order: np.ndarray, keys: np.ndarray, created: np.ndarray) -> np.ndarray:
    """``order`` with runs of equal (code, time) put in created-time order."""
    if len(keys) < 2:
        return order
    tie = keys[1:] == keys[:-1]
    if not tie.any():
        return order
    in_run = np.zeros(len(keys), dtype=bool)
    in_run[1:] |= tie
    in_run[:-1] |= tie
    positions = np.flatnonzero(in_run)
    starts = np.ones(len(positions), dtype=bool)
    starts[1:] = ~tie[positions[1:] - 1]
    rows = order[positions]
    order[positions] = rows[np.lexsort((created[rows], np.cumsum(starts)))]
    return order
