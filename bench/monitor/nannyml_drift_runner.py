"""One NannyML univariate drift run, executed by ``bench/monitor/drift_speed.py`` in NannyML's own venv.

Run: ``NML_DISABLE_USAGE_LOGGING=1 bench/.venvs/nannyml/bin/python bench/monitor/nannyml_drift_runner.py
--reference R.parquet --current C.parquet --columns COLUMNS.json --out OUT.json``

Reads both Parquet files into pandas (``pd.read_parquet``; timed apart as ``read_seconds``), then times
``UnivariateDriftCalculator(column_names, treat_as_categorical, chunk_size=len(current))`` with its
default methods and thresholds, ``.fit(reference)``, ``.calculate(current)`` and the result frame as
``seconds``. One chunk is the whole current data; the reference falls into chunks of the same size,
from which NannyML derives its thresholds (mean + 3 standard deviations of the reference chunks).
Each column's verdict (method, statistic, upper threshold, alert) goes to ``--out`` as JSON and one
JSON line (seconds, CPU seconds of the timed part, read_seconds, NannyML version) is printed last on
stdout.
This file imports only NannyML and its dependencies: it never imports mlprod.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

from peer_step import Inputs, TimedPart, report, runner_arguments


def main() -> None:
    args = runner_arguments(__doc__)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

    import nannyml

    inputs = Inputs(args)
    columns = inputs.columns
    names = columns["numeric"] + columns["categorical"]
    with TimedPart() as timed:
        calculator = nannyml.UnivariateDriftCalculator(
            column_names=names,
            treat_as_numerical=columns["numeric"],
            treat_as_categorical=columns["categorical"],
            chunk_size=len(inputs.current),
        )
        calculator.fit(inputs.reference)
        frame = calculator.calculate(inputs.current).filter(period="analysis").to_df()

    found: dict[str, dict[str, Any]] = {}
    for name in names:
        checks = []
        for method in frame[name].columns.get_level_values(0).unique():
            cell = frame[name][method].iloc[-1]
            upper = cell.get("upper_threshold")
            checks.append(
                {
                    "method": method,
                    "statistic": float(cell["value"]),
                    "threshold": None if upper is None or math.isnan(upper) else float(upper),
                    "drift": bool(cell["alert"]),
                }
            )
        found[name] = {**checks[0], "drift": any(check["drift"] for check in checks), "checks": checks}
    report(args, found, timed, inputs, nannyml.__version__)


if __name__ == "__main__":
    main()
