"""The server on loopback with predictions open: admin still needs a token, a DNS-rebinding request
(``Host: evil.example`` sent to 127.0.0.1) is refused on every route, bodies must be declared JSON,
and a 405 names every method the path serves."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from mlprod.models import ModelVersion
from mlprod.serve import BackgroundServer, RouteStore, create_app
from mlprod.serve.host_check import allowed_host_names
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace
from tests.serve.admin_client import admin_headers

ROW = {"x": 0.3, "c": "a"}
PLAN = {"champion": "@champion", "why": "test"}
ADMIN_CALLS = [
    ("GET", "/v1/admin/routes", None),
    ("GET", "/v1/admin/routes/toy", None),
    ("PUT", "/v1/admin/routes/toy", PLAN),
    ("DELETE", "/v1/admin/routes/toy", None),
    ("GET", "/v1/admin/routes/toy/history", None),
    ("GET", "/v1/admin/loaded", None),
]
EVERY_ROUTE = [
    ("PUT", "/v1/admin/routes/toy", PLAN),
    ("GET", "/v1/admin/routes", None),
    ("POST", "/v1/models/toy/predict", {"rows": [ROW]}),  # the ASGI fast path
    ("POST", "/v1/models/toy/versions/1/predict", {"rows": [ROW]}),
    (
        "POST",
        "/v2/models/toy/infer",
        {
            "inputs": [
                {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.3]},
                {"name": "c", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            ]
        },
    ),
    ("GET", "/v1/models", None),
    ("GET", "/v2/models/toy", None),
    ("GET", "/metrics", None),
    ("GET", "/v2/health/live", None),
    ("GET", "/openapi.json", None),
]


@dataclass
class Served:
    url: str
    port: int
    workspace: Workspace


@pytest.fixture
def served(workspace: Workspace, registered: ModelVersion) -> Iterator[Served]:
    """``mlprod serve``'s default: loopback, ``serve.auth = "auto"`` (predictions need no token)."""
    admin_headers(workspace)  # the local admin token exists before the server reads the tokens
    with BackgroundServer(create_app(workspace)) as server:
        yield Served(server.url, int(urlsplit(server.url).port or 0), workspace)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=10) as c:
        yield c


def call(client: httpx.Client, method: str, path: str, body: object, **headers: str) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_needs_a_token_even_where_predictions_are_open(
    client: httpx.Client, served: Served, method: str, path: str, body: object
) -> None:
    assert client.post("/v1/models/toy/predict", json={"rows": [ROW]}).status_code == 200
    anonymous = call(client, method, path, body)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert "this server requires an API token" in anonymous.json()["error"]["message"]
    _, predictor = TokenStore(served.workspace).create("predictor", ["predict", "read"])
    forbidden = _eventually(
        lambda: call(client, method, path, body, authorization=f"Bearer {predictor}"), 403
    )
    assert "API token 'predictor' lacks the scope 'admin'" in forbidden.json()["error"]["message"]
    assert RouteStore(served.workspace).all() == {}


def test_admin_changes_are_recorded_under_the_tokens_name(client: httpx.Client, served: Served) -> None:
    _, ops = TokenStore(served.workspace).create("ops-alice", ["admin"])
    changed = _eventually(
        lambda: call(client, "PUT", "/v1/admin/routes/toy", PLAN, authorization=f"Bearer {ops}"), 200
    )
    assert changed.json()["who"] == "token:ops-alice"
    assert [c.who for c in RouteStore(served.workspace).history("toy")] == ["token:ops-alice"]
    local = client.delete("/v1/admin/routes/toy", headers=admin_headers(served.workspace))
    assert local.status_code == 200 and local.json()["who"] == "token:local-admin"


