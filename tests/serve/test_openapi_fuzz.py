"""A schemathesis run against the served OpenAPI spec: no request, valid or not, gets a 5xx.

Every operation of ``/openapi.json`` (native predict, Open Inference Protocol, admin, metrics, health)
gets generated requests, schema-conforming (positive) and not (negative), once with generated path
parameters and once addressed to the served model (``toy@champion``, ``toy`` version 1), so bodies
also reach the input checks of a real model rather than stopping at "unknown model". A second,
hand-written strategy sends Open Inference Protocol bodies close to what the model takes (and JSON or
binary tensor data far from it): each gets a 200 or a 4xx ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from mlprod.models import Registry
from mlprod.serve import BackgroundServer, create_app
from mlprod.serve.inference_protocol import DATATYPES, HEADER_LENGTH
from mlprod.workspace import Workspace
from tests.conftest import make_frame, train_toy

MAX_EXAMPLES = 10  # per operation, generation mode and path variant: about 400 requests in all
INFER_EXAMPLES = 300


@pytest.fixture(scope="module")
def fuzzed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server without token checks (so requests reach the handlers) serving ``toy`` version 1."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MLPROD_"):
                patch.delenv(name)
        with Workspace.init(tmp_path_factory.mktemp("fuzz") / "ws") as workspace:
            trained = train_toy(make_frame(500), rounds=5)
            registry = Registry(workspace)
            registry.register("toy", trained.model, signature=trained.signature)
            registry.set_alias("toy", "champion", 1)
            with BackgroundServer(create_app(workspace, require_auth=False)) as server:
                yield server.url


@pytest.fixture(scope="module")
def fuzzed_client(fuzzed_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed_url, timeout=10) as client:
        yield client


def _path_variants(operation: Any) -> list[dict[str, Any]]:
    """Generated path parameters ({}), and the same operation addressed to the served model."""
    names = {p.name for p in operation.path_parameters}
    if not names:
        return [{}]
    real: dict[str, Any] = {"name": "toy@champion", "ref": "toy@champion"}
    if "version" in names:
        real = {"name": "toy", "version": 1}
    return [{}, {key: value for key, value in real.items() if key in names}]


def test_no_request_gets_a_server_error(fuzzed_url: str) -> None:
    api = schemathesis.openapi.from_url(f"{fuzzed_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    session = requests.Session()
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in _path_variants(operation):

                @given(case=operation.as_strategy(mode, path_parameters=fixed or None))
                @settings(
                    max_examples=MAX_EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck),
                )  # fmt: skip
                def call(case: schemathesis.Case) -> None:
                    response = case.call(session=session, timeout=10)
                    try:
                        case.validate_response(response, checks=[not_a_server_error])
                    except AssertionError:
                        failures.append(
                            f"{case.as_curl_command()}\n  -> {response.status_code} {response.text[:300]}"
                        )

                try:
                    call()
                except Unsatisfiable:  # nothing to break in the request (no parameters, no body)
                    assert mode is GenerationMode.NEGATIVE
    assert operations >= 15, f"the served spec lists only {operations} operations"
    assert not failures, f"{len(failures)} request(s) got a 5xx:\n" + "\n".join(failures[:20])


_ELEMENT = st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.text(max_size=4), st.booleans(), st.none())
_DATA = st.recursive(st.lists(_ELEMENT, max_size=4), lambda inner: st.lists(inner, max_size=3), max_leaves=10)
_PARAMETER = st.one_of(st.booleans(), st.integers(-3, 40), st.text(max_size=3), st.none())
_ANY_TENSOR = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["x", "c", "zz", ""]), st.integers()),
        "shape": st.one_of(st.lists(st.integers(-1, 4), max_size=3), st.just("3")),
        "datatype": st.sampled_from([*DATATYPES, "FOO", 3]),
        "data": st.one_of(_DATA, _ELEMENT),
    },
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "other"]), _PARAMETER)},
)
_ANY_BODY = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(_ANY_TENSOR, max_size=3), _ELEMENT)},
    optional={
        "id": st.one_of(st.text(max_size=3), st.integers()),
        "parameters": st.one_of(
            st.dictionaries(st.sampled_from(["binary_data_output", "as_of", "route_key"]), _PARAMETER),
            _ELEMENT,
        ),
        "outputs": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["probability", "p"])},
                    optional={"parameters": st.dictionaries(st.just("binary_data"), _PARAMETER)},
                ),
                max_size=2,
            ),
            _ELEMENT,
        ),
    },
)
_ANY_REQUEST = st.tuples(
    _ANY_BODY, st.one_of(st.none(), st.binary(max_size=40)), st.sampled_from([0, 0, -1, 5])
)


def _mostly(usual: Any, *others: Any) -> Any:
    return st.sampled_from([usual, usual, usual, *others])


@st.composite
def _toy_request(draw: st.DrawFn) -> tuple[dict[str, Any], None, int]:
    """A request close to what ``toy`` takes (``x`` a number, ``c`` a category), often with one thing off."""
    n = draw(st.integers(0, 4))
    numbers = st.one_of(st.floats(), st.integers(-5, 5), st.none())
    x = draw(st.lists(numbers, min_size=n, max_size=n))
    c = draw(st.lists(st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.none()), min_size=n, max_size=n))
    tensors = [
        {"name": "x", "shape": [n], "datatype": draw(_mostly("FP64", "FP32", "INT64", "BYTES")), "data": x},
        {
            "name": "c",
            "shape": draw(_mostly([n], [n, 1], [n + 1], [1, n])),
            "datatype": draw(_mostly("BYTES", "INT8", "FP64")),
            "data": c,
        },
    ]
    tensors = draw(st.permutations(tensors))[: draw(_mostly(2, 1))]
    if draw(st.integers(0, 5)) == 0:
        tensors.append({"name": "zz", "shape": [n], "datatype": "FP64", "data": x})
    body: dict[str, Any] = {"inputs": tensors}
    if draw(st.booleans()):
        body["id"] = draw(st.text(max_size=5))
    if draw(st.booleans()):
        body["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.booleans()):
        body["outputs"] = [
            {"name": draw(_mostly("probability", "p")), "parameters": {"binary_data": draw(st.booleans())}}
        ]
    return body, None, 0


@given(
    path=st.sampled_from(["toy", "toy@champion", "toy/versions/1"]),
    request=st.one_of(_toy_request(), _ANY_REQUEST),
)
@settings(max_examples=INFER_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_random_tensors_for_a_served_model_get_a_clear_4xx_never_a_5xx(
    fuzzed_client: httpx.Client, path: str, request: tuple[dict[str, Any], bytes | None, int]
) -> None:
    body, binary, header_shift = request
    head = json.dumps(body).encode()
    headers = {} if binary is None else {HEADER_LENGTH: str(len(head) + header_shift)}
    response = fuzzed_client.post(f"/v2/models/{path}/infer", content=head + (binary or b""), headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str) and response.json()["error"]
