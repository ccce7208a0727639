"""The Open Inference Protocol (KServe v2) REST API, spoken by a real client (tritonclient) over HTTP."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

import mlprod
from mlprod.models import ModelVersion, Registry
from mlprod.serve import BackgroundServer, create_app
from mlprod.serve.inference_protocol import HEADER_LENGTH
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace
from tests.conftest import make_frame, train_toy
from tests.serve.admin_client import admin_headers

ROWS = [{"x": 0.3, "c": "a"}, {"x": -2.0, "c": "b"}, {"x": 1.5, "c": "c"}]
COLUMNS = {"x": [r["x"] for r in ROWS], "c": [r["c"] for r in ROWS]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    """One server for the tests that only read: ``toy`` version 1 (``@champion``), no tokens."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MLPROD_"):
                patch.delenv(name)
        with Workspace.init(tmp_path_factory.mktemp("oip") / "ws") as workspace:
            _register_toy(workspace)
            admin_headers(workspace)  # the admin API always needs a token
            with BackgroundServer(create_app(workspace, require_auth=False)) as server:
                yield workspace, server.url


@pytest.fixture
def toy_ws(served: tuple[Workspace, str]) -> Workspace:
    return served[0]


@pytest.fixture
def client(served: tuple[Workspace, str]) -> Iterator[triton.InferenceServerClient]:
    oip = triton.InferenceServerClient(url=served[1].removeprefix("http://"))
    yield oip
    oip.close()


@pytest.fixture
def http(served: tuple[Workspace, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1], timeout=10) as c:
        yield c


def _register_toy(workspace: Workspace) -> None:
    trained = train_toy(make_frame(), rounds=20)
    registry = Registry(workspace)
    registry.register("toy", trained.model, signature=trained.signature)
    registry.set_alias("toy", "champion", 1)


@contextmanager
def _own_server(workspace: Workspace, *, require_auth: bool = False) -> Iterator[str]:
    with BackgroundServer(create_app(workspace, require_auth=require_auth)) as server:
        yield server.url


