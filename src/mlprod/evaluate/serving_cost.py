"""Serving cost of a registered model version, measured on this machine rather than estimated.

``measure_serving_cost`` loads the version and times what a server does with it:

* latency: ``requests`` single-row requests, one at a time, through the serving path
  (``LoadedModel.predict_rows([row])``: JSON-like row, encoder, native predictor), after ``warmup``
  untimed ones; p50 and p99 of ``time.perf_counter_ns`` per request;
* CPU: process CPU time (``time.process_time``, every thread of this process) over that loop,
  scaled to one million requests, and priced at ``cpu_hour_price`` per CPU hour;
* throughput: ``predict_matrix`` on an already encoded batch of ``batch_rows`` rows (the request rows
  repeated), repeated for at least ``_MIN_BATCH_SECONDS``, with the library's default threading;
* artifact size: the stored artifact's bytes, in MiB;
* memory: the resident memory loading the model and predicting one batch adds, measured in a fresh
  interpreter by ``mlprod.evaluate.load_probe`` (whose docstring says what is and is not charged;
  library imports are not).

The figures depend on the machine and on what else runs on it: compare versions measured on the
same machine in the same conditions. The probe subprocess opens the workspace from its directory
with this process's environment, so a workspace opened with an explicit ``environ`` mapping must
have the same settings in ``os.environ``.

Field names are the flat metric names of reports and leaderboards (``latency_p50_ms``, ...).

Examples:
    >>> cost = ServingCost(runtime="lightgbm-text", latency_p50_ms=0.2, latency_p99_ms=0.5,
    ...     throughput_rows_per_s=1e6, artifact_mb=0.1, memory_mb=2.0,
    ...     cpu_seconds_per_million=180.0, cost_per_million=0.0025, cpu_hour_price=0.05)
    >>> ServingCost.from_dict(cost.to_dict()) == cost
    True
    >>> price_per_million(360.0, 1.0)  # 360 CPU seconds at 1.0 per CPU hour
    0.1
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlprod
from mlprod.errors import InvalidInputError, MlprodError
from mlprod.evaluate.json_numbers import number
from mlprod.lazy import lazy_module
from mlprod.models.registry import ModelVersion, Registry
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

PROBE_TIMEOUT_SECONDS = 120.0
MIN_REQUESTS = 10
_MIN_BATCH_SECONDS = 0.2
_MIN_BATCH_REPEATS = 3
_MAX_BATCH_REPEATS = 1000
_STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class ServingCost:
    """What serving one model version costs on this machine (see the module docstring)."""

    runtime: str
    latency_p50_ms: float
    latency_p99_ms: float
    throughput_rows_per_s: float
    artifact_mb: float
    memory_mb: float
    cpu_seconds_per_million: float
    cost_per_million: float
    cpu_hour_price: float

    def to_dict(self) -> dict[str, float | str]:
        """Field name to value; ``memory_mb`` is NaN when it was not probed."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingCost:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise InvalidInputError(f"serving cost record lacks {missing}; it has {sorted(data)}")
        try:
            numbers = {f.name: number(data[f.name]) for f in fields(cls) if f.name != "runtime"}
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"serving cost record has a non-numeric figure: {exc}") from exc
        return cls(runtime=str(data["runtime"]), **numbers)


def price_per_million(cpu_seconds_per_million: float, cpu_hour_price: float) -> float:
    """The price of one million predictions from their CPU seconds and the price of a CPU hour."""
    return cpu_seconds_per_million / 3600 * cpu_hour_price


