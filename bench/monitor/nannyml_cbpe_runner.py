"""NannyML CBPE on Parquet files, run in NannyML's venv by ``flights_estimation.py`` and ``band_coverage.py``.

Usage: ``python nannyml_cbpe_runner.py REFERENCE.parquet ANALYSIS.parquet OUT.json [--chunk-size N]
[--metrics roc_auc,accuracy]``. Both files hold ``y_pred_proba``, ``y_pred`` and ``y_true`` (the analysis
``y_true`` is dropped before CBPE sees it) and, for calendar-week chunks, ``timestamp``. Chunks are
calendar weeks (``chunk_period="W"``: Monday to Sunday, the ISO weeks) unless ``--chunk-size`` asks for
chunks of N rows in file order. Writes one record per analysis chunk: its start date (weeks) or its
first and last row index, and each metric's estimate with NannyML's band (±3 sampling
standard errors, clipped to the metric's range); the wall and CPU seconds of fit and estimate.

``python nannyml_cbpe_runner.py --export-synthetic DIR`` writes NannyML's synthetic binary
classification data (``load_synthetic_binary_classification_dataset``: reference and analysis, the
analysis with its labels joined) to ``DIR/reference.parquet`` and ``DIR/analysis.parquet``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml
import pandas as pd


def export_synthetic(directory: str) -> None:
    reference, analysis, targets = nannyml.load_synthetic_binary_classification_dataset()
    analysis = analysis.merge(targets, on="id", how="left", validate="one_to_one")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for name, frame in (("reference", reference), ("analysis", analysis)):
        frame = frame.rename(columns={"work_home_actual": "y_true"})
        frame.reset_index(drop=True).to_parquet(Path(directory) / f"{name}.parquet")


def estimate(
    reference_path: str, analysis_path: str, out_path: str, chunk_size: int | None, metrics: list[str]
) -> None:
    reference = pd.read_parquet(reference_path)
    analysis = pd.read_parquet(analysis_path).drop(columns=["y_true"])
    chunking: dict[str, object] = {"chunk_size": chunk_size} if chunk_size else {"chunk_period": "W"}
    started, cpu_started = time.perf_counter(), time.process_time()
    estimator = nannyml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        timestamp_column_name="timestamp" if "timestamp" in reference.columns else None,
        problem_type="classification_binary",
        metrics=metrics,
        **chunking,  # type: ignore[arg-type]
    )
    estimator.fit(reference)
    frame = estimator.estimate(analysis).filter(period="analysis").to_df()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    records = []
    for _, row in frame.iterrows():
        record: dict[str, object] = {
            "first": int(row[("chunk", "start_index")]),
            "last": int(row[("chunk", "end_index")]),
        }
        if not chunk_size:
            record["start"] = str(pd.Timestamp(row[("chunk", "start_date")]).date())
        for metric in metrics:
            record[metric] = float(row[(metric, "value")])
            record[f"{metric}_lower"] = _float(row[(metric, "lower_confidence_boundary")])
            record[f"{metric}_upper"] = _float(row[(metric, "upper_confidence_boundary")])
            record[f"{metric}_sampling_error"] = _float(row[(metric, "sampling_error")])
        records.append(record)
    with open(out_path, "w") as out:
        json.dump(
            {
                "version": nannyml.__version__,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "chunks": records,
            },
            out,
        )


def _float(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="REFERENCE.parquet ANALYSIS.parquet OUT.json")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--metrics", default="roc_auc,accuracy")
    parser.add_argument("--export-synthetic", metavar="DIR")
    args = parser.parse_args()
    if args.export_synthetic:
        export_synthetic(args.export_synthetic)
    elif len(args.paths) == 3:
        estimate(*args.paths, chunk_size=args.chunk_size, metrics=args.metrics.split(","))
    else:
        parser.error("expected REFERENCE.parquet ANALYSIS.parquet OUT.json, or --export-synthetic DIR")


if __name__ == "__main__":
    main()