def _inputs(
    metadata: dict[str, Any], columns: dict[str, list[Any]], *, binary: bool
) -> list[triton.InferInput]:
    """One InferInput per input the model metadata lists, typed as it says."""
    inputs = []
    for spec in metadata["inputs"]:
        values = columns[spec["name"]]
        array = np.array(values, dtype=object if spec["datatype"] == "BYTES" else np.float64)
        tensor = triton.InferInput(spec["name"], [len(values)], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _tensor(name: str, datatype: str, values: list[Any], *, binary: bool = False) -> triton.InferInput:
    array = np.array(values, dtype=object if datatype == "BYTES" else triton_to_np_dtype(datatype))
    tensor = triton.InferInput(name, [len(values)], datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _expected(workspace: Workspace, rows: list[dict[str, Any]]) -> list[float]:
    return Registry(workspace).load("toy/1").predict_rows(rows).tolist()


# -- health and metadata ------------------------------------------------------------------------------


def test_server_is_live_ready_and_describes_itself(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "mlprod",
        "version": mlprod.__version__,
        "extensions": ["binary_tensor_data"],
    }


@pytest.mark.parametrize(
    ("name", "version", "ready"),
    [
        ("toy", "", True),
        ("toy@champion", "", True),
        ("toy", "1", True),
        ("nope", "", False),
        ("toy@staging", "", False),
        ("toy", "7", False),
    ],
)
def test_model_readiness(client: triton.InferenceServerClient, name: str, version: str, ready: bool) -> None:
    assert client.is_model_ready(name, version) is ready


def test_readiness_answers_404_for_an_unknown_model_with_a_protocol_error(http: httpx.Client) -> None:
    assert http.get("/v2/models/toy/ready").json() == {"name": "toy", "ready": True}
    response = http.get("/v2/models/nope/ready")
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' is not registered (models: toy)", "code": "not_found"}
    assert http.get("/v2/models/toy/versions/7/ready").status_code == 404


@pytest.mark.parametrize(("name", "version"), [("toy", ""), ("toy@champion", ""), ("toy", "1")])
def test_model_metadata_describes_the_signature(
    client: triton.InferenceServerClient, name: str, version: str
) -> None:
    assert client.get_model_metadata(name, version) == {
        "name": "toy",
        "versions": ["1"],
        "platform": "mlprod_lightgbm",
        "inputs": [
            {"name": "x", "datatype": "FP64", "shape": [-1]},
            {"name": "c", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
    }


def test_metadata_lists_every_version(workspace: Workspace, registered: ModelVersion, frame: Any) -> None:
    trained = train_toy(frame, rounds=3)
    Registry(workspace).register("toy", trained.model, signature=trained.signature)
    with _own_server(workspace) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v2/models/toy@champion").json()["versions"] == ["1", "2"]
        second = http.get("/v2/models/toy/versions/2").json()
    assert second["inputs"][0] == {"name": "x", "datatype": "FP64", "shape": [-1]}


def test_integral_inputs_are_advertised_as_int64(workspace: Workspace, frame: Any) -> None:
    frame = frame.assign(x=(frame["x"] * 10).round().astype("int64"))
    trained = train_toy(frame, rounds=3)
    Registry(workspace).register("counts", trained.model, signature=trained.signature, alias="champion")
    with _own_server(workspace) as url:
        oip = triton.InferenceServerClient(url=url.removeprefix("http://"))
        metadata = oip.get_model_metadata("counts")
        assert metadata["inputs"][0] == {"name": "x", "datatype": "INT64", "shape": [-1]}
        result = oip.infer("counts", [_tensor("x", "INT64", [3, -20]), _tensor("c", "BYTES", ["a", "b"])])
        expected = (
            Registry(workspace).load("counts/1").predict_rows([{"x": 3, "c": "a"}, {"x": -20, "c": "b"}])
        )
        assert result.as_numpy("probability").tolist() == pytest.approx(expected.tolist(), abs=1e-12)
        with pytest.raises(InferenceServerException) as caught:
            oip.infer("counts", [_tensor("x", "FP64", [3.5]), _tensor("c", "BYTES", ["a"])])
        oip.close()
    assert caught.value.status() == "422"
    assert "field 'x' expects an integer (int64), got 3.5" in caught.value.message()


# -- inference ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("name", "version"), [("toy", ""), ("toy@champion", ""), ("toy", "1")])
def test_infer_matches_in_process_prediction(
    toy_ws: Workspace, client: triton.InferenceServerClient, name: str, version: str, binary: bool
) -> None:
    metadata = client.get_model_metadata(name, version)
    outputs = [triton.InferRequestedOutput("probability", binary_data=binary)]
    result = client.infer(
        name,
        _inputs(metadata, COLUMNS, binary=binary),
        model_version=version,
        outputs=outputs,
        request_id="r-7",
    )
    assert result.as_numpy("probability").tolist() == pytest.approx(_expected(toy_ws, ROWS), abs=1e-12)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("toy", "1", "r-7")
    assert response["outputs"][0]["shape"] == [3]
    assert ("data" in response["outputs"][0]) is not binary


def test_default_client_request_uses_binary_data_both_ways(
    toy_ws: Workspace, client: triton.InferenceServerClient
) -> None:
    """tritonclient's defaults: binary input tensors and, with no outputs named, binary outputs."""
    x = triton.InferInput("x", [3, 1], "FP64")
    x.set_data_from_numpy(np.array([[0.3], [-2.0], [1.5]]))
    c = triton.InferInput("c", [3, 1], "BYTES")
    c.set_data_from_numpy(np.array([["a"], ["b"], ["c"]], dtype=object))
    result = client.infer("toy", [c, x])
    assert result.get_response()["outputs"][0]["parameters"] == {"binary_data_size": 24}
    assert result.as_numpy("probability").tolist() == pytest.approx(_expected(toy_ws, ROWS), abs=1e-12)
    assert result.get_response()["id"]  # a request id is made up when the client gives none


def test_nan_and_null_are_missing_values(toy_ws: Workspace, client: triton.InferenceServerClient) -> None:
    result = client.infer(
        "toy", [_tensor("x", "FP64", [np.nan, 0.3], binary=True), _tensor("c", "BYTES", ["a", "b"])]
    )
    expected = _expected(toy_ws, [{"x": None, "c": "a"}, {"x": 0.3, "c": "b"}])
    assert result.as_numpy("probability").tolist() == pytest.approx(expected, abs=1e-12)


def test_nested_data_null_and_other_numeric_datatypes(toy_ws: Workspace, http: httpx.Client) -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [3, 1], "datatype": "FP32", "data": [[0.5], [None], [2]]},
            {"name": "c", "shape": [3], "datatype": "BYTES", "data": ["a", None, "c"]},
        ],
        "outputs": [{"name": "probability"}],
    }
    response = http.post("/v2/models/toy/infer", json=body)
    assert response.status_code == 200, response.text
    expected = _expected(toy_ws, [{"x": 0.5, "c": "a"}, {"x": None, "c": None}, {"x": 2, "c": "c"}])
    assert response.json()["outputs"][0]["data"] == pytest.approx(expected, abs=1e-12)


def test_zero_rows_answer_an_empty_tensor(http: httpx.Client) -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [0], "datatype": "FP64", "data": []},
            {"name": "c", "shape": [0], "datatype": "BYTES", "data": []},
        ]
    }
    output = http.post("/v2/models/toy/infer", json=body).json()["outputs"][0]
    assert output == {"name": "probability", "datatype": "FP64", "shape": [0], "data": []}


