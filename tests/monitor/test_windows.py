from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from mlprod.errors import InvalidInputError
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


@pytest.mark.parametrize("text", ["fortnight", "0", "-5", "1.5", "٣", ""])
def test_unknown_windows_are_refused_with_the_choices(text: str) -> None:
    with pytest.raises(InvalidInputError, match="hour, day, week, month or a number of rows"):
        Windowing.parse(text)


def test_rows_without_time_are_refused() -> None:
    times = pa.array([datetime(2013, 7, 1, tzinfo=UTC), None], type=pa.timestamp("us", tz="UTC"))
    with pytest.raises(InvalidInputError, match="nulls"):
        Windowing.parse("day").keys(times, 0)
