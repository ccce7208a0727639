"""NannyML CBPE on Parquet files, run inside NannyML's own venv by ``flights_estimation.py``.

Usage: ``python nannyml_cbpe_runner.py REFERENCE.parquet ANALYSIS.parquet OUT.json``. Both files hold
``timestamp``, ``y_pred_proba``, ``y_pred`` and ``y_true`` (the analysis ``y_true`` is not read by CBPE's
estimate). Chunks are calendar weeks (``chunk_period="W"``: Monday to Sunday, the ISO weeks). Writes one
record per analysis chunk: its start date and the estimated ``roc_auc`` and ``accuracy`` with bounds.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml
import pandas as pd

METRICS = ["roc_auc", "accuracy"]


def main(reference_path: str, analysis_path: str, out_path: str) -> None:
    reference = pd.read_parquet(reference_path)
    analysis = pd.read_parquet(analysis_path).drop(columns=["y_true"])
    started = time.perf_counter()
    estimator = nannyml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        timestamp_column_name="timestamp",
        problem_type="classification_binary",
        metrics=METRICS,
        chunk_period="W",
    )
    estimator.fit(reference)
    frame = estimator.estimate(analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - started
    records = []
    for _, row in frame.iterrows():
        record = {"start": str(pd.Timestamp(row[("chunk", "start_date")]).date())}
        for metric in METRICS:
            record[metric] = float(row[(metric, "value")])
            record[f"{metric}_lower"] = _float(row[(metric, "lower_confidence_boundary")])
            record[f"{metric}_upper"] = _float(row[(metric, "upper_confidence_boundary")])
        records.append(record)
    with open(out_path, "w") as out:
        json.dump({"version": nannyml.__version__, "seconds": seconds, "chunks": records}, out)


def _float(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


if __name__ == "__main__":
    main(*sys.argv[1:4])