def test_predictions_are_counted_in_the_metrics(workspace: Workspace, registered: ModelVersion) -> None:
    with _own_server(workspace) as url:
        oip = triton.InferenceServerClient(url=url.removeprefix("http://"))
        oip.infer("toy@champion", [_tensor("x", "FP64", [0.1, 0.2]), _tensor("c", "BYTES", ["a", "a"])])
        with pytest.raises(InferenceServerException):
            oip.infer("toy@champion", [_tensor("x", "FP64", [0.1])])
        oip.close()
        text = httpx.get(f"{url}/metrics").text
    requests = [line for line in text.splitlines() if line.startswith("mlprod_requests_total{")]
    assert any('model="toy",version="1"' in line and 'status="200"} 1' in line for line in requests)
    assert any('model="toy"' in line and 'status="422"} 1' in line for line in requests)


# -- errors -------------------------------------------------------------------------------------------

X = _tensor("x", "FP64", [0.3])
C = _tensor("c", "BYTES", ["a"])


@pytest.mark.parametrize(
    ("name", "version", "inputs", "status", "message"),
    [
        ("toy", "", [X], "422", "missing input tensor(s) ['c']: model toy/1 takes ['x', 'c']"),
        ("toy", "", [X, C, _tensor("zz", "FP64", [1.0])], "422", "unknown input tensor(s) ['zz']"),
        (
            "toy",
            "",
            [_tensor("x", "BYTES", ["0.3"]), C],
            "422",
            "tensor 'x' has datatype BYTES, but 'x' is a number",
        ),
        ("toy", "", [X, _tensor("c", "FP64", [1.0])], "422", "'c' is a category: BYTES (strings)"),
        (
            "toy",
            "",
            [X, _tensor("c", "BYTES", ["a", "b"])],
            "422",
            "different numbers of rows: {'x': 1, 'c': 2}",
        ),
        ("toy", "", [X, _tensor("c", "BYTES", ["zz"])], "422", "field 'c': 'zz' is not an allowed category"),
        ("toy", "", [_tensor("x", "FP64", [np.inf], binary=True), C], "422", "inf is not allowed; use NaN"),
        ("toy", "", [_tensor("x", "BOOL", [True]), C], "422", "tensor 'x' has datatype BOOL"),
        ("nope", "", [X, C], "404", "model 'nope' is not registered"),
        ("toy", "7", [X, C], "404", "model 'toy' has no version 7"),
        ("toy@staging", "", [X, C], "404", "model 'toy' has no alias 'staging'"),
        ("toy@champion", "1", [X, C], "422", "without /versions"),
        ("..etc", "", [X, C], "422", "model name '..etc' is not valid"),
    ],
)
def test_errors_reach_the_client_naming_the_tensor(
    client: triton.InferenceServerClient,
    name: str,
    version: str,
    inputs: list[triton.InferInput],
    status: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, inputs, model_version=version)
    assert caught.value.status() == status
    assert message in caught.value.message()


