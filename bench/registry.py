"""Registry at scale: 10,000 versions across 1,000 models, and loading one model native vs ONNX.

Run: ``.venv/bin/python bench/registry.py [--models 1000] [--versions-per-model 10]``.

Prints, side by side in one run: registration rate; list, search and alias-move times against the
100 ms goal; then, for the flights model (LightGBM, 200 trees), load time and single-row predict
p50/p99 in-process for the native format and its ONNX export, with the ONNX/native ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlprod.data import TableStore
from mlprod.demo.flights import load_flights, request_rows, training_spec
from mlprod.models import EstimatorSpec, Registry, build_frame, run_training, train_classifier
from mlprod.workspace import Workspace

GOAL_MS = 100.0


def timed_ms(action: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``action`` in ms over ``repeat`` calls, and its last result."""
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def registry_at_scale(ws: Workspace, models: int, per_model: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    frame = pd.DataFrame(
        {"x": x, "c": rng.choice(["a", "b"], 500), "y": (x + rng.normal(size=500) > 0).astype(int)}
    )
    trained = train_classifier(frame, label="y", numeric=["x"], categorical=["c"],
                               estimator=EstimatorSpec("lightgbm", {"n_estimators": 5}))  # fmt: skip
    registry = Registry(ws)
    started = time.perf_counter()
    for version in range(per_model):
        for m in range(models):
            registry.register(
                f"model-{m:04d}",
                trained.model,
                signature=trained.signature,
                metrics={"validation_auc": float(rng.uniform(0.5, 1.0))},
                tags={"team": f"team-{m % 10}", "version_group": str(version)},
            )
    elapsed = time.perf_counter() - started
    total = models * per_model
    print(f"registered {total:,} versions of {models:,} models in {elapsed:.1f} s ({total / elapsed:,.0f}/s)")

    middle = f"model-{models // 2:04d}"
    print(f"\n{'operation':<48}{'median ms':>10}{'goal ms':>9}{'ratio':>8}{'rows':>7}")
    operations: list[tuple[str, Callable[[], Any]]] = [
        ("list all models (latest, count, aliases)", registry.models),
        ("search name contains 'model-05'", lambda: registry.search(name="model-05")),
        ("search tag team=team-3", lambda: registry.search(tags={"team": "team-3"})),
        ("search metric validation_auc>=0.99", lambda: registry.search(metric="validation_auc>=0.99")),
        (
            "search tag + metric",
            lambda: registry.search(tags={"team": "team-3"}, metric="validation_auc>=0.9"),
        ),
        (
            "search metric >=0.5, no limit (every match)",
            lambda: registry.search(metric="validation_auc>=0.5", limit=10**6),
        ),
        (f"get {middle}/{per_model}", lambda: registry.get(f"{middle}/{per_model}")),
        (f"versions of {middle}", lambda: registry.versions(middle)),
    ]
    for name, action in operations:
        ms, result = timed_ms(action, 20)
        rows = len(result) if isinstance(result, list) else 1
        print(f"{name:<48}{ms:>10.2f}{GOAL_MS:>9.0f}{ms / GOAL_MS:>8.3f}{rows:>7}")
    counter = iter(range(10**9))

    def move_alias() -> Any:
        i = next(counter)
        return registry.set_alias(f"model-{i % models:04d}", "champion", 1 + i % per_model)

    ms, _ = timed_ms(move_alias, 500)
    print(f"{'alias move (set + history)':<48}{ms:>10.2f}{GOAL_MS:>9.0f}{ms / GOAL_MS:>8.3f}{1:>7}")
    ms, _ = timed_ms(lambda: registry.get("model-0001@champion"), 50)
    print(f"{'resolve model-0001@champion':<48}{ms:>10.2f}{GOAL_MS:>9.0f}{ms / GOAL_MS:>8.3f}{1:>7}")


def native_vs_onnx(ws: Workspace, requests: int) -> None:
    spec = training_spec("lightgbm", rounds=200, context=False)
    TableStore(ws).create("flights", key=["flight_id"], data=load_flights(range(1, 7)))
    TableStore(ws).tag("flights", "jan-jun")
    version = run_training(ws, spec).version
    assert version is not None
    registry = Registry(ws)
    export = registry.export(version.ref)
    rows = request_rows(build_frame(spec, load_flights([7])).sample(requests, random_state=1), spec.features)

    print(f"\nflights model (LightGBM, 200 trees), ONNX parity max |diff| {export.parity_max_abs_diff:.1e}")
    print(f"{'format':<16}{'load ms':>10}{'predict p50 ms':>16}{'predict p99 ms':>16}")
    figures = {}
    for fmt in ("lightgbm-text", "onnx"):
        load_ms, model = timed_ms(lambda fmt=fmt: registry.load(version, format=fmt), 10)
        for row in rows[:100]:
            model.predict_rows([row])
        latencies = []
        for row in rows:
            started = time.perf_counter()
            model.predict_rows([row])
            latencies.append((time.perf_counter() - started) * 1000)
        p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
        figures[fmt] = (load_ms, p50, p99)
        print(f"{fmt:<16}{load_ms:>10.2f}{p50:>16.4f}{p99:>16.4f}")
    ratio = [o / n for o, n in zip(figures["onnx"], figures["lightgbm-text"], strict=True)]
    print(f"{'onnx / native':<16}{ratio[0]:>10.2f}{ratio[1]:>16.2f}{ratio[2]:>16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions-per-model", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Workspace.init(tmp) as ws:
        registry_at_scale(ws, args.models, args.versions_per_model)
        native_vs_onnx(ws, args.requests)


if __name__ == "__main__":
    main()
