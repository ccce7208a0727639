"""Schemathesis against the served OpenAPI document, with every check, and hand-written tensor fuzzing.

The first test runs the ``schemathesis`` command line (all its phases: coverage, fuzzing, stateful;
``--checks all``: no 5xx, documented status codes, content types and response schemas, schema-valid
requests accepted, invalid ones refused, 405 with ``Allow`` for other methods, ...) against a server
over a demo-like workspace: model ``toy`` with two versions, ``@champion``, a routing plan with a
shadow, the local admin token. Path parameters are generated, and half the time taken from the
served model so bodies reach its input checks. Generation is deterministic (hypothesis' derandomized
mode), so a failure reproduces.

The second sends Open Inference Protocol bodies close to what the model takes (and JSON or binary
tensor data far from it): each gets a 200 or a 4xx with an error body.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from mlprod.models import Registry
from mlprod.serve import BackgroundServer, RoutePlan, RouteStore, create_app
from mlprod.serve.inference_protocol import DATATYPES, HEADER_LENGTH
from mlprod.serve.local_admin import ensure_local_admin, read_local_admin_token
from mlprod.workspace import Workspace
from tests.conftest import make_frame, train_toy

MAX_EXAMPLES = 20  # per operation and phase: about 1,000 requests, 40 s on a laptop core
INFER_EXAMPLES = 300
SCHEMATHESIS_TIMEOUT_SECONDS = 300

# The body a predict or infer operation takes depends on the model addressed (its fields, tensor
# shapes matching their data), which no static document can say: there a schema-valid body may get a
# 422 naming the field. Everything else, and every other operation, is held to the defaults.
SCHEMATHESIS_CONFIG = """
[dictionaries.models]
values = ["toy"]
[dictionaries.refs]
values = ["toy", "toy@champion"]
[dictionaries.versions]
values = [1, "1", 2]

[parameters]
"path.name" = { dictionary = "models", probability = 0.5 }
"path.ref" = { dictionary = "refs", probability = 0.5 }
"path.version" = { dictionary = "versions", probability = 0.5 }

[[operations]]
include-path-regex = "/(predict|infer)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A loopback server over a demo-like workspace (predictions open, admin by token): URL, admin token."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("MLPROD_"):
                patch.delenv(name)
        with Workspace.init(tmp_path_factory.mktemp("fuzz") / "ws") as workspace:
            registry = Registry(workspace)
            for rounds in (5, 9):
                trained = train_toy(make_frame(500), rounds=rounds)
                registry.register("toy", trained.model, signature=trained.signature)
            registry.set_alias("toy", "champion", 1)
            RouteStore(workspace).set(RoutePlan("toy", shadows=("/2",)), why="fuzzing")
            ensure_local_admin(workspace)
            with BackgroundServer(create_app(workspace, require_auth=False)) as server:
                yield server.url, read_local_admin_token(workspace)


@pytest.fixture(scope="module")
def fuzzed_client(served: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=10) as client:
        yield client


def test_schemathesis_with_every_check_finds_nothing(served: tuple[str, str], tmp_path: Path) -> None:
    url, admin_token = served
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG, encoding="utf-8")
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json",
        "--checks", "all", "--generation-deterministic", "--max-examples", str(MAX_EXAMPLES),
        "--request-timeout", "10", "--header", f"Authorization: Bearer {admin_token}",
        "--report", "ndjson", "--report-dir", str(tmp_path / "report"), "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_SECONDS,
        check=False,
        cwd=tmp_path,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Operations:       19 selected / 19 total" in output, output[-3000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, output[-3000:]
    report = next((tmp_path / "report").glob("*.ndjson"))
    events = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert len(events) > 100  # the run really sent requests


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
