"""Serving on Ray Serve, against one real local Ray instance shared by the module (it is slow to start)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlprod.errors import InvalidInputError, MlprodError, WorkspaceError
from mlprod.models import Registry
from mlprod.serve import BackgroundServer, ServeOptions, create_app, read_prediction_log
from mlprod.serve.ray_backend import RayServeHandle, serve_on_ray
from mlprod.workspace import Workspace
from tests.conftest import make_frame, train_toy

pytest.importorskip("ray.serve")

ROWS = [{"x": 0.3, "c": "a"}, {"x": -2.0, "c": "b"}]


@pytest.fixture(scope="module")
def ray_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with ``toy@champion``; its log is written only when a replica shuts down."""
    root = tmp_path_factory.mktemp("ray") / "ws"
    with Workspace.init(root, environ={}) as ws:
        trained = train_toy(make_frame(), rounds=20)
        registry = Registry(ws)
        version = registry.register("toy", trained.model, signature=trained.signature)
        registry.set_alias("toy", "champion", version.version)
        ws.set_config("prediction_log", "flush_interval_seconds", 3600)
    return root


@pytest.fixture(scope="module")
def ray_was_running() -> bool:
    """Whether another test module left this process connected to Ray (then it is not ours to stop)."""
    return "ray" in sys.modules and bool(sys.modules["ray"].is_initialized())


@pytest.fixture(scope="module")
def ray_served(ray_root: Path, ray_was_running: bool) -> Iterator[RayServeHandle]:
    with pytest.MonkeyPatch.context() as mp:  # Ray's workers inherit the environment of ray.init
        for name in list(os.environ):
            if name.startswith("MLPROD_"):
                mp.delenv(name)
        handle = serve_on_ray(
            ray_root,
            host="127.0.0.1",
            port=0,
            replicas=2,
            app_options={"options": ServeOptions(refresh_seconds=0.2)},
            blocking=False,
        )
        try:
            yield handle
        finally:
            handle.shutdown()


@pytest.fixture
def ray_client(ray_served: RayServeHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ray_served.url, timeout=30) as c:
        yield c


def test_health_and_predictions_match_in_process(ray_root: Path, ray_client: httpx.Client) -> None:
    assert ray_client.get("/v2/health/live").json() == {"live": True}
    assert ray_client.get("/v2/health/ready").json() == {"ready": True}
    response = ray_client.post("/v1/models/toy@champion/predict", json={"rows": ROWS})
    assert response.status_code == 200
    with Workspace.open(ray_root, environ={}) as ws:
        expected = Registry(ws).load("toy@champion").predict_rows(ROWS).tolist()
    body = response.json()
    assert (body["model"], body["version"]) == ("toy", 1)
    assert body["predictions"] == pytest.approx(expected, abs=1e-12)


def test_unknown_model_gets_the_same_404_body_as_the_local_server(
    ray_root: Path, ray_client: httpx.Client
) -> None:
    on_ray = ray_client.post("/v1/models/nope@champion/predict", json={"rows": ROWS})
    with (
        Workspace.open(ray_root, environ={}) as ws,
        BackgroundServer(create_app(ws)) as local,
        httpx.Client(base_url=local.url) as c,
    ):
        on_uvicorn = c.post("/v1/models/nope@champion/predict", json={"rows": ROWS})
    assert on_ray.status_code == on_uvicorn.status_code == 404
    assert on_ray.json() == on_uvicorn.json()
    assert "model 'nope' is not registered" in on_ray.json()["error"]["message"]


def test_two_replicas_are_running(ray_served: RayServeHandle) -> None:
    assert ray_served.replicas == 2
    assert ray_served.replica_states() == {"RUNNING": 2}
    assert ray_served.running_replicas() == 2


