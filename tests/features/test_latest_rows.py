"""``latest_rows`` and ``KeyCoder`` against plain loops, on random inputs with ties, nulls and blocks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import mlprod.features.latest_rows as latest
import mlprod.features.word_sort as word_sort
from mlprod.features.key_codes import KeyCoder, numpy_of
from mlprod.features.latest_rows import NO_ROW, LatestRows, TooWideError, latest_rows
from mlprod.features.scratch import Scratch

HOUR = 3_600_000_000


def brute_force(
    entity_codes: np.ndarray,
    entity_times: np.ndarray,
    source_codes: np.ndarray,
    source_times: np.ndarray,
    source_created: np.ndarray | None,
    ttl: int | None,
    created_filter: bool,
) -> list[int]:
    chosen = []
    for code, event in zip(entity_codes, entity_times, strict=True):
        best, best_order = NO_ROW, None
        for row, (key, time) in enumerate(zip(source_codes, source_times, strict=True)):
            created = source_created[row] if source_created is not None else time
            if code < 0 or key != code or time > event or (ttl is not None and time < event - ttl):
                continue
            if created_filter and created > event:
                continue
            if best_order is None or (time, created) > best_order:
                best, best_order = row, (time, created)
        chosen.append(best)
    return chosen


def random_case(rng: np.random.Generator, unit: int) -> dict[str, object]:
    """Keys 0..k-1 (-1 for null), times on a coarse grid of ``unit`` µs so that ties are common;
    (key, time, created) unique, since the contract leaves full ties open."""
    rows, keys = int(rng.integers(0, 40)), int(rng.integers(1, 6))
    codes = rng.integers(-1, keys, rows)
    times = rng.integers(-5, 25, rows) * unit
    created = times + rng.integers(-2, 6, rows) * unit if rng.random() < 0.7 else None
    seen: set[tuple[int, ...]] = set()
    for row in range(rows):
        while (triple := (codes[row], times[row], created[row] if created is not None else 0)) in seen:
            if created is not None:
                created[row] += unit
            else:
                times[row] += unit
        seen.add(triple)
    entities = int(rng.integers(0, 20))
    return {
        "entity_codes": rng.integers(-1, keys + 1, entities),
        "entity_times": rng.integers(-8, 30, entities) * unit,
        "source_codes": codes,
        "source_times": times,
        "source_created": created,
        "ttl": int(rng.integers(0, 8)) * unit if rng.random() < 0.5 else None,
        "created_filter": bool(rng.random() < 0.5),
    }


@pytest.mark.parametrize("slow_quicksort", [False, True], ids=["quicksort", "grouped"])
@pytest.mark.parametrize("unit", [1, 1_000_000, HOUR, 7 * 86_400_000_000 + 1])
def test_latest_rows_equal_the_brute_force_answer(
    unit: int, slow_quicksort: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(word_sort, "_quicksort_is_slow", lambda: slow_quicksort)  # both ways of sorting
    rng = np.random.default_rng(unit % 1000)
    for _ in range(600):
        case = random_case(rng, unit)
        expected = brute_force(**case)  # type: ignore[arg-type]
        for block_rows in (1, 3, 1 << 20):
            assert latest_rows(**case, block_rows=block_rows).tolist() == expected, case  # type: ignore[arg-type]


def test_narrow_words_fall_back_to_time_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Times whose offsets need more bits than the word has are replaced by their ranks in the block."""
    monkeypatch.setattr(latest, "_WORD_BITS", 20)
    rng = np.random.default_rng(7)
    ranked = 0
    for _ in range(400):
        case = random_case(rng, 1_000_003)
        try:
            got = latest_rows(**case, block_rows=8)  # type: ignore[arg-type]
        except TooWideError:
            continue
        ranked += 1
        assert got.tolist() == brute_force(**case)  # type: ignore[arg-type]
    assert ranked > 300


def test_keys_and_rows_wider_than_a_word_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latest, "_WORD_BITS", 8)
    with pytest.raises(TooWideError, match="too few bits"):
        latest_rows(
            entity_codes=np.array([0, 200]),
            entity_times=np.array([5, 5]),
            source_codes=np.arange(200),
            source_times=np.arange(200) * 7_919,
        )


