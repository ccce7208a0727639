from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mlprod.data.validation import (
    ColumnExpectation,
    Expectations,
    infer_expectations,
    split,
    validate,
)
from mlprod.errors import InvalidInputError


def _reference() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(10), pa.int64()),
            "dep_delay": pa.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 100.0]),
            "carrier": ["AA", "UA", "DL", "AA", "UA", "DL", "AA", "UA", "DL", "AA"],
            "distance": pa.array([100, 200, 300, 400, 500, 600, 700, 800, 900, 1000], pa.int32()),
            "note": ["x", None, "y", "z", None, "x", "y", "z", "x", "y"],
        }
    )


def _batch(**overrides: pa.Array | list[object]) -> pa.Table:
    """A clean 6-row batch, with some columns replaced."""
    columns: dict[str, pa.Array | list[object]] = {
        "id": pa.array([100, 101, 102, 103, 104, 105], pa.int64()),
        "dep_delay": pa.array([5.0, 15.0, 25.0, 35.0, 45.0, 55.0]),
        "carrier": ["AA", "UA", "DL", "AA", "UA", "DL"],
        "distance": pa.array([150, 250, 350, 450, 550, 650], pa.int32()),
        "note": ["x", None, "y", "z", "x", "y"],
    }
    columns.update(overrides)
    return pa.table(columns)


def _expectations() -> Expectations:
    return infer_expectations(_reference(), ["id"])


def test_infer_learns_types_nullability_ranges_categories_and_row_band() -> None:
    e = _expectations()
    assert e.key == ("id",)
    assert [c.name for c in e.columns] == ["id", "dep_delay", "carrier", "distance", "note"]
    assert e.column("dep_delay") == ColumnExpectation("dep_delay", "double", False, -10.0, 110.0, None)
    assert e.column("distance") == ColumnExpectation("distance", "int32", False, 10.0, 1090.0, None)
    assert e.column("carrier").categories == ("AA", "DL", "UA")
    assert e.column("note").nullable is True
    assert e.column("id") == ColumnExpectation("id", "int64", False)  # no range for keys
    assert (e.min_rows, e.max_rows) == (5, 20)


def test_infer_with_options() -> None:
    e = infer_expectations(_reference(), ["id"], margin=0.0, max_categories=2, row_band=(0.25, 1.01))
    assert (e.column("dep_delay").minimum, e.column("dep_delay").maximum) == (0.0, 100.0)
    assert e.column("carrier").categories is None  # 3 distinct > 2
    assert (e.min_rows, e.max_rows) == (2, 11)


def test_infer_categories_of_booleans_and_dictionaries() -> None:
    table = pa.table(
        {"k": [1, 2, 3], "flag": [True, False, None], "d": pa.array(["p", "q", "p"]).dictionary_encode()}
    )
    e = infer_expectations(table, ["k"])
    assert e.column("flag").categories == ("false", "true")
    assert e.column("d").categories == ("p", "q")
    batch = pa.table({"k": [4, 5], "flag": [True, None], "d": pa.array(["q", "r"]).dictionary_encode()})
    report = validate(batch, e)
    assert [(v.column, v.check, v.count) for v in report.violations] == [("d", "unknown_category", 1)]


def test_to_dict_from_dict_round_trip_through_json() -> None:
    e = _expectations()
    data = json.loads(json.dumps(e.to_dict()))
    assert Expectations.from_dict(data) == e
    assert data["columns"][2]["categories"] == ["AA", "DL", "UA"]


def test_from_dict_rejects_incomplete_data() -> None:
    with pytest.raises(InvalidInputError, match="expected keys key, columns, min_rows, max_rows"):
        Expectations.from_dict({"key": ["id"], "columns": []})


def test_missing_key_column_is_an_error_naming_it() -> None:
    with pytest.raises(InvalidInputError, match=r"key column\(s\) flight missing \(columns: id, dep_delay"):
        infer_expectations(_reference(), ["id", "flight"])


def test_column_lookup_names_unknown_column() -> None:
    with pytest.raises(InvalidInputError, match="no expectation for column 'nope'"):
        _expectations().column("nope")


def test_clean_batch_passes() -> None:
    report = validate(_batch(), _expectations())
    assert report.ok
    assert not report.batch_level
    assert report.num_rows == 6
    assert report.num_bad_rows == 0
    assert report.bad_rows.tolist() == [False] * 6
    assert report.format() == "ok: 6 row(s) passed every check"
    good, bad = split(_batch(), report)
    assert good.equals(_batch())
    assert bad.num_rows == 0
    assert bad.column_names[-1] == "_violations"


def test_extra_columns_are_not_violations() -> None:
    assert validate(_batch().append_column("new", pa.array([1] * 6)), _expectations()).ok


