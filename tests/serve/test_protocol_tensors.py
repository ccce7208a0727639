"""The Open Inference Protocol's plain decoding and body templates give exactly the checked path's
result (or step aside), whatever the body."""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlprod.errors import InvalidInputError
from mlprod.serve.protocol_templates import BodyTemplates
from mlprod.serve.protocol_tensors import Tensors, _decode_checked, _decode_plain, decode_inputs, parse_body

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([None, True, False, "a", "\ud800", "x]y", 2**63 - 1, -(2**63), 2**63, 255, 256, -1]),
    st.lists(st.floats(allow_nan=False), max_size=2),
    st.text(max_size=3),
)
SHAPES = st.one_of(
    st.just(None), st.lists(st.sampled_from([0, 1, 2, True, 1.0, -1]), min_size=1, max_size=2), st.just("1")
)
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c", "", 3]),
        "shape": SHAPES,
        "datatype": st.sampled_from(
            ["FP64", "FP32", "INT64", "INT8", "UINT8", "BYTES", "BOOL", "FP128", None]
        ),
        "data": st.one_of(st.lists(VALUES, max_size=3), VALUES),
    },
    optional={"parameters": st.just({})},
)


def _same(plain: Tensors, checked: Tensors) -> bool:
    def values(t: Tensors) -> Any:
        assert not any(isinstance(v, float) and math.isnan(v) for column in t.values for v in column)
        return [[(type(v), v) for v in column] for column in t.values]

    return (list(plain.names), list(plain.datatypes), plain.rows, values(plain)) == (
        list(checked.names),
        list(checked.datatypes),
        checked.rows,
        values(checked),
    )


def _sized(tensor: dict[str, Any]) -> dict[str, Any]:
    """Mostly well-formed: the shape says how many values there are (so the plain path is exercised)."""
    data, shape = tensor["data"], tensor["shape"]
    if isinstance(data, list) and isinstance(shape, list) and not _one_but_not_int(shape):
        return {**tensor, "shape": [len(data)]}
    return tensor


def _one_but_not_int(shape: Any) -> bool:
    """[True] or [1.0]: equal to [1], which the checked path refuses (a dimension is an integer)."""
    return isinstance(shape, list) and len(shape) == 1 and type(shape[0]) in (bool, float) and shape[0] == 1


@settings(max_examples=400, deadline=None)
@given(st.lists(TENSOR.map(_sized), min_size=1, max_size=3), st.booleans())
def test_the_plain_path_gives_the_checked_result_or_steps_aside(
    inputs: list[dict[str, Any]], same_rows: bool
) -> None:
    if same_rows:  # one row each, the usual online request
        inputs = [
            {**t, "shape": t["shape"] if _one_but_not_int(t["shape"]) else [1], "data": [t["data"]]}
            for t in inputs
        ]
    plain = _decode_plain(copy.deepcopy(inputs))
    try:
        checked = _decode_checked(copy.deepcopy(inputs), None)
    except InvalidInputError:
        assert plain is None
        return
    if plain is not None:
        assert _same(plain, checked)


def _one(**changes: Any) -> list[dict[str, Any]]:
    return [
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5], **changes},
        {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["a"]},
    ]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (_one(shape=[True]), "shape must be [n] or [n, 1]"),
        (_one(shape=[1.0]), "shape must be [n] or [n, 1]"),
        (_one(datatype="INT64", data=[True]), "INT64 elements are integers, got True"),
        (_one(data=[False]), "FP64 elements are numbers, got False"),
        (_one(data=[float("inf")]), "inf is not allowed"),
        (_one(datatype="INT8", data=[128]), "128 is outside the INT8 range"),
        (_one(data=[[0.5]]), None),  # nested data is flattened by the checked path
        (_one(name="c"), "input tensor 'c' is given twice"),
        (_one(name=""), "inputs[0].name must be a non-empty string"),
        (_one(datatype=1), "datatype must be one of"),
    ],
)
def test_what_the_checked_path_refuses_or_changes_is_left_to_it(
    inputs: list[dict[str, Any]], message: str | None
) -> None:
    assert _decode_plain(copy.deepcopy(inputs)) is None
    if message is None:
        assert _decode_checked(inputs, None).values[0] == [0.5]
    else:
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            _decode_checked(inputs, None)