def test_an_unknown_output_is_refused(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("toy", [X, C], outputs=[triton.InferRequestedOutput("label")])
    assert caught.value.message() == "outputs[0]: unknown output 'label'; the model returns 'probability'"


def test_unknown_models_have_no_metadata(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("toy", "9")
    assert (caught.value.status(), caught.value.message()) == ("404", "model 'toy' has no version 9")


def _valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.3]},
            {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        ]
    }
    body.update(changes)
    return body


def _x(**changes: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.3], **changes},
            _valid()["inputs"][1],
        ]
    }


@pytest.mark.parametrize(
    ("path", "content", "message"),
    [
        ("toy", b"[1, 2]", 'request body must be a JSON object {"inputs": [...]}'),
        ("toy", b"{not json", "request body is not valid JSON"),
        ("toy", b"[" * 100_000, "request body is not valid JSON: maximum recursion depth"),
        ("toy", b'{"inputs": ' + b"1" * 5000 + b"}", "request body is not valid JSON: Exceeds the limit"),
        ("toy", {"instances": []}, '"inputs" must be a non-empty list of tensors'),
        ("toy", {"inputs": []}, '"inputs" must be a non-empty list of tensors'),
        ("toy", {"inputs": [3]}, 'inputs[0] must be an object {"name", "shape", "datatype", "data"}'),
        ("toy", {"inputs": [{"shape": [1]}]}, "inputs[0].name must be a non-empty string, got None"),
        ("toy", _x(datatype="FP128"), "input tensor 'x': datatype must be one of ['BOOL', "),
        (
            "toy",
            _x(shape=[1, 2]),
            "input tensor 'x': shape must be [n] or [n, 1] (one value per row), got [1, 2]",
        ),
        ("toy", _x(shape=[-1]), "shape must be [n] or [n, 1]"),
        ("toy", _x(shape=[2]), "input tensor 'x': shape [2] holds 2 value(s) but 1 were given"),
        ("toy", _x(data=0.3), "input tensor 'x': data must be a list, got float"),
        (
            "toy",
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]},
            "input tensor 'x' has no data",
        ),
        ("toy", _x(data=["0.3"]), "input tensor 'x', element 0: FP64 elements are numbers, got '0.3'"),
        ("toy", _x(data=[True]), "FP64 elements are numbers, got True"),
        (
            "toy",
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [Infinity]}]}',
            "inf is not",
        ),
        (
            "toy",
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [NaN]}]}',
            "INT64 elements are integers, got nan; NaN and null (missing values) are only allowed in FP",
        ),
        ("toy", _x(datatype="INT8", data=[300]), "element 0: 300 is outside the INT8 range [-128, 127]"),
        ("toy", _x(datatype="UINT8", data=[-1]), "-1 is outside the UINT8 range [0, 255]"),
        ("toy", _x(datatype="BYTES", data=[1]), "BYTES elements are strings, got 1"),
        ("toy", {"inputs": [_x()["inputs"][0]] * 2}, "input tensor 'x' is given twice"),
        ("toy", _valid(id=7), '"id" must be a string of valid Unicode text, got 7'),
        ("toy", _valid(parameters=[]), '"parameters" must be an object, got list'),
        (
            "toy",
            _valid(parameters={"binary_data_output": "yes"}),
            '"parameters.binary_data_output" must be true',
        ),
        ("toy", _valid(parameters={"as_of": "yesterday"}), '"as_of" is not an ISO-8601 time'),
        ("toy", _valid(outputs={"name": "probability"}), '"outputs" must be a list'),
        (
            "toy",
            {
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}
                ]
            },
            "binary_data_size needs the binary tensor extension: send the Inference-Header-Content-Length",
        ),
        (
            "toy",
            _x(parameters={"binary_data_size": 8}),
            "give either data or parameters.binary_data_size, not both",
        ),
        ("toy/versions/x", _valid(), "model version must be a positive integer, got 'x'"),
        ("toy/versions/0", _valid(), "model version must be a positive integer, got '0'"),
        ("toy/versions/²", _valid(), "model version must be a positive integer, got '²'"),
        ("toy/versions/99999999999999999999", _valid(), "model version must be a positive integer"),
    ],
)
def test_malformed_requests_get_a_422_naming_what_is_wrong(
    http: httpx.Client, path: str, content: bytes | dict[str, Any], message: str
) -> None:
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    response = http.post(f"/v2/models/{path}/infer", content=raw)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == "invalid_input"
    assert message in body["error"]


