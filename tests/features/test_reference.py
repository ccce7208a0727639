"""Hand-computed examples that check the brute-force reference itself (no mlprod.features involved)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from tests.features.reference import RefAgg, RefAggView, RefView, reference_training_frame

BASE = pd.Timestamp("2024-01-01 10:00", tz="UTC")


def at(minute: float | None) -> pd.Timestamp | None:
    return None if minute is None else BASE + timedelta(minutes=minute)


def times(minutes: list[float | None]) -> pd.Series:
    return pd.Series([at(m) for m in minutes], dtype="datetime64[us, UTC]")


def entities(users: list[int | None], minutes: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame({"user": pd.Series(users, dtype="Int64"), "event_time": times(minutes)})


def source(
    users: list[int | None], minutes: list[float | None], values: list[Any], **extra: Any
) -> pd.DataFrame:
    frame = pd.DataFrame({"user": pd.Series(users, dtype="Int64"), "ts": times(minutes), "value": values})
    for name, column in extra.items():
        frame[name] = column
    return frame


def view(src: pd.DataFrame, **options: Any) -> RefView:
    return RefView("v", ["user"], src, {"out": "value"}, "ts", **options)


def column(frame: pd.DataFrame, name: str) -> list[Any]:
    return list(frame[name])


def test_ttl_boundary_is_inclusive() -> None:
    src = source([1], [0], ["x"])
    rows = entities([1, 1, 1, 1], [0, 4.5, 5, 5.5])
    out = reference_training_frame(rows, [view(src, ttl=timedelta(minutes=5))])
    assert column(out, "out") == ["x", "x", "x", None]  # ts == t - ttl is kept; 30 s later it expired
    assert column(reference_training_frame(rows, [view(src)]), "out") == ["x"] * 4  # no TTL


def test_ttl_expiry_does_not_fall_back_to_an_older_row() -> None:
    src = source([1, 1], [0, 3], ["old", "new"])
    out = reference_training_frame(entities([1], [10]), [view(src, ttl=timedelta(minutes=5))])
    assert column(out, "out") == [None]  # the winner (ts 3) is expired; ts 0 is even older


def test_created_time_filter_hides_a_late_row_and_returns_the_older_value() -> None:
    src = source([1, 1], [0, 3], ["old", "late"], created=times([0, 10]))
    rows = entities([1, 1, 1], [5, 9, 10])
    filtered = reference_training_frame(rows, [view(src, created="created")])
    assert column(filtered, "out") == ["old", "old", "late"]  # the ts-3 row is known only from minute 10
    feast = reference_training_frame(rows, [view(src, created="created", created_time_filter=False)])
    assert column(feast, "out") == ["late", "late", "late"]  # Feast-compatible: created only breaks ties


def test_late_row_hidden_and_no_older_row_gives_null() -> None:
    src = source([1], [3], ["late"], created=times([10]))
    out = reference_training_frame(entities([1], [5]), [view(src, created="created")])
    assert column(out, "out") == [None]


def test_tie_on_ts_is_broken_by_created() -> None:
    src = source([1, 1], [0, 0], ["first", "second"], created=times([1, 2]))
    rows = entities([1, 1], [1, 5])
    filtered = reference_training_frame(rows, [view(src, created="created")])
    assert column(filtered, "out") == ["first", "second"]  # at minute 1 the created-2 row is not known yet
    feast = reference_training_frame(rows, [view(src, created="created", created_time_filter=False)])
    assert column(feast, "out") == ["second", "second"]


def test_null_created_counts_as_ts() -> None:
    # coalesce(created, ts): a null created at ts 0 beats created -1 minute and loses to created +1 minute.
    src = source(
        [1, 1, 2, 2], [0, 0, 0, 0], ["null", "early", "null", "later"], created=times([None, -1, None, 1])
    )
    out = reference_training_frame(entities([1, 2], [5, 5]), [view(src, created="created")])
    assert column(out, "out") == ["null", "later"]


def test_event_time_equal_to_feature_time_is_a_candidate() -> None:
    src = source([1, 1], [2, 3], ["a", "b"])
    out = reference_training_frame(entities([1, 1, 1], [1.5, 2, 3]), [view(src)])
    assert column(out, "out") == [None, "a", "b"]


def test_null_keys_and_null_times_never_match_and_rows_are_kept() -> None:
    src = source([1, None, 1], [0, 0, None], ["one", "nullkey", "nullts"])
    rows = entities([1, None, 1, 2], [5, 5, None, 5])
    out = reference_training_frame(rows, [view(src)])
    assert column(out, "out") == ["one", None, None, None]
    assert list(out["user"].astype(object).where(out["user"].notna(), None)) == [1, None, 1, 2]


def test_null_value_in_the_winning_row_stays_null() -> None:
    src = source([1, 1], [0, 1], ["older", None])
    out = reference_training_frame(entities([1], [5]), [view(src)])
    assert column(out, "out") == [None]


def test_window_is_open_on_the_left_and_closed_on_the_right() -> None:
    src = source([1, 1, 1], [0, 5, 6], [1, 10, 100])
    agg = RefAggView("a", ["user"], src, "ts", [RefAgg("s", "sum", "value", timedelta(minutes=5))])
    out = reference_training_frame(entities([1, 1, 1, 1], [4, 5, 6, 11]), [agg])
    # t=4: (-1, 4] -> {0}; t=5: (0, 5] -> {5}; t=6: (1, 6] -> {5, 6}; t=11: (6, 11] -> {} -> null
    assert column(out, "s") == [1, 10, 110, None]


def test_count_is_zero_where_mean_is_null() -> None:
    src = source([1, 1, 2], [0, 1, 1], [None, None, 4.0])
    window = timedelta(hours=1)
    aggs = [
        RefAgg("rows", "count", None, window),
        RefAgg("n", "count", "value", window),
        RefAgg("total", "sum", "value", window),
        RefAgg("avg", "mean", "value", window),
        RefAgg("lo", "min", "value", window),
        RefAgg("hi", "max", "value", window),
    ]
    out = reference_training_frame(
        entities([1, 2, 3, None, 2], [5, 5, 5, 5, None]), [RefAggView("a", ["user"], src, "ts", aggs)]
    )
    assert column(out, "rows") == [2, 1, 0, 0, 0]  # count(None) counts rows, null values included
    assert column(out, "n") == [0, 1, 0, 0, 0]
    for name in ["total", "avg", "lo", "hi"]:
        assert column(out, name) == [None, 4.0, None, None, None]


def test_mean_min_max_over_non_null_values() -> None:
    src = source([1, 1, 1, 1], [0, 1, 2, 3], [2, None, 5, 8])
    window = timedelta(minutes=60)
    aggs = [RefAgg(f, f, "value", window) for f in ["count", "sum", "mean", "min", "max"]]
    out = reference_training_frame(entities([1], [3]), [RefAggView("a", ["user"], src, "ts", aggs)])
    assert out.loc[0, ["count", "sum", "mean", "min", "max"]].tolist() == [3, 15, 5.0, 2, 8]


def test_static_view_is_a_left_join_on_the_key() -> None:
    src = pd.DataFrame({"user": pd.Series([1, 2, None], dtype="Int64"), "value": ["one", None, "nullkey"]})
    static = RefView("s", ["user"], src, {"out": "value"}, None)
    out = reference_training_frame(entities([2, 1, 3, None, 1], [0, 100, 0, 0, None]), [static])
    assert column(out, "out") == [None, "one", None, None, "one"]
    duplicated = RefView("s", ["user"], pd.concat([src, src.iloc[[0]]]), {"out": "value"}, None)
    with pytest.raises(ValueError, match="duplicate key"):
        reference_training_frame(entities([1], [0]), [duplicated])


def test_composite_and_renamed_keys() -> None:
    src = pd.DataFrame(
        {
            "user_id": pd.Series([1, 1, 2], dtype="Int64"),
            "shop_id": pd.Series(["a", "b", "a"], dtype="str"),
            "ts": times([0, 0, 0]),
            "value": [10, 20, 30],
        }
    )
    composite = RefView(
        "c", ["user", "shop"], src, {"out": "value"}, "ts", source_keys={"user": "user_id", "shop": "shop_id"}
    )
    rows = pd.DataFrame(
        {
            "user": pd.Series([1, 1, 2, 2, None], dtype="Int64"),
            "shop": pd.Series(["b", "a", "b", None, "a"], dtype="str"),
            "event_time": times([1, 1, 1, 1, 1]),
        }
    )
    assert column(reference_training_frame(rows, [composite]), "out") == [20, 10, None, None, None]


def test_output_keeps_entity_columns_in_order_then_features_and_makes_times_aware() -> None:
    src = source([1], [0], ["x"])
    rows = entities([1, 1], [1, -1])[["event_time", "user"]].assign(extra=["p", "q"])
    naive_rows = rows.assign(event_time=rows["event_time"].dt.tz_localize(None))
    naive_src = src.assign(ts=src["ts"].dt.tz_localize(None))
    out = reference_training_frame(naive_rows, [view(naive_src)])
    assert list(out.columns) == ["event_time", "user", "extra", "out"]
    assert str(out["event_time"].dtype) == "datetime64[us, UTC]"
    assert column(out, "out") == ["x", None]
    pd.testing.assert_frame_equal(out, reference_training_frame(rows, [view(src)]))
    with pytest.raises(ValueError, match="naive"):
        reference_training_frame(rows, [view(naive_src)])


def test_empty_inputs() -> None:
    src = source([1], [0], ["x"])
    out = reference_training_frame(entities([], []), [view(src)])
    assert list(out.columns) == ["user", "event_time", "out"]
    assert len(out) == 0
    empty_source = reference_training_frame(entities([1], [1]), [view(src.iloc[:0])])
    assert column(empty_source, "out") == [None]
