"""Lossless casts: a commit stores exactly the values given, or is refused and changes nothing.

The oracle here is independent of Arrow's casts: it compares the Python values committed and checked
out (numbers exactly, a float by its shortest decimal form, times by instant or wall clock).
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlprod.data.casts import exact_cast
from mlprod.data.schemas import Reconciled, reconcile
from mlprod.data.storage import conform
from mlprod.data.tables import TableStore
from mlprod.errors import InvalidInputError, LossyCastError
from mlprod.workspace import Workspace

INTS = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
FLOATS = [pa.float32(), pa.float64()]
DECIMALS = [pa.decimal32(5, 2), pa.decimal64(12, 4), pa.decimal128(10, 2), pa.decimal128(38, 10)]
DATES = [pa.date32(), pa.date64()]
TIMES = [pa.timestamp(unit, tz) for unit in ("s", "ms", "us", "ns") for tz in (None, "UTC", "Asia/Kolkata")]
TEXT = [pa.string(), pa.large_string()]
TYPES = [*INTS, *FLOATS, *DECIMALS, *DATES, *TIMES, *TEXT, pa.bool_()]


def same(committed: pa.Array | pa.ChunkedArray, stored: pa.Array | pa.ChunkedArray) -> bool:
    """Whether each stored value, put back into the committed type by Python arithmetic, is the value
    committed (null is null, NaN is NaN, times compare by instant or wall clock to the nanosecond)."""
    kind = committed.type
    return len(committed) == len(stored) and all(
        _same(c, s, kind) for c, s in zip(committed.to_pylist(), stored.to_pylist(), strict=True)
    )


def _ticks(value: date) -> tuple[bool, int]:
    """Whether a time is aware, and its nanoseconds since 1970-01-01 (UTC if aware)."""
    if isinstance(value, pd.Timestamp):
        return value.tz is not None, int(value.value)
    if isinstance(value, datetime):
        aware = value.tzinfo is not None
        since = value - datetime(1970, 1, 1, tzinfo=UTC if aware else None)
        return aware, (since.days * 86_400 + since.seconds) * 10**9 + since.microseconds * 1_000
    return False, (value - date(1970, 1, 1)).days * 86_400 * 10**9


def _same(committed: Any, stored: Any, kind: pa.DataType) -> bool:
    if committed is None or stored is None:
        return committed is None and stored is None
    if isinstance(committed, bool) or isinstance(stored, bool):
        return type(committed) is type(stored) and committed == stored
    if isinstance(committed, date):  # datetime, pd.Timestamp, date
        if not isinstance(stored, date):
            return False
        return _ticks(committed) == _ticks(stored)
    if isinstance(committed, str) or isinstance(stored, str):
        return committed == stored
    if pa.types.is_floating(kind):
        back = float(np.float32(stored)) if kind == pa.float32() else float(stored)
        return committed == back or (math.isnan(committed) and math.isnan(back))
    if isinstance(stored, float) and not math.isfinite(stored):
        return False
    if pa.types.is_integer(kind):
        return Decimal(stored) == committed
    with localcontext(prec=100):  # a decimal column: the stored value at the committed scale
        return bool(Decimal(stored).quantize(Decimal(1).scaleb(-kind.scale)) == committed)


EDGES: dict[str, list[Any]] = {
    "int": [0, 1, -1, 127, 128, -129, 255, 256, 2**15, 2**31, 2**32, 2**53 + 1, 2**63 - 1],
    "uint": [0, 1, 255, 256, 65_536, 2**32, 2**53 + 1, 2**64 - 1],
    "float": [0.0, -0.0, 0.1, 1.5, 2.0, 1e16, 3.4e38, 1e300, float("nan"), float("inf"), 0.005, -2.5],
    "decimal": ["0", "1.5", "-2.25", "0.01", "999.99", "0.0001", "123456.5", "1e20", "0.1234567891"],
    "text": ["", "1", "01", "1.5", "2020-01-01", "true", "naïve", "x" * 40],
}


def edge_values(kind: pa.DataType) -> pa.Array:
    """Values of ``kind`` near the edges of other types (overflow, precision, time of day)."""
    if pa.types.is_unsigned_integer(kind) or pa.types.is_signed_integer(kind):
        pool = EDGES["uint"] if pa.types.is_unsigned_integer(kind) else EDGES["int"]
        info = (
            (0, 2**kind.bit_width - 1)
            if pa.types.is_unsigned_integer(kind)
            else (-(2 ** (kind.bit_width - 1)), 2 ** (kind.bit_width - 1) - 1)
        )
        return pa.array([v for v in pool if info[0] <= v <= info[1]] + [None], kind)
    if pa.types.is_floating(kind):
        return pa.array([*EDGES["float"], None], pa.float64()).cast(kind, safe=False)
    if pa.types.is_decimal(kind):
        fits = [
            Decimal(v)
            for v in EDGES["decimal"]
            if -Decimal(v).as_tuple().exponent <= kind.scale  # type: ignore[operator]
            and abs(Decimal(v)) < 10 ** (kind.precision - kind.scale)
        ]
        return pa.array([*fits, None], kind)
    if pa.types.is_date(kind):
        return pa.array([0, 18_262, -1, None], pa.int32()).cast(pa.date32()).cast(kind)
    if pa.types.is_timestamp(kind):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
        seconds = [0, 86_400 * 18_262, 86_400 * 18_262 + 47_105, -1]
        ticks = [s * per_second for s in seconds] + [per_second * 5 + (per_second > 1), None]
        return pa.array(ticks, pa.int64()).cast(kind)
    if pa.types.is_boolean(kind):
        return pa.array([True, False, None])
    return pa.array([*EDGES["text"], None], kind)


@pytest.mark.parametrize(("source", "target"), list(itertools.product(TYPES, TYPES)), ids=str)
def test_every_cast_pair_keeps_values_or_is_refused(source: pa.DataType, target: pa.DataType) -> None:
    values = edge_values(source)
    batch = pa.table({"id": pa.array(range(len(values)), pa.int64()), "x": values})
    table_schema = pa.schema([pa.field("id", pa.int64()), pa.field("x", target)])
    outcome: Reconciled | InvalidInputError
    try:
        outcome = reconcile("t", table_schema, batch, ["id"])
    except InvalidInputError as exc:
        outcome = exc
    if isinstance(outcome, Reconciled):
        assert outcome.schema == table_schema
        assert same(values, outcome.batch.column("x")), outcome.batch.column("x")
    elif not isinstance(outcome, LossyCastError):
        assert f"column 'x' is {target} but the incoming data has {source}" in str(outcome)
    else:
        assert f"column 'x' cannot be cast from {source} to {target} without changing" in str(outcome)
        assert "e.g. row {'id': " in str(outcome)
        try:
            unchecked = values.cast(target, safe=False)
            unchecked.validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return  # Arrow cannot even express some value in the target type
        assert not same(values, unchecked), "refused a cast that changes nothing"


def _family(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return "instant"
    if pa.types.is_temporal(kind):
        return "wall clock"
    return "text" if pa.types.is_string(kind) or pa.types.is_large_string(kind) else "bool"


def friendly_values(kind: pa.DataType) -> pa.Array:
    """Values every type of ``kind``'s family holds exactly (small whole numbers, midnights, text)."""
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pa.array([0, 1, 7, None], pa.int8()).cast(kind)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        midnight = pa.array([18_262 * 86_400, None], pa.int64()).cast(
            pa.timestamp("s", kind.tz if pa.types.is_timestamp(kind) else None)
        )
        return midnight.cast(kind)
    if pa.types.is_boolean(kind):
        return pa.array([True, None])
    return pa.array(["a", None], kind)


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s, t in itertools.product(TYPES, TYPES) if _family(s) == _family(t)],
    ids=str,
)
def test_every_related_pair_accepts_values_both_types_hold(source: pa.DataType, target: pa.DataType) -> None:
    """Refusing everything would pass the matrix above: a cast that changes nothing must go through."""
    values = friendly_values(source)
    batch = pa.table({"id": pa.array(range(len(values)), pa.int64()), "x": values})
    fitted = reconcile("t", pa.schema([("id", pa.int64()), ("x", target)]), batch, ["id"])
    assert fitted.schema.field("x").type == target
    assert same(values, fitted.batch.column("x"))