def test_null_in_non_nullable_column() -> None:
    report = validate(_batch(dep_delay=[5.0, None, 25.0, None, 45.0, 55.0]), _expectations())
    (violation,) = report.violations
    assert (violation.column, violation.check, violation.count) == ("dep_delay", "null", 2)
    assert violation.examples == ({"id": 101, "dep_delay": None}, {"id": 103, "dep_delay": None})
    assert violation.detail == "2 null values, expected none"
    assert report.bad_rows.tolist() == [False, True, False, True, False, False]


def test_nulls_allowed_in_nullable_column() -> None:
    assert validate(_batch(note=[None] * 6), _expectations()).ok  # type null fits a nullable string


def test_column_of_nulls_only_in_non_nullable_column() -> None:
    report = validate(_batch(distance=[None] * 6), _expectations())
    assert [(v.column, v.check, v.count) for v in report.violations] == [("distance", "null", 6)]
    assert report.bad_rows.all()


def test_below_and_above_range() -> None:
    report = validate(_batch(dep_delay=[-15.2, -30.0, 25.0, 500.0, 45.0, 55.0]), _expectations())
    below, above = report.violations
    assert (below.check, below.count) == ("below_minimum", 2)
    assert below.detail == "2 values below -10.0 (smallest -30.0)"
    assert below.examples == ({"id": 100, "dep_delay": -15.2}, {"id": 101, "dep_delay": -30.0})
    assert (above.check, above.count) == ("above_maximum", 1)
    assert above.detail == "1 value above 110.0 (largest 500.0)"
    assert above.examples == ({"id": 103, "dep_delay": 500.0},)
    assert report.bad_rows.tolist() == [True, True, False, True, False, False]
    assert report.num_bad_rows == 3
    assert not report.batch_level


def test_unknown_category() -> None:
    report = validate(_batch(carrier=["AA", "ZZ", "DL", "QQ", "ZZ", "UA"]), _expectations())
    (violation,) = report.violations
    assert (violation.column, violation.check, violation.count) == ("carrier", "unknown_category", 3)
    assert violation.detail == "3 values not among the 3 known ('QQ', 'ZZ')"
    assert [e["carrier"] for e in violation.examples] == ["ZZ", "QQ", "ZZ"]
    assert [e["id"] for e in violation.examples] == [101, 103, 104]
    assert report.bad_rows.tolist() == [False, True, False, True, True, False]


def test_nulls_are_not_unknown_categories() -> None:
    report = validate(_batch(note=[None, "w", None, "x", "y", "z"]), _expectations())
    assert [(v.column, v.check, v.count) for v in report.violations] == [("note", "unknown_category", 1)]
    assert report.violations[0].examples == ({"id": 101, "note": "w"},)


def test_examples_are_capped_at_five() -> None:
    report = validate(_batch(carrier=["ZZ"] * 6), _expectations())
    assert report.violations[0].count == 6
    assert len(report.violations[0].examples) == 5


def test_missing_key_and_duplicate_key() -> None:
    report = validate(_batch(id=[100, None, 102, 100, 102, 102]), _expectations())
    missing, duplicate = report.violations
    assert (missing.column, missing.check, missing.count) == ("id", "missing_key", 1)
    assert missing.examples == ({"id": None},)
    assert (duplicate.column, duplicate.check, duplicate.count) == ("id", "duplicate_key", 5)
    assert duplicate.detail == "2 keys appearing more than once (5 rows)"
    assert [e["id"] for e in duplicate.examples] == [100, 102, 100, 102, 102]
    assert report.bad_rows.tolist() == [True, True, True, True, True, True]


def test_duplicate_composite_key() -> None:
    reference = pa.table({"day": ["d1", "d1", "d2"], "flight": [1, 2, 1], "x": [1, 2, 3]})
    e = infer_expectations(reference, ["day", "flight"])
    batch = pa.table({"day": ["d3", "d3", "d4"], "flight": [7, 7, 7], "x": [1, 2, 3]})
    report = validate(batch, e)
    (violation,) = report.violations
    assert (violation.column, violation.check, violation.count) == ("day,flight", "duplicate_key", 2)
    assert violation.examples == ({"day": "d3", "flight": 7}, {"day": "d3", "flight": 7})
    assert report.bad_rows.tolist() == [True, True, False]


def test_row_count_outside_band_is_batch_level() -> None:
    report = validate(_batch().slice(0, 3), _expectations())
    (violation,) = report.violations
    assert (violation.column, violation.check, violation.count) == ("*", "row_count", 3)
    assert violation.detail == "3 rows, expected 5 to 20"
    assert report.batch_level
    assert report.num_bad_rows == 0


