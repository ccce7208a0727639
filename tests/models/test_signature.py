import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.errors import InvalidInputError
from mlprod.models import InputField, Signature

SIG = Signature(
    inputs=(InputField("distance", "number"), InputField("carrier", "category", ("AA", "B6", "UA")))
)


def test_rows_encode_categories_to_their_index() -> None:
    matrix = SIG.encoder().encode_rows(
        [{"distance": 10, "carrier": "UA"}, {"distance": 2.5, "carrier": "AA"}]
    )
    assert matrix.tolist() == [[10.0, 2.0], [2.5, 0.0]]


LENIENT = dataclasses.replace(SIG, unknown_categories="missing")


def test_unseen_category_is_refused_naming_the_field_by_default() -> None:
    with pytest.raises(
        InvalidInputError, match=r"row 0: field 'carrier': 'ZZ' is not an allowed category \(3 known"
    ):
        SIG.encoder().encode_rows([{"distance": 1, "carrier": "ZZ"}])
    with pytest.raises(InvalidInputError, match=r"column 'carrier' index 1: field 'carrier': 'ZZ'"):
        SIG.encoder().encode_columns({"distance": [1, 2], "carrier": ["AA", "ZZ"]})
    with pytest.raises(
        InvalidInputError,
        match=r"column 'carrier': 2 value\(s\) are not allowed categories, e.g. \['QQ', 'ZZ'\]",
    ):
        SIG.encoder().encode_frame(pd.DataFrame({"distance": [1, 2, 3], "carrier": ["ZZ", "AA", "QQ"]}))


def test_unseen_category_and_null_become_missing_when_the_policy_says_so() -> None:
    matrix = LENIENT.encoder().encode_rows([{"distance": None, "carrier": "ZZ"}])
    assert math.isnan(matrix[0, 0]) and math.isnan(matrix[0, 1])
    assert math.isnan(SIG.encoder(lenient=True).encode_rows([{"distance": 1, "carrier": "ZZ"}])[0, 1])
    assert (
        SIG.encoder().encode_rows([{"distance": 1, "carrier": None}])[0, 1] != 0
    )  # null is missing, not unknown


def test_missing_field_is_named_with_its_row() -> None:
    with pytest.raises(
        InvalidInputError, match=r"row 1: missing field 'carrier' \(expected \['distance', 'carrier'\]\)"
    ):
        SIG.encoder().encode_rows([{"distance": 1, "carrier": "AA"}, {"distance": 1}])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"distance": "far", "carrier": "AA"}, "field 'distance' expects a number, got 'far'"),
        ({"distance": True, "carrier": "AA"}, "field 'distance' expects a number, got True"),
        ({"distance": 1, "carrier": [1]}, r"field 'carrier' expects a category \(string\), got \[1\]"),
    ],
)
def test_wrong_types_are_named(row: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SIG.encoder().encode_rows([row])


def test_rows_must_be_a_list_of_objects() -> None:
    with pytest.raises(InvalidInputError, match="expected a list of rows"):
        SIG.encoder().encode_rows({"distance": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="row 0: expected an object"):
        SIG.encoder().encode_rows([[1, "AA"]])  # type: ignore[list-item]


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="columns have different lengths"):
        SIG.encoder().encode_columns({"distance": [1, 2], "carrier": ["AA"]})


def test_signature_round_trips_through_a_dict() -> None:
    assert Signature.from_dict(SIG.to_dict()) == SIG


def test_infer_collects_sorted_categories_and_checks_columns() -> None:
    frame = pd.DataFrame({"d": [1, 2, 3], "c": ["b", "a", None]})
    sig = Signature.infer(frame, ["d"], ["c"])
    assert sig.inputs[0] == InputField("d", "number", dtype="int64")
    assert sig.inputs[1].categories == ("a", "b")
    with pytest.raises(InvalidInputError, match=r"lacks input column\(s\) \['zz'\]"):
        Signature.infer(frame, ["zz"], [])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32)),
            st.one_of(st.none(), st.sampled_from(["AA", "B6", "UA", "??"])),
        ),
        max_size=30,
    )
)
def test_row_column_and_frame_paths_agree(values: list[tuple[float | None, str | None]]) -> None:
    """Online requests (rows/columns) and batch work (frames) must encode identically."""
    rows = [{"distance": d, "carrier": c} for d, c in values]
    encoder = LENIENT.encoder()
    by_rows = encoder.encode_rows(rows)
    by_columns = encoder.encode_columns(
        {"distance": [d for d, _ in values], "carrier": [c for _, c in values]}
    )
    frame = pd.DataFrame(
        {
            "distance": pd.array([d for d, _ in values], dtype="Float64"),
            "carrier": pd.array([c for _, c in values], dtype="string"),
        }
    )
    by_frame = encoder.encode_frame(frame)
    np.testing.assert_array_equal(by_rows, by_columns)
    np.testing.assert_array_equal(by_rows, by_frame)