def measure_serving_cost(
    workspace: Workspace,
    version: ModelVersion | str,
    rows: Sequence[Mapping[str, Any]],
    *,
    requests: int = 1000,
    warmup: int = 50,
    batch_rows: int = 10_000,
    cpu_hour_price: float = 0.05,
    probe_memory: bool = True,
) -> ServingCost:
    """Measure latency, throughput, CPU cost, artifact size and memory of serving ``version``.

    ``rows`` are request rows (objects of the model's inputs, JSON values), cycled through for the
    latency loop and repeated to build the ``batch_rows`` throughput batch. ``probe_memory=False``
    skips the memory subprocess (a few seconds) and reports ``memory_mb`` as NaN.
    """
    _check_arguments(rows, requests, warmup, batch_rows, cpu_hour_price)
    registry = Registry(workspace)
    resolved = version if isinstance(version, ModelVersion) else registry.get(version)
    loaded = registry.load(resolved)
    encoded = loaded.encoder.encode_rows(rows)  # refuses bad rows before anything is timed
    request_rows = [[row] for row in rows]

    for i in range(warmup):
        loaded.predict_rows(request_rows[i % len(request_rows)])
    latencies = np.empty(requests, dtype=np.int64)
    cpu_started = time.process_time()
    for i in range(requests):
        started = time.perf_counter_ns()
        loaded.predict_rows(request_rows[i % len(request_rows)])
        latencies[i] = time.perf_counter_ns() - started
    cpu_seconds = time.process_time() - cpu_started
    p50, p99 = np.percentile(latencies, [50, 99]) / 1e6

    batch = encoded[np.arange(batch_rows) % len(encoded)]
    cpu_per_million = cpu_seconds / requests * 1e6
    return ServingCost(
        runtime=loaded.format,
        latency_p50_ms=float(p50),
        latency_p99_ms=float(p99),
        throughput_rows_per_s=_throughput(loaded.predict_matrix, batch),
        artifact_mb=workspace.artifacts.path_of(resolved.artifact_sha256).stat().st_size / 2**20,
        memory_mb=probe_memory_mb(workspace, resolved, rows=batch_rows) if probe_memory else math.nan,
        cpu_seconds_per_million=cpu_per_million,
        cost_per_million=price_per_million(cpu_per_million, cpu_hour_price),
        cpu_hour_price=cpu_hour_price,
    )


def probe_memory_mb(workspace: Workspace, version: ModelVersion, *, rows: int = 10_000) -> float:
    """Resident MiB that loading ``version`` and predicting ``rows`` rows adds, in a fresh process."""
    command = [
        sys.executable,
        "-m",
        "mlprod.evaluate.load_probe",
        "--workspace",
        str(workspace.root),
        "--ref",
        version.ref,
        "--rows",
        str(rows),
    ]
    # The child must import this very mlprod, even when it runs from a source tree.
    source_root = str(Path(mlprod.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH", "")) if p)
    environment = {**os.environ, "PYTHONPATH": python_path}
    where = f"memory probe of {version.ref} ({' '.join(command[1:3])})"
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MlprodError(
            f"{where} did not finish within {PROBE_TIMEOUT_SECONDS:g} s; stderr: {_tail(exc.stderr)}"
        ) from exc
    except OSError as exc:
        raise MlprodError(f"{where} could not start {sys.executable}: {exc}") from exc
    if done.returncode != 0:
        raise MlprodError(f"{where} failed with exit code {done.returncode}; stderr: {_tail(done.stderr)}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        return float(json.loads(lines[-1])["loaded_mb"])
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise MlprodError(
            f"{where} printed no memory figure (expected a JSON line with loaded_mb); "
            f"stdout: {_tail(done.stdout)}; stderr: {_tail(done.stderr)}"
        ) from exc


def _throughput(predict: Any, batch: np.ndarray) -> float:
    """Rows per second of repeated batch predictions, after one untimed call."""
    predict(batch)
    repeats = 0
    started = time.perf_counter()
    elapsed = 0.0
    while repeats < _MAX_BATCH_REPEATS and (repeats < _MIN_BATCH_REPEATS or elapsed < _MIN_BATCH_SECONDS):
        predict(batch)
        repeats += 1
        elapsed = time.perf_counter() - started
    return repeats * len(batch) / elapsed


def _check_arguments(
    rows: Sequence[Mapping[str, Any]], requests: int, warmup: int, batch_rows: int, cpu_hour_price: float
) -> None:
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or len(rows) == 0:
        raise InvalidInputError(
            "measure_serving_cost needs a non-empty list of request rows (objects of the model's inputs)"
        )
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, Mapping)), None)
    if bad is not None:
        raise InvalidInputError(f"request row {bad}: expected an object of fields, got {rows[bad]!r}")
    if requests < MIN_REQUESTS:
        raise InvalidInputError(
            f"requests must be at least {MIN_REQUESTS} for a p99 to mean anything, got {requests}"
        )
    if warmup < 0:
        raise InvalidInputError(f"warmup must be 0 or more requests, got {warmup}")
    if batch_rows < 1:
        raise InvalidInputError(f"batch_rows must be at least 1, got {batch_rows}")
    if not math.isfinite(cpu_hour_price) or cpu_hour_price < 0:
        raise InvalidInputError(f"cpu_hour_price must be a finite price >= 0, got {cpu_hour_price}")


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return "(none)"
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text[-_STDERR_TAIL_CHARS:] if text else "(empty)"
