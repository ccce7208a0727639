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

import warnings
from typing import Any

from peer_step import Inputs, TimedPart, report, runner_arguments


def verdict(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: a p-value drifts below its threshold, a distance at or above it."""
    if "p_value" in method or "p-value" in method:
        return score < threshold
    return score >= threshold


def main() -> None:
    args = runner_arguments(__doc__)
    warnings.filterwarnings("ignore")

    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    inputs = Inputs(args)
    columns = inputs.columns
    with TimedPart() as timed:
        definition = DataDefinition(
            numerical_columns=columns["numeric"], categorical_columns=columns["categorical"]
        )
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(inputs.current, data_definition=definition),
            Dataset.from_pandas(inputs.reference, data_definition=definition),
        )
        metrics = snapshot.dict()["metrics"]

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
    report(args, found, timed, inputs, evidently.__version__)


if __name__ == "__main__":
    main()