def test_cast_pairs_that_must_be_accepted_are() -> None:
    """Refusing everything would pass the matrix above: these casts keep every value and must pass."""
    fine = [
        (pa.array([1, -5, None], pa.int8()), pa.int64()),
        (pa.array([1, 2**53], pa.int64()), pa.float64()),
        (pa.array([0.5, 0.1], pa.float32()), pa.float64()),
        (pa.array([1.5, 2.0], pa.float64()), pa.float32()),
        (pa.array([0.1, 2.25, None], pa.float64()), pa.decimal128(10, 2)),
        (pa.array([Decimal("0.10")], pa.decimal128(10, 2)), pa.float64()),
        (pa.array([1, -99_999_999, None], pa.int64()), pa.decimal128(10, 2)),  # Arrow refuses it by type
        (pa.array([7], pa.uint64()), pa.decimal32(3, 1)),
        (pa.array([220.2, 0.29, -1234.57]), pa.decimal128(18, 2)),  # Arrow: 220.20 -> 220.20000000000002
        (pa.array([Decimal("220.20"), Decimal("0.29")], pa.decimal128(18, 2)), pa.float64()),
        (pa.array([Decimal("1.50")], pa.decimal128(10, 2)), pa.decimal128(5, 1)),
        (pa.array([86_400_000_000], pa.int64()).cast(pa.timestamp("us")), pa.date32()),
        (
            pa.array([5_000_000_000], pa.int64()).cast(pa.timestamp("ns", "UTC")),
            pa.timestamp("s", "Asia/Kolkata"),
        ),
        (pa.array([date(2020, 1, 1)], pa.date32()), pa.timestamp("ms")),
        (pa.array(["naïve", None], pa.large_string()), pa.string()),
    ]
    for values, target in fine:
        result = exact_cast(pa.chunked_array([values]), target)
        assert isinstance(result, pa.ChunkedArray), (values.type, target, result)
        assert same(values, result)
    assert exact_cast(pa.chunked_array([[Decimal("220.20")]]), pa.float64()).to_pylist() == [220.2]


