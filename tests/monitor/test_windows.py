import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError, WindowSpecError
from mlprod.monitor.windows import Windowing, split

TIMES = pa.array(
    [datetime(2013, 7, 7, 23, 59, tzinfo=UTC), datetime(2013, 7, 8, 0, 0, tzinfo=UTC),
     datetime(2013, 7, 14, 12, tzinfo=UTC), datetime(2013, 12, 31, 23, tzinfo=UTC)],
    type=pa.timestamp("us", tz="UTC"),
)  # fmt: skip


def test_weeks_start_on_monday_utc() -> None:
    weekly = Windowing.parse("week")
    spans = [weekly.span(int(k)) for k in weekly.keys(TIMES, 0)]
    starts = [span[0] for span in spans if span]
    assert starts == [
        datetime(2013, 7, 1, tzinfo=UTC), datetime(2013, 7, 8, tzinfo=UTC), datetime(2013, 7, 8, tzinfo=UTC),
        datetime(2013, 12, 30, tzinfo=UTC),
    ]  # fmt: skip
    assert spans[0] is not None and spans[0][1] == datetime(2013, 7, 8, tzinfo=UTC)


def test_months_end_at_the_next_month_even_in_december() -> None:
    monthly = Windowing.parse("month")
    span = monthly.span(int(monthly.keys(TIMES, 0)[-1]))
    assert span == (datetime(2013, 12, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))


def test_count_windows_continue_across_batches() -> None:
    by_three = Windowing.parse("3")
    whole = by_three.keys(pa.array(range(7)), 0)
    pieces = np.concatenate([by_three.keys(pa.array(range(4)), 0), by_three.keys(pa.array(range(3)), 4)])
    assert whole.tolist() == pieces.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert by_three.span(1) is None


def test_split_keeps_row_order_inside_each_window() -> None:
    table = pa.table({"x": [1, 2, 3, 4, 5]})
    slices = list(split(table, np.array([7, 3, 7, 3, 9])))
    assert [(key, part.column("x").to_pylist()) for key, part in slices] == [
        (3, [2, 4]), (7, [1, 3]), (9, [5])
    ]  # fmt: skip
    assert list(split(table.slice(0, 0), np.array([], dtype=np.int64))) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fortnight", "'fortnight' is not a window; use hour, day, week, month, quarter, year, N or rows:N"),
        ("1.5", "is not a window; use hour"),
        ("", "is not a window; use hour"),
        ("minutes:5", "is not a window; use hour"),
        ("0", "the rows per window must be at least 1, got 0"),
        ("-5", "the rows per window must be at least 1, got -5"),
        ("rows:0", "the rows per window must be at least 1, got 0"),
        ("chunks:-2", "the number of chunks must be at least 1, got -2"),
        ("chunks:x", "'x' is not a whole number (number of chunks)"),
        ("٣", "is not a whole number"),
        ("by:", "by: needs a column name"),
    ],
)
def test_bad_windows_are_refused_with_what_to_write(text: str, message: str) -> None:
    with pytest.raises(WindowSpecError, match=re.escape(message)):
        Windowing.parse(text)


def test_row_windows_are_spelled_two_ways() -> None:
    assert Windowing.parse("rows:250") == Windowing.parse("250") == Windowing("count", rows=250)
    assert Windowing.parse(" Chunks:3 ").chunks == 3
    assert Windowing.parse("by:Batch Id").column == "Batch Id"  # the column keeps its case


def test_quarters_and_years_start_and_end_on_the_calendar() -> None:
    for spec, expected in [
        ("quarter", (datetime(2013, 7, 1, tzinfo=UTC), datetime(2013, 10, 1, tzinfo=UTC))),
        ("year", (datetime(2013, 1, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))),
    ]:
        windowing = Windowing.parse(spec)
        keys = windowing.keys(TIMES, 0)
        assert windowing.span(int(keys[1])) == expected
    last_quarter = Windowing.parse("quarter")
    assert last_quarter.span(int(last_quarter.keys(TIMES, 0)[-1])) == (
        datetime(2013, 10, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC)
    )  # fmt: skip


@pytest.mark.parametrize(("total", "chunks"), [(10, 4), (7, 7), (1000, 3), (5, 8)])
def test_chunks_cut_the_rows_into_equal_parts_across_batches(total: int, chunks: int) -> None:
    windowing = Windowing.parse(f"chunks:{chunks}").resolved(total=total)
    whole = windowing.keys(pa.nulls(total), 0)
    cut = total // 3
    pieces = np.concatenate([windowing.keys(pa.nulls(cut), 0), windowing.keys(pa.nulls(total - cut), cut)])
    assert whole.tolist() == pieces.tolist()
    sizes = np.bincount(whole, minlength=chunks).tolist()
    assert sizes == windowing.sizes() and sum(sizes) == total
    assert max(sizes) - min(sizes) <= 1
    assert windowing.name(0).startswith(f"chunk 1/{chunks} (rows 0-")


def test_chunks_need_the_row_count_first() -> None:
    with pytest.raises(WindowSpecError, match="needs the total row count first"):
        Windowing.parse("chunks:3").keys(pa.nulls(3), 0)
    with pytest.raises(WindowSpecError, match="no rows to cut"):
        Windowing.parse("chunks:3").resolved(total=0)


def test_value_windows_follow_the_sorted_values_nulls_last() -> None:
    windowing = Windowing.parse("by:batch").resolved(values=[3, 1, None, 3, 2])
    keys = windowing.keys_of(pa.table({"batch": pa.array([2, None, 3, 1], pa.int32())}), 0)
    assert keys.tolist() == [1, 3, 2, 0]
    assert [windowing.name(k) for k in range(4)] == ["batch 1", "batch 2", "batch 3", "batch (null)"]
    with pytest.raises(WindowSpecError, match="value '9' was not among"):
        windowing.keys_of(pa.table({"batch": [9]}), 0)
    with pytest.raises(WindowSpecError, match="no column 'batch'"):
        windowing.keys_of(pa.table({"other": [1]}), 0)


def test_value_windows_name_numbers_and_flags_as_arrow_writes_them() -> None:
    floats = Windowing.parse("by:dose").resolved(values=pa.array([2.5, 1.0, 10.0]))
    assert [floats.name(k) for k in range(3)] == ["dose 1", "dose 2.5", "dose 10"]  # sorted as numbers
    assert floats.keys_of(pa.table({"dose": [10.0, 1.0]}), 0).tolist() == [2, 0]
    labels = pa.array(["b", "a", "b"]).dictionary_encode()
    coded = Windowing.parse("by:site").resolved(values=labels)
    assert coded.values == ("a", "b")
    assert coded.keys_of(pa.table({"site": labels}), 0).tolist() == [1, 0, 1]


def test_calendar_windows_without_a_time_column_are_refused() -> None:
    with pytest.raises(WindowSpecError, match="calendar windows need a time column"):
        Windowing.parse("month").keys_of(pa.table({"x": [1]}), 0)


def test_rows_without_time_are_refused() -> None:
    times = pa.array([datetime(2013, 7, 1, tzinfo=UTC), None], type=pa.timestamp("us", tz="UTC"))
    with pytest.raises(InvalidInputError, match="nulls"):
        Windowing.parse("day").keys(times, 0)
