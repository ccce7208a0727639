"""``mlprod routes`` and ``mlprod serve`` with API tokens, through the real CLI."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlprod.models import ModelVersion, Registry
from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.conftest import train_toy


@pytest.fixture
def ws_two_versions(workspace: Workspace, registered: ModelVersion, frame: pd.DataFrame) -> Path:
    trained = train_toy(frame, rounds=3)
    Registry(workspace).register("toy", trained.model, signature=trained.signature)
    return workspace.root


def test_set_show_history_clear(mlprod: Run, ws_two_versions: Path) -> None:
    assert "no routing plans" in mlprod("routes", "show", cwd=ws_two_versions).stdout
    changed = mlprod(
        "routes", "set", "toy", "--canary", "/2", "--canary-percent", "10", "--shadow", "/1",
        "--sticky-key", "c", "--why", "try v2", cwd=ws_two_versions,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert "toy: routing revision 1" in changed.stdout and '"canary": "/2"' in changed.stdout
    shown = mlprod("routes", "show", "toy", cwd=ws_two_versions).stdout
    assert re.search(r"toy\s+│\s+1\s+│\s+@champion\s+│\s+/2\s+│\s+10\s+│\s+/1\s+│\s+c", shown), shown
    cleared = mlprod("routes", "clear", "toy", "--why", "done", cwd=ws_two_versions)
    assert "routing revision 2: plan removed" in cleared.stdout
    history = mlprod("routes", "history", "toy", cwd=ws_two_versions).stdout
    assert "try v2" in history and "done" in history and "none" in history


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--canary", "/9", "--canary-percent", "5"], "model 'toy' has no version 9"),
        (["--canary", "2"], "must be '@ALIAS' or '/VERSION'"),
        (["--canary-percent", "5"], "no canary target"),
        (["--canary", "/2", "--canary-percent", "101"], "--canary-percent"),
    ],
)
def test_bad_plans_are_refused_and_nothing_is_stored(
    mlprod: Run, ws_two_versions: Path, args: list[str], message: str
) -> None:
    result = mlprod("routes", "set", "toy", *args, cwd=ws_two_versions)
    assert result.returncode == 2 and message in result.stderr + result.stdout
    assert "no routing changes" in mlprod("routes", "history", "toy", cwd=ws_two_versions).stdout


def test_clearing_a_model_without_a_plan(mlprod: Run, ws_two_versions: Path) -> None:
    result = mlprod("routes", "clear", "toy", cwd=ws_two_versions)
    assert result.returncode == 2 and "has no routing plan" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_tokens_checks_scopes(mlprod: Run, ws_two_versions: Path) -> None:
    created = mlprod("tokens", "create", "client", "--scope", "predict", cwd=ws_two_versions)
    reader = mlprod("tokens", "create", "dash", "--scope", "read", cwd=ws_two_versions)
    predict_token = re.search(r"mlp_\S+", created.stdout)
    read_token = re.search(r"mlp_\S+", reader.stdout)
    assert predict_token and read_token, created.stdout + created.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlprod", "serve", "--port", str(port), "--auth", "always"],
        cwd=ws_two_versions, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    body = {"rows": [{"x": 1.0, "c": "a"}]}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/health/live").status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        anonymous = httpx.post(f"{url}/v1/models/toy/predict", json=body)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        as_reader = {"Authorization": f"Bearer {read_token.group()}"}
        forbidden = httpx.post(f"{url}/v1/models/toy/predict", json=body, headers=as_reader)
        assert forbidden.status_code == 403 and "predict" in forbidden.json()["error"]["message"]
        assert httpx.get(f"{url}/metrics", headers=as_reader).status_code == 200
        assert httpx.get(f"{url}/v1/admin/routes", headers=as_reader).status_code == 403
        as_client = {"Authorization": f"Bearer {predict_token.group()}"}
        answered = httpx.post(f"{url}/v1/models/toy/predict", json=body, headers=as_client)
        assert answered.status_code == 200 and answered.json()["version"] == 1  # @champion, not the latest
        wrong = {"Authorization": f"Bearer {predict_token.group()[:-3]}abc"}
        assert httpx.post(f"{url}/v1/models/toy/predict", json=body, headers=wrong).status_code == 401
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200  # probes need no token
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "ray", "--replicas", "0"], "--replicas"),
        (
            ["--backend", "ray", "--ray-address", "127.0.0.1:1", "--port", "8123"],
            "cannot connect to the Ray cluster",
        ),
        (["--replicas", "2"], "--replicas and --ray-address need --backend ray"),
        (["--backend", "k8s"], "--backend"),
    ],
)
def test_serve_backend_options_are_checked(
    mlprod: Run, ws_two_versions: Path, args: list[str], message: str
) -> None:
    result = mlprod("serve", *args, cwd=ws_two_versions, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_model_without_a_plan_serves_its_champion_as_help_and_readme_say(
    mlprod: Run, ws_two_versions: Path, frame: pd.DataFrame
) -> None:
    from mlprod.serve import BackgroundServer, create_app

    with Workspace.open(ws_two_versions) as ws:
        trained = train_toy(frame, rounds=3)
        Registry(ws).register("nochamp", trained.model, signature=trained.signature)
        body = {"rows": [{"x": 0.1, "c": "a"}]}
        with BackgroundServer(create_app(ws, require_auth=False)) as server:
            served = httpx.post(f"{server.url}/v1/models/toy/predict", json=body, timeout=60)
            unpromoted = httpx.post(f"{server.url}/v1/models/nochamp/predict", json=body, timeout=60)
    assert (served.json()["version"], served.json()["route"]) == (1, "champion")  # v2 is the latest
    assert unpromoted.status_code == 404 and "has no alias 'champion'" in unpromoted.text
    shown = mlprod("routes", "show", "toy", cwd=ws_two_versions).stdout
    assert "no routing plan for toy: a bare model name serves toy@champion" in shown
    helped = " ".join(mlprod("routes", "show", "--help", cwd=ws_two_versions).stdout.split())
    assert "A model without one serves NAME@champion to requests for its bare name" in helped
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "a model without a plan serves `@champion` (never merely the latest version" in readme
