"""One Evidently ``DataDriftPreset`` run, executed by ``bench/monitor/drift_speed.py`` in its own venv.

Run: ``bench/.venvs/evidently/bin/python bench/monitor/evidently_runner.py --reference R.parquet
--current C.parquet --columns COLUMNS.json --out OUT.json``

Reads both Parquet files into pandas (``pd.read_parquet``; timed apart as ``read_seconds``), then times
``Dataset.from_pandas`` for both frames with a ``DataDefinition`` naming the numeric and categorical
columns (``COLUMNS.json``: ``{"numeric": [...], "categorical": [...]}``, so nothing is left to type
inference) plus ``Report([DataDriftPreset()]).run(current, reference)`` and ``snapshot.dict()`` as
``seconds``. Each column's ``ValueDrift`` (method, score, threshold, verdict) goes to ``--out`` as JSON
and one JSON line (seconds, CPU seconds of the timed part, read_seconds, Evidently version) is printed
last on stdout.
This file imports only Evidently and its dependencies: it never imports mlprod.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

from peer_step import cpu_time, runner_arguments


def verdict(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: a p-value drifts below its threshold, a distance at or above it."""
    if "p_value" in method or "p-value" in method:
        return score < threshold
    return score >= threshold


def main() -> None:
    args = runner_arguments(__doc__)
    warnings.filterwarnings("ignore")

    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = json.loads(args.columns.read_text())
    started = time.perf_counter()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    read_seconds = time.perf_counter() - started

    print(json.dumps({"timed_started": time.time()}), flush=True)
    started, cpu_started = time.perf_counter(), cpu_time()
    definition = DataDefinition(
        numerical_columns=columns["numeric"], categorical_columns=columns["categorical"]
    )
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    seconds, cpu_seconds = time.perf_counter() - started, cpu_time() - cpu_started

    found: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            found[config["column"]] = {
                "method": config["method"],
                "statistic": score,
                "threshold": threshold,
                "drift": verdict(config["method"], score, threshold),
            }
    args.out.write_text(json.dumps({"columns": found}, indent=1))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "read_seconds": read_seconds,
                "version": evidently.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