@pytest.mark.parametrize("unit", [1, 86_400_000_000])
def test_times_near_the_ends_of_64_bits_are_found(unit: int) -> None:
    """Axes reach back to a shared origin; entity times far outside a block's span are clipped in time,
    so no difference of times wraps around."""
    rng = np.random.default_rng(unit % 997)
    edge = int(np.iinfo(np.int64).max) // unit * unit
    for _ in range(200):
        case = random_case(rng, unit)
        entity_shift, source_shift = rng.choice([-edge + 40 * unit, edge - 40 * unit, 0], 2)
        case["entity_times"] = case["entity_times"] + entity_shift  # type: ignore[operator]
        for name in ("source_times", "source_created"):
            if case[name] is not None:
                case[name] = case[name] + source_shift  # type: ignore[operator]
        expected = brute_force(**case)  # type: ignore[arg-type]
        for block_rows in (2, 1 << 20):
            assert latest_rows(**case, block_rows=block_rows).tolist() == expected, case  # type: ignore[arg-type]


def test_a_block_spanning_more_than_2_to_the_63_microseconds_is_ranked() -> None:
    """DuckDB's earliest and latest timestamps are further apart than an int64 difference reaches."""
    earliest, latest_time = -210_866_803_200_000_000, 9_223_371_000_000_000_000
    got = latest_rows(
        entity_codes=np.array([0, 0]),
        entity_times=np.array([9_000_000_000_000_000_000, 0]),
        source_codes=np.array([0, 0]),
        source_times=np.array([earliest, latest_time]),
    )
    assert got.tolist() == [0, 0]


def test_blocks_at_different_times_share_an_axis() -> None:
    """Blocks whose times start days apart get the same axis, so the entity rows' search keys are made
    once."""
    seconds = np.array([0, 1_000_000]) + 1_735_689_600_000_000
    first, _ = latest._Axis.of(seconds, 37)
    later, _ = latest._Axis.of(seconds + 30 * 86_400_000_000, 37)
    assert (first.origin, first.step, first.bits) == (later.origin, later.step, later.bits)