@pytest.mark.parametrize(
    ("stored", "incoming", "message"),
    [
        (
            pa.array([date(2020, 1, 1)]),
            pa.array([datetime(2020, 1, 1, 13, 5)]),
            "cast from timestamp[us] to date32[day] without changing 1 value(s), e.g. row {'id': 1}: "
            "2020-01-01 13:05:00 -> 2020-01-01",
        ),
        (
            pa.array([1.0], pa.float32()),
            pa.array([0.1]),
            "cast from double to float without changing 1 value(s), e.g. row {'id': 1}: "
            "0.1 -> 0.10000000149011612",
        ),
        (
            pa.array([Decimal("1.00")], pa.decimal128(10, 2)),
            pa.array([1.004]),
            "cast from double to decimal128(10, 2) without changing 1 value(s), e.g. row {'id': 1}: "
            "1.004 -> 1.00",
        ),
        (
            pa.array([1.0]),
            pa.array([2**53 + 1]),
            "cast from int64 to double without changing 1 value(s), e.g. row {'id': 1}: 9007199254740993 -> "
            "(cannot be represented)",
        ),
        (
            pa.array([1], pa.int8()),
            pa.array([300]),
            "cast from int64 to int8 without changing 1 value(s), e.g. row {'id': 1}: 300 -> (cannot be "
            "represented)",
        ),
    ],
)
def test_the_reported_lossy_casts_are_refused_and_nothing_changes(
    workspace: Workspace, stored: pa.Array, incoming: pa.Array, message: str
) -> None:
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=pa.table({"id": [1], "v": stored}), buckets=2)
    head = tables.resolve("t").id
    with pytest.raises(LossyCastError) as caught:
        tables.commit("t", pa.table({"id": [1], "v": incoming}))
    text = str(caught.value)
    assert text.startswith("table 't': column 'v' ") and message in text, text
    assert "allow_type_change=True" in text and "allow_lossy_cast=True" in text
    assert tables.resolve("t").id == head
    assert tables.checkout("t").column("v").to_pylist() == stored.to_pylist()