def test_promotion_reaches_every_replica_without_restart(ray_root: Path, ray_client: httpx.Client) -> None:
    with Workspace.open(ray_root, environ={}) as ws:
        registry = Registry(ws)
        trained = train_toy(make_frame(seed=1), rounds=3)
        version = registry.register("toy", trained.model, signature=trained.signature).version
        registry.set_alias("toy", "champion", version)
    deadline = time.monotonic() + 20
    recent: list[int] = []
    while time.monotonic() < deadline and recent[-20:] != [version] * 20:
        response = ray_client.post("/v1/models/toy@champion/predict", json={"rows": ROWS})
        assert response.status_code == 200  # no request fails during the switch
        recent.append(response.json()["version"])
    assert recent[-20:] == [version] * 20  # both replicas answer with the new champion


def test_shutdown_flushes_every_replicas_prediction_log(
    ray_root: Path, ray_served: RayServeHandle, ray_client: httpx.Client, ray_was_running: bool
) -> None:
    """Runs last: Ctrl-C stops the module's deployment; each replica's lifespan writes one file on stop."""
    sent = {f"req-{i}" for i in range(40)}
    for request_id in sorted(sent):
        response = ray_client.post("/v1/models/toy@champion/predict", json={"id": request_id, "rows": ROWS})
        assert response.status_code == 200
    with Workspace.open(ray_root, environ={}) as ws:
        log_dir = ws.prediction_log_dir
    assert not list(log_dir.rglob("part-*.parquet"))  # nothing flushed while serving (interval 1 h)

    # Python's Ctrl-C handler, even when pytest started with SIGINT ignored (a background job of a shell)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C, as `mlprod serve` gets
        with pytest.raises(KeyboardInterrupt):
            ray_served.wait()  # shuts down, then re-raises for the CLI to report
    finally:
        signal.signal(signal.SIGINT, previous)

    import ray

    assert ray_served.started_ray is not ray_was_running
    assert ray.is_initialized() is ray_was_running  # stopped if and only if we started it
    assert len(list(log_dir.rglob("part-*.parquet"))) == 2  # both replicas answered and flushed
    logged = read_prediction_log(log_dir).to_pylist()
    assert sent <= {row["request_id"] for row in logged}
    assert {row["model"] for row in logged} == {"toy"}
    with pytest.raises(httpx.TransportError):
        httpx.get(ray_served.url + "/v2/health/live", timeout=5)
    ray_served.shutdown()  # a second call does nothing


# Bad inputs: each fails before Ray is touched, so none of these starts or needs a cluster.


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replicas": 0}, "replicas must be at least 1, got 0"),
        ({"replicas": -3}, "replicas must be at least 1, got -3"),
        ({"cpus_per_replica": -1.0}, "cpus_per_replica must be 0 or more, got -1.0"),
        ({"port": 70000}, "port must be between 0 and 65535, got 70000"),
        ({"address": "nohost"}, "Ray address 'nohost' is not host:port or ray://host:port"),
        ({"address": "ray://h:notaport"}, "is not host:port or ray://host:port"),
        ({"address": "127.0.0.1:1", "port": 0}, "port 0 (any free port) needs a local Ray"),
    ],
)
def test_bad_arguments_are_rejected(workspace: Workspace, options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        serve_on_ray(workspace.root, blocking=False, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_unreachable_cluster_fails_fast(workspace: Workspace, address: str) -> None:
    started = time.monotonic()
    with pytest.raises(MlprodError) as caught:
        serve_on_ray(workspace.root, address=address, blocking=False)
    assert str(caught.value).startswith(f"cannot connect to the Ray cluster at {address!r}: ")
    assert "start one with `ray start --head` or leave out the address" in str(caught.value)
    assert time.monotonic() - started < 10  # Ray alone would retry for minutes


def test_port_in_use_is_a_clear_error(workspace: Workspace) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MlprodError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_on_ray(workspace.root, port=port, blocking=False)


def test_missing_workspace_is_a_workspace_error(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="does not exist"):
        serve_on_ray(tmp_path / "nowhere", blocking=False)


def test_without_ray_installed_says_how_to_install(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is not installed
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(MlprodError, match=r"not installed .*pip install 'mlprod\[ray\]'"):
        serve_on_ray(workspace.root, blocking=False)