@pytest.mark.parametrize("span", [1 << 40, 180 * 86_400_000_000, 1 << 62, np.iinfo(np.int64).max])
def test_time_ranks_are_those_of_the_distinct_times(span: int) -> None:
    """Microsecond times over months do not fit a search word beside 100,000 codes and the row
    numbers: they are ranked, by a sort of packed (time, row) words, or an argsort when a time spans
    more than those words hold (the last two spans)."""
    rng = np.random.default_rng(span % 1009)
    for size in (500, 5_000):
        times = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).min + span, size, endpoint=True)
        times[: size // 3] = times[size // 3 : 2 * (size // 3)]  # ties
        axis, ranks = latest._Axis.of(times, 51)  # 13 bits left: ranks of 5,000 times, not offsets
        distinct = np.unique(times)
        assert axis.distinct is not None
        assert axis.distinct.tolist() == distinct.tolist()
        assert ranks.tolist() == np.searchsorted(distinct, times).tolist()
        assert axis.times(ranks.view(np.uint64)).tolist() == times.tolist()


def test_entity_times_ranked_in_a_block_are_the_last_distinct_time_at_or_before() -> None:
    rng = np.random.default_rng(3)
    source_times = rng.integers(0, 180 * 86_400_000_000, 20_000)
    entity_times = np.concatenate([rng.integers(-5, 180 * 86_400_000_000 + 5, 3_000), source_times[:500]])
    search = LatestRows(rng.integers(0, 100_000, len(entity_times)), entity_times)
    distinct = np.unique(source_times)
    expected = np.maximum(np.searchsorted(distinct, search._times, side="right") - 1, 0)
    assert search._ranks_on(distinct).tolist() == expected.tolist()


def test_empty_inputs_give_no_rows() -> None:
    none = np.zeros(0, dtype=np.int64)
    assert latest_rows(entity_codes=none, entity_times=none, source_codes=none, source_times=none).size == 0
    got = latest_rows(
        entity_codes=np.array([0]), entity_times=np.array([1]), source_codes=none, source_times=none
    )
    assert got.tolist() == [NO_ROW]


@pytest.mark.parametrize(
    ("entity", "source"),
    [
        ([pa.array([5, 9, None, 5])], [pa.array([9, 7, 5, None])]),  # integers through a table
        ([pa.array([5, 10**15, None, 5])], [pa.array([10**15, 7, 5, None])]),  # too sparse: hashed
        ([pa.array([-3, 7, -3], pa.int8())], [pa.array([7, -128, -3], pa.int8())]),  # marked from -3
        ([pa.array([2**62 + 9, 2**62], pa.uint64())], [pa.array([2**62, 1, 2**63 + 9], pa.uint64())]),
        ([pa.array([2**63 + 9, 2**63], pa.uint64())], [pa.array([2**63, 1, 9], pa.uint64())]),  # hashed
        ([pa.array([2**63 + 1, None], pa.uint64())], [pa.array([2**63, None, 2**63 + 1], pa.uint64())]),
        ([pa.array([None, None], pa.int64())], [pa.array([1, None], pa.int64())]),  # no key at all
        ([pa.array(["b", "a", None, "b"])], [pa.array(["a", "z", "b", None])]),
        ([pa.array([1.5, 2.0, None, 1.5])], [pa.array([2.0, 3.0, 1.5, None])]),
        (  # composite, coded by a lookup table over the combinations' range
            [pa.array([1, 1, 2, 1]), pa.array(["x", "y", "x", "x"])],
            [pa.array([1, 2, 1, 1]), pa.array(["y", "x", "x", None])],
        ),
        (  # composite over 200**3 combinations, past any table: binary search
            [pa.array(range(200)), pa.array(range(199, -1, -1)), pa.array(range(0, 1400, 7))],
            [pa.array([0, 0, 199, 5, None]), pa.array([199, 198, 0, 194, 1]), pa.array([0, 0, 1393, 35, 7])],
        ),
    ],
)
def test_key_codes_are_equal_exactly_where_keys_are(entity: list[pa.Array], source: list[pa.Array]) -> None:
    coder, entity_codes = KeyCoder.of(entity)
    source_codes = coder.codes(source)
    entity_keys = list(zip(*(column.to_pylist() for column in entity), strict=True))
    source_keys = list(zip(*(column.to_pylist() for column in source), strict=True))
    for codes, keys in ((entity_codes, entity_keys), (source_codes, source_keys)):
        for code, key in zip(codes, keys, strict=True):
            if None in key or key not in entity_keys:
                assert code == NO_ROW, key
            else:
                assert code == entity_codes[entity_keys.index(key)], key
    assert sorted(set(entity_codes[entity_codes >= 0])) == list(
        range(len(set(entity_codes[entity_codes >= 0])))
    )


def test_the_time_unit_divides_every_time_not_only_a_sample() -> None:
    """One time off the second among 200,000 (past the sample and the first slice checked) makes the
    unit microseconds."""
    offsets = np.arange(200_000, dtype=np.int64) * 1_000_000
    assert latest._coarsest_step(offsets) == 1_000_000
    offsets[150_001] += 1
    assert latest._coarsest_step(offsets) == 1


@pytest.mark.parametrize("slow_quicksort", [False, True], ids=["quicksort", "grouped"])
def test_a_blocks_candidates_outlive_the_next_block_on_the_same_scratch(
    slow_quicksort: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker reuses its scratch arrays while the candidates it found stay queued: they must be its
    own arrays, equal to those found without a scratch, whatever the next block wrote."""
    monkeypatch.setattr(word_sort, "_quicksort_is_slow", lambda: slow_quicksort)
    rng = np.random.default_rng(11)
    for _ in range(300):
        case = random_case(rng, HOUR)
        search = LatestRows(
            case["entity_codes"],  # type: ignore[arg-type]
            case["entity_times"],  # type: ignore[arg-type]
            ttl=case["ttl"],  # type: ignore[arg-type]
            created_filter=case["created_filter"],  # type: ignore[arg-type]
        )
        codes, times, created = case["source_codes"], case["source_times"], case["source_created"]
        blocks = [slice(0, len(codes) // 2), slice(len(codes) // 2, None)]  # type: ignore[arg-type]
        scratch = Scratch()
        kept = []
        for rows in blocks:
            block_created = created[rows] if created is not None else None  # type: ignore[index]
            kept.append(search.block(codes[rows], times[rows], block_created, scratch))  # type: ignore[index]
        for rows, candidates in zip(blocks, kept, strict=True):
            block_created = created[rows] if created is not None else None  # type: ignore[index]
            alone = search.block(codes[rows], times[rows], block_created)  # type: ignore[index]
            for name in ("rows", "times", "created", "positions"):
                got, expected = getattr(candidates, name), getattr(alone, name)
                assert (got is None and expected is None) or got.tolist() == expected.tolist(), (name, case)


@pytest.mark.parametrize("chunks", [[[5, 9], [7, 5, 3]], [[9, 5, 11, 2]]], ids=["chunked", "one chunk"])
def test_key_codes_into_a_scratch_equal_codes_without_one(chunks: list[list[int]]) -> None:
    """Source keys coded through a worker's scratch, again and again (chunks copied into it, offsets and
    codes reused), give the codes a fresh coding gives."""
    coder, _ = KeyCoder.of([pa.array([5, 9, 2, 5])])
    keys = pa.chunked_array([pa.array(chunk, pa.int64()) for chunk in chunks])
    expected = coder.codes([keys]).tolist()
    scratch = Scratch()
    for _ in range(3):
        assert coder.codes([keys], scratch).tolist() == expected
    assert numpy_of(keys, scratch.array("spare", 8, np.int64)).tolist() == keys.to_pylist()