def test_integer_inputs_refuse_fractions_on_every_path() -> None:
    sig = Signature(inputs=(InputField("hour", "number", dtype="int64"),))
    encoder = sig.encoder()
    assert encoder.encode_rows([{"hour": 7}, {"hour": 8.0}, {"hour": None}])[:2].tolist() == [[7.0], [8.0]]
    with pytest.raises(InvalidInputError, match=r"row 0: field 'hour' expects an integer \(int64\), got 7.5"):
        encoder.encode_rows([{"hour": 7.5}])
    with pytest.raises(InvalidInputError, match=r"column 'hour' expects integers \(int64\), got fractions"):
        encoder.encode_frame(pd.DataFrame({"hour": [7.0, 7.5]}))


def test_signature_records_the_output_schema() -> None:
    assert SIG.to_dict()["output"] == "probability"
    assert SIG.to_dict()["output_dtype"] == "float64"


def test_infer_records_which_inputs_may_be_missing() -> None:
    frame = pd.DataFrame(
        {
            "plain": [1, 2, 3],
            "holes": [1.0, None, 3.0],
            "nullable": pd.array([1, 2, 3], dtype="Int64"),  # no null here, but a type made for them
            "c": ["a", None, "b"],
            "d": ["a", "b", "b"],
        }
    )
    sig = Signature.infer(frame, ["plain", "holes", "nullable"], ["c", "d"])
    assert {f.name: f.nullable for f in sig.inputs} == {
        "plain": False,
        "holes": True,
        "nullable": True,
        "c": True,
        "d": False,
    }
    assert Signature.from_dict(sig.to_dict()) == sig
    unrecorded = sig.to_dict()
    for item in unrecorded["inputs"]:
        del item["nullable"]
    assert all(f.nullable for f in Signature.from_dict(unrecorded).inputs)  # older signatures: may be


@pytest.mark.parametrize(
    ("dtype", "value", "low", "high"),
    [
        ("int64", 2**63, -(2**63), 2**63 - 1),
        ("int64", -(2**63) - 1, -(2**63), 2**63 - 1),
        ("Int64", 2**63, -(2**63), 2**63 - 1),
        ("int32", 2**31, -(2**31), 2**31 - 1),
        ("uint8", -1, 0, 255),
        ("int64", 1e19, -(2**63), 2**63 - 1),
    ],
)
def test_integer_inputs_refuse_values_outside_their_type(
    dtype: str, value: float, low: int, high: int
) -> None:
    encoder = Signature(inputs=(InputField("n", "number", dtype=dtype),)).encoder()
    message = f"row 0: field 'n' expects an integer ({dtype}) in [{low}, {high}], got {value!r}"
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        encoder.encode_rows([{"n": value}])
    assert encoder.encode_rows([{"n": low}, {"n": high}, {"n": float(high // 2)}]).tolist() == [
        [float(low)],
        [float(high)],
        [float(high // 2)],
    ]