def test_the_usual_body_takes_the_plain_path() -> None:
    inputs = [
        {"name": "x", "shape": [2], "datatype": "FP64", "data": [0.5, float("nan")]},
        {"name": "n", "shape": [2], "datatype": "INT64", "data": [3, -(2**63)]},
        {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["a", "é"]},
    ]
    plain = _decode_plain(copy.deepcopy(inputs))
    assert plain is not None and plain.plain
    assert plain.values == [[0.5, None], [3, -(2**63)], ["a", "é"]]
    assert _same(plain, _decode_checked(inputs, None))


def _body(values: list[Any], *, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "FP64", "data": [values[0]]},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [values[1]]},
            {"name": "c", "shape": [1], "datatype": "BYTES", "data": [values[2]]},
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": False}}],
    }
    if request_id is not None:
        body["id"] = request_id
    return json.dumps(body).encode()


def _full(raw: bytes) -> tuple[dict[str, Any], Tensors]:
    body, _ = parse_body(raw, None)
    return body, decode_inputs(body["inputs"], None)


def _learned(raw: bytes, *, warm: bool) -> BodyTemplates:
    """Templates that know ``raw``'s; ``warm``: a body of the same types decoded since (the row path
    then checks only what the types leave open)."""
    templates = BodyTemplates()
    body, tensors = _full(raw)
    templates.learn(raw, body, tensors)
    if warm:
        assert templates.decode(_body([0.75, 3, "c"])) is not None
    return templates


@pytest.mark.parametrize(
    "values",
    [[0.25, 7, "b"], [float("nan"), -3, "a,b"], [1, 2**63 - 1, ""], [1e308, 0, "é \\" + '"']],
)
@pytest.mark.parametrize("warm", [False, True])
def test_a_known_template_decodes_new_data_as_the_full_decode_does(values: list[Any], warm: bool) -> None:
    templates = _learned(_body([0.5, 1, "a"]), warm=warm)
    raw = _body(values)
    known = templates.decode(raw)
    assert known is not None
    template, tensors = known
    body = template.body
    full_body, full = _full(raw)
    assert body == {k: v for k, v in full_body.items() if k != "inputs"}
    assert _same(tensors, full)


@pytest.mark.parametrize(
    "raw",
    [
        _body([0.5, 1, "a"], request_id="r-2"),  # another template: decoded in full
        _body([float("inf"), 1, "a"]),  # refused by the checked path, with its message
        _body([float("-inf"), 1, "a"]),
        _body([0.5, 2**63, "a"]),
        _body([0.5, 1.5, "a"]),
        _body([0.5, None, "a"]),
        _body([0.5, 1, None]),  # null in BYTES: the checked path takes it
        _body([0.5, 1, "x]y"]),  # a bracket in the data: not split the same way
        _body([0.5, 1, "\ud800"]),
        _body([[0.5], 1, "a"]),
        _body([True, 1, "a"]),
        _body(["0.5", 1, "a"]),
        _body([0.5, 1, "a"]).replace(b'"data": [1]', b'"data": [1, 2]'),
        _body([0.5, 1, "a"]).replace(b'"data": [1]', b'"data": []'),
    ],
)
@pytest.mark.parametrize("warm", [False, True])
def test_a_body_that_does_not_fit_its_template_steps_aside(raw: bytes, warm: bool) -> None:
    assert _learned(_body([0.5, 1, "a"]), warm=warm).decode(raw) is None


def test_a_template_is_not_learned_when_the_split_is_not_the_tensors_data() -> None:
    raw = json.dumps(
        {
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]}],
            "parameters": {"note": {"data": [1]}},
        }
    ).encode()
    templates = _learned(raw, warm=False)
    assert templates.decode(raw) is None