def test_allow_lossy_cast_rounds_but_never_overflows_nor_touches_keys(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    data = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "d": pa.array([date(2020, 1, 1)] * 2),
            "m": pa.array([Decimal("1.00")] * 2, pa.decimal128(10, 2)),
            "small": pa.array([1, 2], pa.int8()),
        }
    )
    tables.create("t", key=["id"], data=data, buckets=2)
    lossy = pa.table(
        {"id": [1, 2], "d": [datetime(2020, 1, 2, 23, 59), None], "m": [1.004, 2.5], "small": [3, 4]}
    )
    result = tables.commit("t", lossy, allow_lossy_cast=True)
    assert result.notes["rounded_columns"] == ("d", "m")
    assert tables.checkout("t").sort_by("id").to_pylist() == [
        {"id": 1, "d": date(2020, 1, 2), "m": Decimal("1.00"), "small": 3},
        {"id": 2, "d": None, "m": Decimal("2.50"), "small": 4},
    ]
    head = tables.resolve("t").id
    overflow = lossy.set_column(3, "small", pa.array([3, 300]))
    with pytest.raises(
        LossyCastError, match=r"'small' cannot be cast from int64 to int8 .* row \{'id': 2\}: 300"
    ):
        tables.commit("t", overflow, allow_lossy_cast=True)
    wide_key = lossy.set_column(0, "id", pa.array([1, 2**40]))
    with pytest.raises(LossyCastError, match="key columns keep their type and every value exactly"):
        tables.commit("t", wide_key, allow_lossy_cast=True)
    assert tables.resolve("t").id == head


def test_a_type_change_keeps_existing_values_or_is_refused(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    tables.create("t", key=["id"], data=pa.table({"id": [1, 2], "x": [0.1, 1.5]}), buckets=2)
    tables.commit("t", pa.table({"id": [2], "x": ["many"]}), allow_type_change=True)
    assert tables.checkout("t").sort_by("id").column("x").to_pylist() == ["0.1", "many"]

    tables.create("u", key=["id"], data=pa.table({"id": [1, 2], "x": [1, 2**53 + 1]}), buckets=2)
    head = tables.resolve("u").id
    halves = pa.table({"id": [1], "x": [0.5]})
    with pytest.raises(LossyCastError) as caught:
        tables.commit("u", halves, allow_type_change=True)
    assert str(caught.value) == (
        "table 'u': column 'x' cannot be cast from int64 to double without changing 1 value(s), e.g. "
        "row {'id': 2}: 9007199254740993 -> (cannot be represented); nothing was changed. existing rows keep "
        "their values: pass allow_lossy_cast=True (--allow-lossy-cast) to round them"
    )
    assert tables.resolve("u").id == head
    result = tables.commit("u", halves, allow_type_change=True, allow_lossy_cast=True)
    assert result.retyped_columns == ("x",)
    assert tables.checkout("u").sort_by("id").column("x").to_pylist() == [0.5, 2.0**53]


def test_stored_values_never_change_type_silently() -> None:
    with pytest.raises(LossyCastError, match=r"row \{'id': 2\}: 0.1 -> 0.10000000149011612"):
        conform(
            pa.table({"id": [1, 2], "x": [0.5, 0.1]}),
            pa.schema([("id", pa.int64()), ("x", pa.float32())]),
            key=["id"],
        )
    parquet_types = pa.table({"d": pa.array([0], pa.int32()).cast(pa.date32()), "s": ["a"]})
    wanted = pa.schema([("d", pa.date64()), ("s", pa.large_string())])
    assert conform(parquet_types, wanted).schema == wanted


def timestamp_ticks(kind: pa.DataType) -> st.SearchStrategy[int]:
    limit = {"s": 10**10, "ms": 10**13, "us": 10**16, "ns": 9 * 10**18}[kind.unit]
    return st.integers(-limit, limit)


@st.composite
def typed_values(draw: st.DrawFn, kind: pa.DataType) -> pa.Array:
    """A few values of ``kind``: random ones and edges that other types cannot hold."""
    n = draw(st.integers(1, 4))
    if pa.types.is_integer(kind):
        lo, hi = (
            (0, 2**kind.bit_width - 1)
            if pa.types.is_unsigned_integer(kind)
            else (-(2 ** (kind.bit_width - 1)), 2 ** (kind.bit_width - 1) - 1)
        )
        element: st.SearchStrategy[Any] = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0]))
        return pa.array(draw(st.lists(st.none() | element, min_size=n, max_size=n)), kind)
    if pa.types.is_floating(kind):
        floats = st.floats(width=32 if kind == pa.float32() else 64) | st.sampled_from([0.1, 1.5, 2.0**60])
        return pa.array(draw(st.lists(st.none() | floats, min_size=n, max_size=n)), pa.float64()).cast(
            kind, safe=False
        )
    if pa.types.is_decimal(kind):
        digits = kind.precision - kind.scale
        decimals = st.decimals(-(10**digits) + 1, 10**digits - 1, places=kind.scale, allow_nan=False)
        return pa.array(draw(st.lists(st.none() | decimals, min_size=n, max_size=n)), kind)
    if pa.types.is_date(kind):
        days = draw(st.lists(st.none() | st.integers(-100_000, 100_000), min_size=n, max_size=n))
        return pa.array(days, pa.int32()).cast(pa.date32()).cast(kind)
    if pa.types.is_timestamp(kind):
        return pa.array(
            draw(st.lists(st.none() | timestamp_ticks(kind), min_size=n, max_size=n)), pa.int64()
        ).cast(kind)
    if pa.types.is_boolean(kind):
        return pa.array(draw(st.lists(st.none() | st.booleans(), min_size=n, max_size=n)), kind)
    text = st.text(max_size=8) | st.sampled_from(["01", "1.5", "2020-01-01"])
    return pa.array(draw(st.lists(st.none() | text, min_size=n, max_size=n)), kind)