def test_missing_column_is_batch_level() -> None:
    report = validate(_batch().drop_columns(["distance"]), _expectations())
    (violation,) = report.violations
    assert (violation.column, violation.check) == ("distance", "missing_column")
    assert violation.detail == "column missing, expected int32"
    assert report.batch_level
    with pytest.raises(InvalidInputError, match=r"batch as a whole failed \(distance:missing_column\)"):
        split(_batch().drop_columns(["distance"]), report)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("distance", pa.array([15, 25, 35, 45, 55, 65], pa.int8())),
        ("distance", pa.array([150, 250, 350, 450, 550, 650], pa.uint16())),
        ("dep_delay", pa.array([5, 15, 25, 35, 45, 55], pa.int64())),
        ("dep_delay", pa.array([5.0, 15.0, 25.0, 35.0, 45.0, 55.0], pa.float32())),
    ],
)
def test_types_whose_values_fit_the_expected_type(column: str, values: pa.Array) -> None:
    report = validate(_batch(**{column: values}), _expectations())
    assert report.ok, report.format()


@pytest.mark.parametrize(
    ("column", "values", "detail"),
    [
        ("distance", ["150", "250", "350", "450", "550", "650"], "type string, expected int32"),
        ("distance", pa.array([150, 250, 350, 450, 550, 650], pa.int64()), "type int64, expected int32"),
        ("distance", pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), "type double, expected int32"),
        ("distance", pa.array([150, 250, 350, 450, 550, 650], pa.uint32()), "type uint32, expected int32"),
        ("dep_delay", ["5"] * 6, "type string, expected double"),
        ("id", ["100", "101", "102", "103", "104", "105"], "type string, expected int64"),
    ],
)
def test_narrowing_and_other_types_are_refused(column: str, values: object, detail: str) -> None:
    report = validate(_batch(**{column: values}), _expectations())
    (violation,) = report.violations
    assert (violation.column, violation.check, violation.count, violation.detail) == (
        column,
        "type",
        6,
        detail,
    )
    assert violation.examples == ()
    assert report.batch_level


def test_widened_values_are_still_range_checked() -> None:
    report = validate(_batch(dep_delay=pa.array([5, 15, 25, 35, 45, 555], pa.int64())), _expectations())
    assert [(v.check, v.count) for v in report.violations] == [("above_maximum", 1)]


def test_split_puts_exactly_the_planted_rows_in_bad() -> None:
    batch = _batch(
        id=[100, 101, 102, 103, 103, 105],
        dep_delay=[5.0, 500.0, 25.0, 35.0, 45.0, None],
        carrier=["AA", "ZZ", "DL", "AA", "UA", "DL"],
    )
    report = validate(batch, _expectations())
    good, bad = split(batch, report)
    assert good.column("id").to_pylist() == [100, 102]
    assert good.column_names == batch.column_names
    assert bad.column("id").to_pylist() == [101, 103, 103, 105]
    assert bad.column("_violations").to_pylist() == [
        "dep_delay:above_maximum;carrier:unknown_category",
        "id:duplicate_key",
        "id:duplicate_key",
        "dep_delay:null",
    ]
    assert bad.drop_columns(["_violations"]).equals(batch.take([1, 3, 4, 5]))
    assert report.format().splitlines() == [
        "4 violation(s) in 6 row(s), 4 bad row(s):",
        "  dep_delay  null  1  1 null value, expected none",
        "  dep_delay  above_maximum  1  1 value above 110.0 (largest 500.0)",
        "  carrier  unknown_category  1  1 value not among the 3 known ('ZZ')",
        "  id  duplicate_key  2  1 key appearing more than once (2 rows)",
    ]


def test_split_refuses_another_batch() -> None:
    report = validate(_batch(), _expectations())
    with pytest.raises(InvalidInputError, match="the batch has 3 rows but the report was made for 6"):
        split(_batch().slice(0, 3), report)


def test_report_to_dict_is_json_serialisable() -> None:
    report = validate(_batch(carrier=["AA", "ZZ", "DL", "AA", "UA", "DL"]), _expectations())
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False
    assert data["batch_level"] is False
    assert data["num_bad_rows"] == 1
    assert data["violations"] == [
        {
            "column": "carrier",
            "check": "unknown_category",
            "count": 1,
            "examples": [{"id": 101, "carrier": "ZZ"}],
            "detail": "1 value not among the 3 known ('ZZ')",
        }
    ]


def test_validation_is_vectorised_on_a_million_rows() -> None:
    rows = 1_000_000
    rng = np.random.default_rng(0)
    reference = pa.table(
        {"id": np.arange(rows), "x": rng.normal(size=rows), "c": rng.choice(["a", "b"], rows)}
    )
    e = infer_expectations(reference, ["id"])
    batch = pa.table(
        {"id": np.arange(rows), "x": rng.normal(size=rows) * 3, "c": rng.choice(["a", "z"], rows)}
    )
    report = validate(batch, e)
    assert {v.check for v in report.violations} == {"below_minimum", "above_maximum", "unknown_category"}
    good, bad = split(batch, report)
    assert good.num_rows + bad.num_rows == rows
    assert bad.num_rows == report.num_bad_rows
