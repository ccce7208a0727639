"""The demo's rollout: serve the champion with a canary and a shadow, send July traffic, count by route.

The routing plan is set through the running server's admin API (and so recorded in the routing
history): ``@champion`` answers, the runner-up takes a sticky 10 % by aircraft (``tailnum``), and a
third candidate watches every request as a shadow. Each answer is checked against an in-process
prediction of the version that gave it; the prediction log shows the shadow's copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlprod.errors import MlprodError
from mlprod.models import Registry
from mlprod.serve import BackgroundServer, create_app, read_prediction_log
from mlprod.serve.local_admin import ensure_local_admin, read_local_admin_token
from mlprod.workspace import Workspace

CANARY_PERCENT = 10.0
STICKY_KEY = "tailnum"


@dataclass(frozen=True)
class RouteTraffic:
    """What one route answered (or, for the shadow, mirrored)."""

    route: str
    version: int
    requests: int
    latency_p50_ms: float
    latency_p99_ms: float


@dataclass(frozen=True)
class Rollout:
    url: str
    plan_revision: int
    routes: list[RouteTraffic]
    failed: int
    logged: int
    max_served_difference: float

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.routes if r.route != "shadow")


def serve_with_canary(
    workspace: Workspace,
    rows: Sequence[Mapping[str, Any]],
    *,
    model: str,
    canary: int,
    shadow: int,
    run_id: str,
    console: Console,
) -> Rollout:
    """Serve ``model`` (``@champion`` + canary + shadow) on a loopback port and send one request per row."""
    registry = Registry(workspace)
    latencies: dict[tuple[str, int], list[float]] = {}
    answers: list[tuple[int, int, float]] = []  # row, version, prediction
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    ensure_local_admin(workspace)  # before the server starts: it reads the tokens then
    admin = {"Authorization": f"Bearer {read_local_admin_token(workspace)}"}
    with (
        BackgroundServer(create_app(workspace)) as server,
        httpx.Client(base_url=server.url, timeout=10.0) as client,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        plan = {
            "champion": "@champion",
            "canary": f"/{canary}",
            "canary_percent": CANARY_PERCENT,
            "shadows": [f"/{shadow}"],
            "sticky_key": STICKY_KEY,
            "why": "mlprod demo: canary the runner-up, shadow a third candidate",
        }
        change = client.put(f"/v1/admin/routes/{model}", json=plan, headers=admin)
        if change.status_code != 200:
            raise MlprodError(f"cannot set the routing plan: {change.status_code} {change.text}")
        console.print(f"  serving on {server.url}; routing revision {change.json()['revision']}")
        task = progress.add_task(f"Sending {len(rows)} July flights to {model}", total=len(rows))
        for i, row in enumerate(rows):
            response = client.post(
                f"/v1/models/{model}/predict", json={"id": f"demo-{run_id}-{i}", "rows": [row]}
            )
            if response.status_code == 200:
                body = response.json()
                key = (body["route"], body["version"])
                latencies.setdefault(key, []).append(response.elapsed.total_seconds() * 1000)
                answers.append((i, body["version"], body["predictions"][0]))
            else:
                failed += 1
                last_error = f"{response.status_code} {response.text}"
            progress.advance(task)
    if failed == len(rows) and rows:
        raise MlprodError(f"every demo request failed; last answer: {last_error}")
    log = read_prediction_log(workspace.prediction_log_dir).to_pandas()
    log = log[log["request_id"].str.startswith(f"demo-{run_id}-")]
    order = {"champion": 0, "canary": 1}
    routes = [
        _traffic(route, version, samples)
        for (route, version), samples in sorted(latencies.items(), key=lambda kv: order.get(kv[0][0], 2))
    ]
    shadow_rows = log[log["route"] == "shadow"]
    if len(shadow_rows):
        routes.append(_traffic("shadow", shadow, shadow_rows["latency_ms"].tolist()))
    return Rollout(
        server.url,
        int(change.json()["revision"]),
        routes,
        failed,
        len(log),
        _max_difference(registry, model, rows, answers),
    )


def _traffic(route: str, version: int, latencies_ms: list[float]) -> RouteTraffic:
    return RouteTraffic(
        route,
        version,
        len(latencies_ms),
        float(np.percentile(latencies_ms, 50)),
        float(np.percentile(latencies_ms, 99)),
    )


def _max_difference(
    registry: Registry,
    model: str,
    rows: Sequence[Mapping[str, Any]],
    answers: list[tuple[int, int, float]],
) -> float:
    """Largest gap between a served answer and the in-process prediction of the version that gave it."""
    frame = pd.DataFrame(answers, columns=["row", "version", "served"])
    worst = 0.0
    for version, group in frame.groupby("version"):
        registered = registry.get(f"{model}/{version}")
        exported = any(e.format == "onnx" for e in registry.exports(registered.ref))
        loaded = registry.load(registered, format="onnx" if exported else None)  # as the server does
        expected = loaded.predict_rows([rows[i] for i in group["row"]])
        worst = max(worst, float(np.max(np.abs(expected - group["served"].to_numpy()), initial=0.0)))
    return worst
