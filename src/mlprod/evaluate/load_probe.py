"""Measure, in a fresh process, the resident memory a model version adds once loaded and predicting.

Run as ``python -m mlprod.evaluate.load_probe --workspace DIR --ref MODEL/VERSION --rows N``; it
prints one JSON line ``{"baseline_mb": ..., "peak_mb": ..., "loaded_mb": ...}`` (MiB) and exits 0.
``measure_serving_cost`` runs it; a process that has already loaded other models (or run tests)
cannot tell what one model costs, a fresh one can.

What is charged to the model, and what is not:

* Not charged: importing the libraries. Before the baseline the probe imports the libraries the
  version's format loads with (LightGBM, XGBoost, or scikit-learn and skops) and mlprod itself,
  opens the workspace, reads the version's metadata and builds a random batch of ``N`` encoded rows.
  Library imports cost hundreds of MiB but every model of a family pays them once per process; the
  figure is for comparing models, so it leaves them out.
* Charged: reading and verifying the artifact, deserialising it, and predicting the batch, as the
  *peak* resident memory above the baseline (a transient copy of the artifact bytes counts: a
  serving process must have that much room to load the model).

Resident memory is read from ``/proc/self/statm``. The peak is the kernel's high-water mark
(``VmHWM``), reset just after the baseline by writing ``5`` to ``/proc/self/clear_refs``; where that
is not possible it is the largest of the samples taken after loading and after predicting (which
can miss a transient peak). Without ``/proc`` (macOS), ``getrusage``'s ``ru_maxrss`` is used, a
lifetime peak, so the baseline then includes import-time peaks and the figure is a lower bound.

Examples:
    >>> _mib(3 * 2**20)
    3.0
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.models.registry import Registry
from mlprod.models.signature import InputField
from mlprod.workspace import Workspace

_MIB = 2**20
MODEL_LIBRARIES: dict[str, tuple[str, ...]] = {
    "lightgbm-text": ("lightgbm",),
    "xgboost-ubj": ("xgboost",),
    "sklearn-skops": (
        "sklearn.compose", "sklearn.ensemble", "sklearn.linear_model", "sklearn.pipeline", "sklearn.tree",
        "skops.io",
    ),
    "onnx": ("onnxruntime",),
}  # fmt: skip
"""Imported before the baseline: their import cost is not charged to the model."""


def current_rss_bytes() -> int:
    """Resident set size of this process now (a lifetime peak where ``/proc`` is unavailable)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return _ru_maxrss_bytes()


def _ru_maxrss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _high_water_mark_bytes() is not None


def _high_water_mark_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    return None


def _import_model_libraries(format_name: str) -> None:
    """Import what the model's format loads with, so the import cost is in the baseline."""
    for name in MODEL_LIBRARIES.get(format_name, ()):
        importlib.import_module(name)


def probe(workspace_dir: str | os.PathLike[str], ref: str, rows: int, *, seed: int = 0) -> dict[str, float]:
    """Load ``ref`` from the workspace at ``workspace_dir``, predict ``rows`` random rows, and say how
    much resident memory that added (see the module docstring for what is charged)."""
    if rows < 1:
        raise InvalidInputError(f"load probe: --rows must be at least 1, got {rows}")
    with Workspace.open(workspace_dir) as workspace:
        registry = Registry(workspace)
        version = registry.get(ref)
        _import_model_libraries(version.format)
        batch = _random_batch(version.signature.inputs, rows, seed)
        gc.collect()
        baseline = current_rss_bytes()
        exact_peak = _reset_peak()
        loaded = registry.load(version)
        after_load = current_rss_bytes()
        loaded.predict_matrix(batch)
        after_predict = current_rss_bytes()
        peak = max(after_load, after_predict)
        if exact_peak:
            peak = max(peak, _high_water_mark_bytes() or 0)
    return {"baseline_mb": _mib(baseline), "peak_mb": _mib(peak), "loaded_mb": _mib(max(0, peak - baseline))}


def _random_batch(inputs: Sequence[InputField], rows: int, seed: int) -> np.ndarray:
    """An encoded matrix: standard normal numbers, uniformly drawn category codes."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((rows, len(inputs)))
    for j, spec in enumerate(inputs):
        if spec.kind == "category":
            n_categories = len(spec.categories)
            matrix[:, j] = rng.integers(0, n_categories, size=rows) if n_categories else np.nan
    return matrix


def _mib(n_bytes: int) -> float:
    return n_bytes / _MIB


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; errors go to stderr with exit code 2 (1 for a crash)."""
    parser = argparse.ArgumentParser(
        prog="python -m mlprod.evaluate.load_probe",
        description="Print the resident memory (MiB) a model version adds once loaded and predicting.",
    )
    parser.add_argument("--workspace", required=True, help="workspace root directory")
    parser.add_argument("--ref", required=True, help="model reference, e.g. MODEL/VERSION")
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the random batch predicted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = probe(args.workspace, args.ref, args.rows, seed=args.seed)
    except MlprodError as exc:
        print(f"load_probe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