def test_putting_the_plan_in_force_again_is_idempotent(client: httpx.Client, served: Served) -> None:
    headers = admin_headers(served.workspace)
    first = client.put("/v1/admin/routes/toy", json=PLAN, headers=headers)
    assert first.status_code == 200, first.text
    again = client.put("/v1/admin/routes/toy", json={**PLAN, "why": "again"}, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert len(RouteStore(served.workspace).history("toy")) == 1


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
def test_a_dns_rebinding_request_is_refused_on_every_route(
    client: httpx.Client, served: Served, method: str, path: str, body: object
) -> None:
    """A page on evil.example, re-resolved to 127.0.0.1, reaches the port with its own name as Host
    (even with the admin token, which such a page cannot have, nothing gets through)."""
    for host in ("evil.example", f"evil.example:{served.port}", f"127.0.0.1.evil.example:{served.port}", ""):
        headers = {"host": host, **admin_headers(served.workspace)}
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 421, response.text
        error = response.json()["error"]
        assert error["code"] == "misdirected_request"
        assert f"the Host header {host!r} names no address of this server" in error["message"]
        assert "it answers to 127.0.0.1, [::1], localhost" in error["message"]
        assert "add that name to serve.allowed_hosts" in error["message"]
    assert RouteStore(served.workspace).all() == {}
    assert client.request(method, path, json=body, headers=admin_headers(served.workspace)).status_code < 300


def test_a_request_without_a_host_header_is_refused(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421 ") and b"the request has no Host header" in answer


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost", "[::1]:{port}", "127.0.0.1"]
)
def test_the_servers_own_names_are_accepted(client: httpx.Client, served: Served, host: str) -> None:
    response = client.get("/v2/health/live", headers={"host": host.format(port=served.port)})
    assert response.status_code == 200, response.text


def test_serve_allowed_hosts_adds_names_and_star_accepts_any(
    workspace: Workspace, registered: ModelVersion
) -> None:
    workspace.set_config("serve", "allowed_hosts", "models.internal, Other.Example")
    with BackgroundServer(create_app(workspace)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/v2/health/live", headers={"host": "models.internal:8000"}).status_code == 200
        assert c.get("/v2/health/live", headers={"host": "other.example"}).status_code == 200
        assert c.get("/v2/health/live", headers={"host": "evil.example"}).status_code == 421
    workspace.set_config("serve", "allowed_hosts", "*")
    with BackgroundServer(create_app(workspace)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/v2/health/live", headers={"host": "evil.example"}).status_code == 200


def test_the_bound_address_is_accepted_and_a_wildcard_bind_accepts_this_machines_names() -> None:
    assert "10.1.2.3" in allowed_host_names("10.1.2.3", "")
    assert "[fd00::1]" in allowed_host_names("fd00::1", "")
    wildcard = allowed_host_names("0.0.0.0", "")
    assert socket.gethostname().lower() in wildcard and "0.0.0.0" not in wildcard
    assert "evil.example" not in wildcard


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [
        ("text/plain", "got Content-Type 'text/plain'"),
        ("text/plain;charset=UTF-8", "got Content-Type 'text/plain;charset=UTF-8'"),
        ("application/x-www-form-urlencoded", "got Content-Type 'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=x", "got Content-Type 'multipart/form-data; boundary=x'"),
        (None, "got no Content-Type"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/admin/routes/toy"),
        ("POST", "/v1/models/toy/predict"),
        ("POST", "/v1/models/toy/versions/1/predict"),
    ],
)
def test_bodies_not_declared_json_are_415_and_change_nothing(
    client: httpx.Client, served: Served, method: str, path: str, content_type: str | None, shown: str
) -> None:
    """A browser sends these cross-origin without a preflight; JSON it would have to ask for first."""
    body = {"champion": "@champion"} if method == "PUT" else {"rows": [ROW]}
    headers = admin_headers(served.workspace)
    if content_type is not None:
        headers["content-type"] = content_type
    response = client.request(method, path, content=json.dumps(body), headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == {
        "code": "unsupported_media_type",
        "message": f"the request body must be JSON sent with 'Content-Type: application/json', {shown}",
    }
    assert RouteStore(served.workspace).all() == {}
    for json_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        sent = client.request(
            method, path, content=json.dumps(body), headers={**headers, "content-type": json_type}
        )
        assert sent.status_code == 200, sent.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/models/toy/predict", "POST"),
        ("PUT", "/v1/models/toy/versions/1/predict", "POST"),
        ("PATCH", "/v1/admin/routes/toy", "DELETE, GET, PUT"),
        ("POST", "/v1/admin/routes", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("GET", "/v2/models/toy/infer", "POST"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    client: httpx.Client, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allow
    body = response.json()  # the Open Inference Protocol's error shape under /v2
    assert (body["code"] if path.startswith("/v2/") else body["error"]["code"]) == "http_error"


def _eventually(send: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """Send until the answer has ``status``: a new token is seen within the server's refresh interval."""
    deadline = time.monotonic() + 10
    while True:
        response = send()
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.05)
