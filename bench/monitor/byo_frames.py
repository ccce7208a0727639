"""Monitoring a model mlprod does not run, from two Parquet files: ``mlprod monitor run`` vs NannyML CBPE.

Run: ``.venv/bin/python bench/monitor/byo_frames.py [--reference-rows 100000] [--analysis-rows 200000]
[--weeks 20] [--work-dir DIR] [--skip-peers]``.

Data (fixed seed): five numeric features, a logistic model's score ``y_pred_proba``, its class
``y_pred`` (score >= 0.5), the label ``y_true`` and an hourly-spread ``timestamp``; the analysis
covers ``--weeks`` ISO weeks and, from its middle week on, moves ``f0`` by one standard deviation
(covariate shift: accuracy changes, the score-label relation does not).

Both tools run as a fresh process on the same files, timed from outside (wall seconds, and CPU
seconds of the child from ``getrusage``; both include the interpreter start, imports and reading):

* mlprod: ``mlprod monitor run --window week --format json`` — reference profile, drift and data
  quality of every feature per week, the multivariate detector, realized metrics and CBPE estimates.
* NannyML (its venv ``bench/.venvs/nannyml``; ``nannyml_cbpe_runner.py``): ``CBPE`` fitted on the
  reference, estimated on the analysis by calendar week (ROC AUC and accuracy only; no drift).

It prints per tool: seconds, CPU seconds, the weeks found, the mean absolute error of the estimated
accuracy against the realized one, and the ratio NannyML / mlprod; and whether mlprod flagged ``f0``
in the shifted weeks and in no calm week.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
NANNYML = BENCH / ".venvs" / "nannyml" / "bin" / "python"
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def frame(
    rows: int, seed: int, start: datetime, days: int, *, shift_from: datetime | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, days * 86_400, size=rows))
    times = pd.to_datetime([start + timedelta(seconds=float(s)) for s in offsets], utc=True)
    features = rng.normal(size=(rows, 5))
    if shift_from is not None:
        features[np.asarray(times >= pd.Timestamp(shift_from)), 0] += 1.0
    logit = features @ np.array([1.2, -0.8, 0.5, 0.3, 0.0]) + 0.2
    proba = 1 / (1 + np.exp(-logit))
    y_true = (rng.random(rows) < proba).astype(np.int64)
    data = {f"f{i}": features[:, i] for i in range(5)}
    return pd.DataFrame(
        {
            "timestamp": times,
            **data,
            "y_pred_proba": proba,
            "y_pred": (proba >= 0.5).astype(np.int64),
            "y_true": y_true,
        }
    )


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """Run ``command``; wall seconds and the child's CPU seconds (user + system, its threads included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--analysis-rows", type=int, default=200_000)
    parser.add_argument("--weeks", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--skip-peers", action="store_true", help="mlprod alone")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="byo-frames-"))
    work.mkdir(parents=True, exist_ok=True)
    analysis_start = START + timedelta(weeks=8)
    shift_from = analysis_start + timedelta(weeks=args.weeks // 2)
    frame(args.reference_rows, 1, START, 56).to_parquet(work / "reference.parquet")
    analysis = frame(args.analysis_rows, 2, analysis_start, 7 * args.weeks, shift_from=shift_from)
    analysis.to_parquet(work / "analysis.parquet")
    realized = (
        analysis.assign(right=analysis["y_pred"] == analysis["y_true"])
        .groupby(analysis["timestamp"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time)["right"]
        .mean()
    )
    realized.index = [str(i.date()) for i in realized.index]

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NML_DISABLE_USAGE_LOGGING": "1"}
    files = ["--reference", str(work / "reference.parquet"), "--analysis", str(work / "analysis.parquet")]
    roles = [
        "--score",
        "y_pred_proba",
        "--prediction",
        "y_pred",
        "--label",
        "y_true",
        "--timestamp",
        "timestamp",
    ]
    mlprod = [
        sys.executable,
        "-m",
        "mlprod",
        "monitor",
        "run",
        *files,
        *roles,
        "--window",
        "week",
        "--format",
        "json",
    ]
    seconds, cpu, done = timed(mlprod, env)
    if done.returncode:
        sys.exit(f"mlprod failed: {done.stderr.decode()}")
    windows: list[dict[str, Any]] = json.loads(done.stdout)
    ours = {w["start"][:10]: w["accuracy_estimated"] for w in windows}
    flagged = {w["start"][:10] for w in windows if "f0" in w["drift"]}
    shifted = {w for w in ours if w >= str(shift_from.date())}
    rows = [("mlprod monitor run", seconds, cpu, ours)]

    if args.skip_peers:
        pass
    elif NANNYML.exists():
        out = work / "nannyml.json"
        runner = [str(NANNYML), str(BENCH / "monitor" / "nannyml_cbpe_runner.py"),
                  str(work / "reference.parquet"), str(work / "analysis.parquet"), str(out)]  # fmt: skip
        n_seconds, n_cpu, n_done = timed(runner, env)
        if n_done.returncode:
            sys.exit(f"NannyML failed: {n_done.stderr.decode()[-2000:]}")
        theirs = {c["start"]: c["accuracy"] for c in json.loads(out.read_text())["chunks"]}
        rows.append(("NannyML CBPE (no drift)", n_seconds, n_cpu, theirs))
    else:
        print(f"NannyML venv missing ({NANNYML}): mlprod alone")

    print(
        f"reference {args.reference_rows:,} rows, analysis {args.analysis_rows:,} rows in {args.weeks} weeks"
    )
    print(f"{'tool':<26}{'seconds':>9}{'cpu s':>8}{'weeks':>7}{'MAE est. accuracy':>19}")
    for name, wall, used, estimates in rows:
        errors = [abs(v - realized[k]) for k, v in estimates.items() if v is not None and k in realized.index]
        print(f"{name:<26}{wall:>9.2f}{used:>8.2f}{len(estimates):>7}{np.mean(errors):>19.4f}")
    if len(rows) == 2:
        wall_ratio, cpu_ratio = rows[1][1] / rows[0][1], rows[1][2] / rows[0][2]
        print(f"NannyML / mlprod: {wall_ratio:.2f}x seconds, {cpu_ratio:.2f}x CPU seconds")
    calm_flagged = sorted(flagged - shifted)
    hits = len(flagged & shifted)
    print(f"mlprod flagged f0 in {hits}/{len(shifted)} shifted weeks; calm weeks flagged: {calm_flagged}")


if __name__ == "__main__":
    main()