@st.composite
def cast_cases(draw: st.DrawFn) -> tuple[pa.Array, pa.Array]:
    target = draw(st.sampled_from(TYPES))
    related = [t for t in TYPES if _family(t) == _family(target)]
    source = draw(st.sampled_from(related) | st.sampled_from(TYPES))
    return draw(typed_values(target)), draw(typed_values(source))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cast_cases())
def test_commit_then_checkout_returns_what_was_committed_or_nothing_changes(
    workspace: Workspace, case: tuple[pa.Array, pa.Array]
) -> None:
    stored, incoming = case
    tables = TableStore(workspace)
    name = f"t{len(tables.tables())}"
    tables.create(name, key=["id"], data=pa.table({"id": list(range(len(stored))), "x": stored}), buckets=2)
    head, before = tables.resolve(name).id, tables.checkout(name).sort_by("id")
    batch = pa.table({"id": list(range(len(incoming))), "x": incoming})
    try:
        tables.commit(name, batch, mode="upsert")
    except InvalidInputError:
        assert tables.resolve(name).id == head
        assert tables.checkout(name).sort_by("id").equals(before)
        return
    after = tables.checkout(name).sort_by("id")
    assert same(incoming, after.column("x")[: len(incoming)])
    assert same(stored[len(incoming) :], after.column("x")[len(incoming) :])


def test_naive_and_aware_times_are_never_cast_into_each_other(workspace: Workspace) -> None:
    tables = TableStore(workspace)
    aware = pa.array([datetime(2026, 1, 1, 12, tzinfo=UTC)])
    tables.create("t", key=["id"], data=pa.table({"id": [1], "at": aware}), buckets=2)
    naive = pa.table({"id": [1], "at": pa.array([datetime(2026, 1, 1, 13)])})
    with pytest.raises(InvalidInputError) as caught:
        tables.commit("t", naive)
    assert str(caught.value) == (
        "table 't': column 'at' is timestamp[us, tz=UTC] but the incoming data has timestamp[us]; naive "
        "times (and dates) and time-zone-aware times are not cast into each other, that would guess a zone: "
        "give the incoming times the column's kind (e.g. pd.to_datetime(..., utc=True)), or a type change "
        "rewrites every bucket: pass allow_type_change=True (--allow-type-change)"
    )
    oslo = pa.array([datetime(2026, 1, 1, 13, tzinfo=UTC)]).cast(pa.timestamp("us", "Europe/Oslo"))
    tables.commit("t", pa.table({"id": [1], "at": oslo}))  # an instant in another zone is a cast
    assert tables.checkout("t").column("at").to_pylist() == [datetime(2026, 1, 1, 13, tzinfo=UTC)]