def test_a_lone_surrogate_id_is_refused_not_dropped_from_the_log(http: httpx.Client) -> None:
    raw = json.dumps(_valid(id="\ud800")).encode()  # valid JSON (an escape), not valid UTF-8 text
    response = http.post("/v2/models/toy/infer", content=raw)
    assert response.status_code == 422
    assert '"id" must be a string of valid Unicode text' in response.json()["error"]


def _binary_request(
    tensors: list[tuple[str, str, bytes]], *, extra: bytes = b"", shift: int = 0
) -> tuple[bytes, dict[str, str]]:
    header = {
        "inputs": [
            {"name": name, "shape": [1], "datatype": datatype, "parameters": {"binary_data_size": len(raw)}}
            for name, datatype, raw in tensors
        ]
    }
    head = json.dumps(header).encode()
    return head + b"".join(raw for *_, raw in tensors) + extra, {HEADER_LENGTH: str(len(head) + shift)}


@pytest.mark.parametrize(
    ("tensors", "extra", "shift", "message"),
    [
        ([("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00a")], b"", 0, None),
        (
            [("x", "FP64", b"\x00" * 7), ("c", "BYTES", b"\x01\x00\x00\x00a")],
            b"",
            0,
            "not a whole number of FP64",
        ),
        ([("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x05\x00\x00\x00a")], b"", 0, "runs past"),
        (
            [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00")],
            b"",
            0,
            "inside a 4-byte length",
        ),
        (
            [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00\xff")],
            b"",
            0,
            "not UTF-8",
        ),
        (
            [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00a")],
            b"xx",
            0,
            "15 bytes of binary tensor data but",
        ),
        (
            [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00a")],
            b"",
            10**6,
            HEADER_LENGTH,
        ),
    ],
)
def test_binary_tensor_data(
    toy_ws: Workspace,
    http: httpx.Client,
    tensors: list[tuple[str, str, bytes]],
    extra: bytes,
    shift: int,
    message: str | None,
) -> None:
    content, headers = _binary_request(tensors, extra=extra, shift=shift)
    response = http.post("/v2/models/toy/infer", content=content, headers=headers)
    if message is None:
        assert response.json()["outputs"][0]["data"] == pytest.approx(_expected(toy_ws, ROWS[:1]), abs=1e-12)
        return
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_binary_sizes_that_do_not_add_up_are_refused(http: httpx.Client) -> None:
    content, headers = _binary_request(
        [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00a")]
    )
    response = http.post("/v2/models/toy/infer", content=content[:-3], headers=headers)
    assert response.status_code == 422
    assert "binary_data_size 5 runs past the end of the body (2 bytes left)" in response.json()["error"]


def test_oversized_body_is_a_413(workspace: Workspace, registered: ModelVersion) -> None:
    workspace.config.serve.max_body_bytes = 1000
    body = {"inputs": [{"name": "x", "shape": [400], "datatype": "FP64", "data": [0.5] * 400}]}
    with _own_server(workspace) as url:
        response = httpx.post(f"{url}/v2/models/toy/infer", json=body)
        chunked = httpx.post(f"{url}/v2/models/toy/infer", content=iter([json.dumps(body).encode()]))
    for answer in (response, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == (
            "request body is larger than the limit of 1000 bytes (config: serve.max_body_bytes)"
        )


# -- tokens -------------------------------------------------------------------------------------------


def test_tokens_are_checked_with_protocol_errors(workspace: Workspace, registered: ModelVersion) -> None:
    store = TokenStore(workspace)
    predict = {"Authorization": f"Bearer {store.create('predictor', ['predict'])[1]}"}
    read = {"Authorization": f"Bearer {store.create('reader', ['read'])[1]}"}
    with _own_server(workspace, require_auth=True) as url:
        oip = triton.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            assert oip.is_server_live()  # health needs no token
            assert not oip.is_model_ready("toy")
            assert oip.is_model_ready("toy", headers=read)
            assert oip.get_server_metadata(headers=read)["name"] == "mlprod"
            assert oip.infer("toy", [X, C], headers=predict).as_numpy("probability").shape == (1,)
            with pytest.raises(InferenceServerException) as anonymous:
                oip.infer("toy", [X, C])
            with pytest.raises(InferenceServerException) as reader:
                oip.infer("toy", [X, C], headers=read)
        finally:
            oip.close()
        unauthorized = httpx.get(f"{url}/v2/models/toy")
    assert anonymous.value.status() == "401"
    assert "requires an API token" in anonymous.value.message()
    assert reader.value.status() == "403"
    assert "predict" in reader.value.message()
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert set(unauthorized.json()) == {"error", "code"}


# -- the OpenAPI document -----------------------------------------------------------------------------


def test_openapi_documents_the_protocol(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in (
        "/v2",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
    ):
        assert "get" in paths[path]
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    request = infer["requestBody"]["content"]["application/json"]["schema"]
    assert request["required"] == ["inputs"]
    assert request["properties"]["inputs"]["items"]["required"] == ["name", "shape", "datatype"]
    assert infer["responses"]["422"]["content"]["application/json"]["schema"]["required"] == ["error"]


# -- 5xx found by fuzzing the native API, fixed in request_body.py and app.py --------------------------


@pytest.mark.parametrize(
    ("method", "path", "content", "message"),
    [
        ("POST", "/v1/models/toy/predict", b"[" * 100_000, "request body is not valid JSON"),
        (
            "POST",
            "/v1/models/toy/predict",
            b'{"rows": ' + b"1" * 5000 + b"}",
            "request body is not valid JSON",
        ),
        ("PUT", "/v1/admin/routes/toy", b"[" * 100_000, "request body is not valid JSON"),
        ("POST", "/v1/models/toy/versions/99999999999999999999/predict", b'{"rows": []}', "positive integer"),
        ("POST", "/v1/models/toy/versions/0/predict", b'{"rows": []}', "must be a positive integer"),
    ],
)
def test_native_api_inputs_that_were_5xx_are_a_422(
    toy_ws: Workspace, http: httpx.Client, method: str, path: str, content: bytes, message: str
) -> None:
    headers = {"content-type": "application/json", **admin_headers(toy_ws)}
    response = http.request(method, path, content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


# -- types a client can follow: an input that may be missing is FP64 (issue 25) -------------------------


def _from_metadata(metadata: dict[str, Any], rows: list[dict[str, Any]], *, binary: bool) -> list[Any]:
    """The request a client builds from the metadata alone: one [n] tensor per listed input, typed as
    listed; a missing value is NaN in an FP64 tensor (None in a BYTES one)."""
    inputs = []
    for spec in metadata["inputs"]:
        name, datatype = spec["name"], spec["datatype"]
        values = [row[name] for row in rows]
        if datatype == "BYTES":
            array = np.array(values, dtype=object)
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=triton_to_np_dtype(datatype))
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_nullable_integral_input_is_fp64_and_a_client_following_it_gets_the_native_answer(
    workspace: Workspace, frame: Any
) -> None:
    """An integer column with missing values in training (pandas' Int64): INT64 could not carry them."""
    counts = (frame["x"] * 10).round().astype("Int64")
    counts[::7] = None
    trained = train_toy(frame.assign(x=counts), rounds=5)
    Registry(workspace).register("holes", trained.model, signature=trained.signature, alias="champion")
    rows = [{"x": None, "c": "a"}, {"x": 12, "c": "b"}, {"x": None, "c": "c"}, {"x": -3, "c": "a"}]
    with _own_server(workspace) as url, httpx.Client(base_url=url) as http:
        native = http.post("/v1/models/holes/predict", json={"rows": rows}).json()["predictions"]
        oip = triton.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            metadata = oip.get_model_metadata("holes")
            answers = [
                oip.infer("holes", _from_metadata(metadata, rows, binary=binary)).as_numpy("probability")
                for binary in (False, True)
            ]
        finally:
            oip.close()
    assert metadata["inputs"][0] == {"name": "x", "datatype": "FP64", "shape": [-1]}
    assert native[0] != native[1]  # the missing value matters to this model
    for answer in answers:
        assert answer.tolist() == native  # exactly, not approximately


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    """The shop model trained on a feature set (its features are in the online store), served."""
    from mlprod.features.catalog import load_catalog, open_online_store
    from mlprod.features.online import materialize
    from mlprod.models import run_training
    from tests.features.workspace_fixture import START, prepare
    from tests.models.test_runs_with_features import spec

    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MLPROD_"):
                patch.delenv(name)
        with Workspace.init(tmp_path_factory.mktemp("shop") / "ws") as workspace:
            prepare(workspace)
            result = run_training(workspace, spec())
            assert result.version is not None
            Registry(workspace).set_alias("shop-orders", "champion", result.version.version)
            at = (START + pd.Timedelta(days=29, hours=12)).to_pydatetime()
            with open_online_store(workspace) as store:
                materialize(
                    store, load_catalog(workspace).feature_set("shop-context"), at=at, workspace=workspace
                )
            with BackgroundServer(create_app(workspace, require_auth=False)) as server:
                yield workspace, server.url


def test_online_features_are_fp64_and_a_client_following_the_metadata_gets_the_native_answer(
    shop: tuple[Workspace, str],
) -> None:
    """The demo's case: features from the online store, null for an entity the store does not know
    (``visits_1d`` is an int64 column in training, so INT64 used to be advertised)."""
    from mlprod.features.catalog import load_catalog, open_online_store
    from mlprod.features.online import FeatureLookup
    from tests.features.workspace_fixture import START

    workspace, url = shop
    at = (START + pd.Timedelta(days=29, hours=12)).to_pydatetime()
    keyed = [{"amount": 12.5, "shop": "b"}, {"amount": 3.0, "shop": "zz"}, {"amount": 40.0, "shop": "a"}]
    with httpx.Client(base_url=url) as http:
        native = http.post(
            "/v1/models/shop-orders/predict", json={"rows": keyed, "as_of": at.isoformat()}
        ).json()
        metadata = http.get("/v2/models/shop-orders").json()
    feature_set = load_catalog(workspace).feature_set("shop-context")
    with open_online_store(workspace) as store:
        lookup = FeatureLookup(store, feature_set)
        rows = [{"amount": r["amount"], **lookup.get({"shop": r["shop"]}, at=at).values} for r in keyed]
    assert native["feature_misses"] == [[], ["signals", "visits"], []]
    assert rows[1]["signal"] is None  # the unknown shop: a missing value the client must send
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "amount": "FP64",
        "signal": "FP64",
        "visits_1d": "FP64",  # an online feature: FP64 although trained as int64
    }
    assert Registry(workspace).get("shop-orders@champion").signature.inputs[2].dtype == "int64"
    oip = triton.InferenceServerClient(url=url.removeprefix("http://"))
    try:
        for binary in (False, True):
            answer = oip.infer("shop-orders", _from_metadata(metadata, rows, binary=binary))
            assert answer.as_numpy("probability").tolist() == native["predictions"]
    finally:
        oip.close()


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/v2/nope", 404, "no route GET /v2/nope"),
        (
            "POST",
            "/v2/models/toy/versions/1/extra/infer",
            404,
            "no route POST /v2/models/toy/versions/1/extra/infer",
        ),
        ("GET", "/v2/models/toy/infer", 405, "Method Not Allowed"),
        ("DELETE", "/v2", 405, "Method Not Allowed"),
    ],
)
def test_unknown_protocol_paths_answer_in_the_protocol_error_shape(
    http: httpx.Client, method: str, path: str, status: int, message: str
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.json() == {"error": message, "code": "http_error"}


def test_native_paths_keep_the_native_error_shape(http: httpx.Client) -> None:
    response = http.get("/v1/nope")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "http_error", "message": "no route GET /v1/nope"}}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])  # -(2**63) - 1 as a float is -(2**63)
def test_int64_inputs_refuse_values_outside_int64_on_both_apis(
    workspace: Workspace, frame: Any, value: int
) -> None:
    trained = train_toy(frame.assign(x=(frame["x"] * 10).round().astype("int64")), rounds=3)
    Registry(workspace).register("counts", trained.model, signature=trained.signature, alias="champion")
    expected = f"field 'x' expects an integer (int64) in [{-(2**63)}, {2**63 - 1}], got {float(value)!r}"
    with _own_server(workspace) as url, httpx.Client(base_url=url) as http:
        native = http.post("/v1/models/counts/predict", json={"rows": [{"x": value, "c": "a"}]})
        edge = http.post("/v1/models/counts/predict", json={"rows": [{"x": 2**63 - 1, "c": "a"}]})
        as_float = http.post(
            "/v2/models/counts/infer",
            json={
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "FP64", "data": [float(value)]},
                    {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                ]
            },
        )
        as_int = http.post(
            "/v2/models/counts/infer",
            json={
                "inputs": [
                    {"name": "x", "shape": [1], "datatype": "INT64", "data": [value]},
                    {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                ]
            },
        )
    assert edge.status_code == 200
    assert native.status_code == 422
    assert (
        native.json()["error"]["message"]
        == f"row 0: field 'x' expects an integer (int64) in [{-(2**63)}, {2**63 - 1}], got {value!r}"
    )
    if float(value) == -(2**63):
        assert as_float.status_code == 200
    else:
        assert as_float.status_code == 422 and expected in as_float.json()["error"]
    assert as_int.status_code == 422
    assert f"element 0: {value} is outside the INT64 range" in as_int.json()["error"]


@pytest.mark.parametrize("path", ["/v2/models/toy/infer", "/v2/models/toy/versions/1/infer"])
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"content-type": "application/json"}, 200),
        ({"content-type": "application/json; charset=utf-8"}, 200),
        ({}, 200),  # tritonclient sends no Content-Type
        ({"content-type": "text/plain"}, 415),  # what a web page can post cross-origin without asking
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"origin": "https://example.com"}, 415),  # an untyped body (a Blob) from a web page
        ({"content-type": "text/plain", "origin": "http://127.0.0.1"}, 415),
    ],
)
def test_infer_bodies_must_be_declared_json(
    toy_ws: Workspace, http: httpx.Client, path: str, headers: dict[str, str], status: int
) -> None:
    response = http.post(path, content=json.dumps(_valid()).encode(), headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["outputs"][0]["data"] == pytest.approx(_expected(toy_ws, ROWS[:1]), abs=1e-12)
        return
    assert response.json() == {  # the protocol's error shape
        "error": "the request body must be JSON sent with 'Content-Type: application/json', got "
        + (f"Content-Type {headers['content-type']!r}" if "content-type" in headers else "no Content-Type"),
        "code": "unsupported_media_type",
    }


def test_binary_bodies_take_any_content_type(toy_ws: Workspace, http: httpx.Client) -> None:
    content, headers = _binary_request(
        [("x", "FP64", struct.pack("<d", 0.3)), ("c", "BYTES", b"\x01\x00\x00\x00a")]
    )
    for content_type in ("application/octet-stream", "text/plain"):  # the custom header needs a preflight
        response = http.post(
            "/v2/models/toy/infer", content=content, headers={**headers, "content-type": content_type}
        )
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == pytest.approx(_expected(toy_ws, ROWS[:1]), abs=1e-12)


def test_a_refused_media_type_is_counted_in_the_metrics(http: httpx.Client) -> None:
    def refused() -> float:
        text = http.get("/metrics").text
        found = [line for line in text.splitlines() if 'status="415"' in line and 'protocol="oip"' in line]
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in found if line.startswith("mlprod_requests_total")
        )

    before = refused()
    http.post(
        "/v2/models/toy/infer", content=json.dumps(_valid()).encode(), headers={"content-type": "text/plain"}
    )
    assert refused() == before + 1
