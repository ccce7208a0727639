"""Single-row prediction latency: in-process vs over HTTP through ``mlprod serve``, side by side.

Run: ``.venv/bin/python bench/serve_latency.py [--requests N]``. Trains the demo model on the
flights data in a temporary workspace, then times the same rows both ways in one run and prints
p50/p99 and their ratio (the cost of the HTTP layer).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import httpx
import numpy as np

from mlprod.data import TableStore
from mlprod.demo.flights import load_flights, request_rows, training_spec
from mlprod.models import Registry, build_frame, run_training
from mlprod.serve import BackgroundServer, create_app
from mlprod.workspace import Workspace


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples_ms, 50)), float(np.percentile(samples_ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, Workspace.init(tmp) as ws:
        spec = training_spec("lightgbm", rounds=200, context=False)
        TableStore(ws).create("flights", key=["flight_id"], data=load_flights(range(1, 7)))
        TableStore(ws).tag("flights", "jan-jun")
        version = run_training(ws, spec).version
        assert version is not None
        registry = Registry(ws)
        registry.set_alias(spec.model, "champion", version.version)
        rows = request_rows(
            build_frame(spec, load_flights([7])).sample(args.requests, random_state=1), spec.features
        )

        model = registry.load(f"{spec.model}@champion")
        in_process = []
        for row in rows:
            started = time.perf_counter()
            model.predict_rows([row])
            in_process.append((time.perf_counter() - started) * 1000)

        over_http = []
        with BackgroundServer(create_app(ws)) as server, httpx.Client(base_url=server.url) as client:
            for row in rows[:50]:  # warm-up: connection, model load
                client.post(f"/v1/models/{spec.model}@champion/predict", json={"rows": [row]})
            for row in rows:
                started = time.perf_counter()
                client.post(f"/v1/models/{spec.model}@champion/predict", json={"rows": [row]})
                over_http.append((time.perf_counter() - started) * 1000)

    ip50, ip99 = percentiles(in_process)
    hp50, hp99 = percentiles(over_http)
    trees = spec.estimator.params["n_estimators"]
    print(f"single-row predict, {args.requests} requests, LightGBM {trees} trees")
    print(f"{'path':<28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'in-process (numpy)':<28}{ip50:>10.3f}{ip99:>10.3f}")
    print(f"{'HTTP (uvicorn + httpx)':<28}{hp50:>10.3f}{hp99:>10.3f}")
    print(f"{'ratio HTTP / in-process':<28}{hp50 / ip50:>10.1f}{hp99 / ip99:>10.1f}")


if __name__ == "__main__":
    main()
