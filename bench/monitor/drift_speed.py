"""Column drift at scale: mlprod's streaming profiles vs Evidently ``DataDriftPreset`` and NannyML.

Run: ``.venv/bin/python bench/monitor/drift_speed.py [--quick] [--reference-rows 1000000]
[--current-rows 100000] [--columns 50] [--big-rows 10000000] [--batch-rows 250000] [--mlprod-workers auto]
[--mlprod-repeats 3] [--peers evidently,nannyml | --skip-peers] [--peer-timeout 1800] [--work-dir DIR]``.
A run at the defaults takes about 10 minutes on a quiet machine (Evidently most of it; 20-30 minutes on
a busy one) and 3.3 GB of disk; ``--quick`` (250,000 reference rows, Evidently only, no 10M run) takes
a few minutes, to iterate with.

Data (fixed seed, Parquet in a work directory, written in row groups of ``--batch-rows`` so that making
it stays bounded too): ``--columns`` columns, four fifths numeric and one fifth categorical. Numeric
``nNN`` cycle through normal, lognormal, integer-valued (Poisson, int64) and normal with 2-20 % missing
values, each with its own location and scale; categorical ``cNN`` are strings with 5 … 200 categories
drawn with Zipf-like weights (``c05`` has 3 % missing). The current data plants shifts in a known set
(at 50 columns: 8 numeric moved by 0.2-1 standard deviation or rescaled, 2 categorical with a changed
mix, see ``SHIFTS``) and tiny harmless shifts (0.01 sd, 1 % rescale, 1 % of the mix) in others, which
should not be flagged.

Each tool runs in its own subprocess (peak RSS is that process's ``ru_maxrss`` from ``wait4``); each
also reports the CPU seconds of its timed part (all its threads and child processes) and the system
part of them, so "cpu s" over "seconds" tells how many cores a tool kept busy:

* Evidently (its venv ``bench/.venvs/evidently``, created when missing; ``evidently_runner.py``):
  ``Report([DataDriftPreset()])`` with its default per-column tests. Its time excludes reading the
  Parquet files into pandas (reported apart as "read s").
* NannyML (its venv ``bench/.venvs/nannyml``, created when missing; ``nannyml_drift_runner.py``):
  ``UnivariateDriftCalculator`` with its default methods, one chunk = the whole current data (the
  reference split in chunks of the same size, from which NannyML derives its thresholds). Its time
  excludes reading the Parquet files too.
* mlprod (this venv): ``reference_from_parquet`` then ``window_from_parquet`` (threads take column
  chunks from a queue, each feeds its own builder, merged at the end; ``--mlprod-workers auto`` lets
  the library pick the thread count from the load average, as it does by default), then
  ``drift_checks`` and ``drifted_columns`` (the verdicts of the primary methods: normed Wasserstein for
  numeric, Jensen-Shannon for categorical columns). Its time INCLUDES reading both Parquet files
  (streamed with pyarrow), so memory stays bounded whatever the row count. It runs ``--mlprod-repeats``
  times, once before the peers and the other times after them (so a change of load during the peers'
  minutes reaches both sides), and the median is reported (all times are printed).

Then mlprod alone profiles ``--big-rows`` reference rows (same columns, streamed from Parquet written in
row groups) against the same current data, to show that time grows linearly and peak memory does not.
The table prints seconds, CPU seconds, peak RSS, the flagged columns, their agreement with the planted
set and with Evidently, the wall and CPU ratios, and the goal: at least 50x faster than Evidently at 1M
rows in wall time and in CPU seconds, flagging the same shifted columns.

Why the ratio fell on a busy machine, and what changed (``bench/monitor/profile_ingest.py`` measures
each configuration): on this 2-core VM shared with other jobs the quiet-machine 69.7-91x fell to
26-30x, and the CPU-seconds ratio with it (29-31x), so mlprod burned more CPU for the same work, not
only waited. The extra CPU was system time: at load 12, 1.6 of mlprod's 2.9 CPU s went to the kernel
faulting in ~520 MB of fresh memory (a first touch cost 2-3 ms a MB under load on this VM, whose guest
reports freed pages to the host, against ~0.1 ms for a reused page), because row-batch reading held
every column of a row group per thread. Reading one column chunk at a time keeps ~10 MB a thread
(0.2 CPU s in the kernel); a second thread only costs CPU when no core is idle, so the thread count
comes from the load average; category counts no longer go through Arrow's Acero engine, which cost
0.1-0.3 CPU s to load in each fresh process. Arrow's, OpenMP's and OpenBLAS's thread pools were not
the cause (one thread each changed nothing). Evidently pays the same fault cost (11 of its 105 CPU s
at load 12) on a far larger amount of work.
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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared measuring code
from peer_step import cpu_time, system_time

from measured_process import default_memory_limit, run_measured

BENCH = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
PEERS = {  # who: (venv, requirements, distribution, runner)
    "evidently": (VENVS / "evidently", ["evidently", "pandas<3"], "evidently", "evidently_runner.py"),
    "nannyml": (VENVS / "nannyml", ["nannyml", "pandas<3"], "nannyml", "nannyml_drift_runner.py"),
}
LABELS = {"evidently": "Evidently DataDriftPreset", "nannyml": "NannyML univariate drift", "mlprod": "mlprod"}
MLPROD_CHILD = "--mlprod-child"
CARDINALITIES = [5, 8, 12, 20, 30, 50, 75, 100, 150, 200]
MISSING_CATEGORICAL = {"c05": 0.03}

# Shifts of the current data: (what, amount). "loc": the mean moves by amount standard deviations (of the
# log for lognormal columns); "scale": the spread is multiplied by amount; "mix": that share of the
# categories' weights is handed over in reverse order (rare categories become common).
SHIFTS: dict[str, tuple[str, float]] = {
    "n00": ("loc", 0.2), "n04": ("loc", -0.5), "n08": ("scale", 1.5), "n12": ("loc", 1.0),
    "n01": ("loc", 0.3), "n05": ("scale", 0.7), "n02": ("loc", 0.4), "n03": ("loc", 0.25),
    "c02": ("mix", 0.5), "c07": ("mix", 0.4),
    # tiny and harmless: must not be flagged
    "n16": ("loc", 0.01), "n20": ("scale", 1.01), "n09": ("loc", 0.01), "n06": ("loc", 0.01),
    "n07": ("loc", 0.01), "c04": ("mix", 0.01),
}  # fmt: skip
TINY = 0.05  # shifts at most this big (in sd, in relative scale, in share of the mix) are harmless
GOAL = 50.0  # times faster than Evidently, in wall time and in CPU seconds
QUICK = {"reference_rows": 250_000, "current_rows": 25_000, "big_rows": 0, "peers": "evidently"}


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is drawn: ``kind`` with parameters ``a``, ``b``, ``missing`` rate, ``shift``."""

    name: str
    kind: str  # normal | lognormal | poisson | categorical
    a: float  # mean, log-mean, lambda; Zipf exponent for categorical
    b: float  # standard deviation, log-sd; number of categories for categorical
    missing: float = 0.0
    shift: tuple[str, float] | None = None

    @property
    def planted(self) -> bool:
        if self.shift is None:
            return False
        what, amount = self.shift
        return abs((amount - 1.0) if what == "scale" else amount) > TINY


def column_specs(count: int, seed: int) -> list[ColumnSpec]:
    """``count`` columns: four fifths numeric (four kinds in turn), one fifth categorical."""
    rng = np.random.default_rng([seed, 7])
    categorical = count // 5
    specs = []
    for i in range(count - categorical):
        name = f"n{i:02d}"
        kind = ("normal", "lognormal", "poisson", "normal")[i % 4]
        missing = float(rng.uniform(0.02, 0.2)) if i % 4 == 3 else 0.0
        if kind == "normal":
            a, b = float(rng.uniform(-100, 100)), float(rng.uniform(0.5, 50))
        elif kind == "lognormal":
            a, b = float(rng.uniform(0, 3)), float(rng.uniform(0.3, 1.0))
        else:
            a, b = float(rng.uniform(3, 60)), 0.0
        specs.append(ColumnSpec(name, kind, a, b, missing, SHIFTS.get(name)))
    for j in range(categorical):
        name = f"c{j:02d}"
        specs.append(
            ColumnSpec(
                name,
                "categorical",
                float(rng.uniform(0.5, 1.2)),
                CARDINALITIES[j % len(CARDINALITIES)],
                MISSING_CATEGORICAL.get(name, 0.0),
                SHIFTS.get(name),
            )
        )
    return specs


def category_weights(spec: ColumnSpec, shifted: bool) -> np.ndarray:
    n = int(spec.b)
    weights = 1.0 / np.arange(1, n + 1) ** spec.a
    weights /= weights.sum()
    if shifted and spec.shift is not None:
        weights = (1 - spec.shift[1]) * weights + spec.shift[1] * weights[::-1]
    return weights


def draw(spec: ColumnSpec, rows: int, rng: np.random.Generator, shifted: bool) -> pa.Array:
    """``rows`` values of one column, with its shift when ``shifted``."""
    what, amount = spec.shift if shifted and spec.shift is not None else ("", 0.0)
    mask = rng.random(rows) < spec.missing if spec.missing else None
    if spec.kind == "categorical":
        weights = category_weights(spec, shifted)
        codes = rng.choice(len(weights), rows, p=weights).astype(np.int32)
        names = pa.array([f"{spec.name}_v{k:03d}" for k in range(len(weights))], pa.string())
        values = pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), names)
        return values.cast(pa.string())
    if spec.kind == "poisson":
        lam = spec.a + (amount * np.sqrt(spec.a) if what == "loc" else 0.0)
        return pa.array(rng.poisson(lam, rows).astype(np.int64), pa.int64())
    loc = spec.a + (amount * spec.b if what == "loc" else 0.0)
    scale = spec.b * (amount if what == "scale" else 1.0)
    values = rng.lognormal(loc, scale, rows) if spec.kind == "lognormal" else rng.normal(loc, scale, rows)
    return pa.array(values, pa.float64(), mask=mask)


def generate(
    path: Path, specs: list[ColumnSpec], rows: int, seed: int, shifted: bool, batch_rows: int
) -> None:
    """Write ``rows`` rows to ``path`` one row group of ``batch_rows`` at a time."""
    schema = pa.schema([(spec.name, arrow_type(spec)) for spec in specs])
    part = 1 if shifted else 0
    with pq.ParquetWriter(path, schema) as writer:
        for index, start in enumerate(range(0, rows, batch_rows)):
            size = min(batch_rows, rows - start)
            rng = np.random.default_rng([seed, part, index])
            columns = [draw(spec, size, rng, shifted) for spec in specs]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=batch_rows)


def arrow_type(spec: ColumnSpec) -> pa.DataType:
    return {"categorical": pa.string(), "poisson": pa.int64()}.get(spec.kind, pa.float64())


def ensure_data(work: Path, args: argparse.Namespace) -> list[ColumnSpec]:
    """Generate the Parquet files whose parameters changed since the last run in ``work``."""
    specs = column_specs(args.columns, args.seed)
    meta_path = work / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    files = {
        "reference": (args.reference_rows, False),
        "current": (args.current_rows, True),
        "big_reference": (args.big_rows, False),
    }
    for name, (rows, shifted) in files.items():
        path = work / f"{name}.parquet"
        params = {
            "rows": rows,
            "columns": args.columns,
            "seed": args.seed,
            "batch_rows": args.batch_rows,  # each batch draws from its own seeded generator
            "shifts": SHIFTS if shifted else {},
        }
        params = json.loads(json.dumps(params))  # as read back from meta.json: tuples become lists
        if rows <= 0 or (meta.get(name, {}).get("params") == params and path.exists()):
            continue
        print(f"generating {path.name} ({rows:,} rows x {len(specs)} columns) …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        generate(
            path, specs, rows, args.seed + (1 if name == "big_reference" else 0), shifted, args.batch_rows
        )
        meta[name] = {
            "params": params,
            "seconds": time.perf_counter() - started,
            "bytes": path.stat().st_size,
        }
        meta_path.write_text(json.dumps(meta, indent=1))
    (work / "columns.json").write_text(
        json.dumps(
            {
                "numeric": [s.name for s in specs if s.kind != "categorical"],
                "categorical": [s.name for s in specs if s.kind == "categorical"],
            }
        )
    )
    for name in files:
        if name in meta and files[name][0] > 0:
            made = meta[name]
            print(f"data {name}.parquet: {made['params']['rows']:,} rows, {made['bytes'] / 1e6:,.0f} MB, "
                  f"generated in {made['seconds']:.1f} s")  # fmt: skip
    return specs


# -------------------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    """One drift computation in its own subprocess."""

    who: str  # evidently | nannyml | mlprod | mlprod-big
    reference_rows: int
    status: str = "not run"  # ok | timeout | RSS>…GB | failed (exit …) | killed (SIG…)
    seconds: float | None = None
    peak_bytes: int | None = None
    flagged: set[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def ensure_venv(who: str) -> tuple[Path, str]:
    """A peer's venv python (created with ``python3 -m venv`` + ``pip install`` when missing), and a note."""
    venv, requirements, _, _ = PEERS[who]
    python = venv / "bin" / "python"
    if python.exists():
        return python, "already installed"
    print(f"creating {venv} and installing {' '.join(requirements)} …", file=sys.stderr, flush=True)
    started = time.perf_counter()
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], check=True
    )
    return python, f"installed in {time.perf_counter() - started:.0f} s"


def version_of(python: Path, distribution: str) -> str:
    found = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return found.stdout.strip()


def run_peer(who: str, work: Path, args: argparse.Namespace) -> Run:
    python, note = ensure_venv(who)
    _, _, distribution, runner = PEERS[who]
    print(f"{LABELS[who]}: {distribution} {version_of(python, distribution)} in "
          f"{python.parents[1].relative_to(BENCH.parent)} ({note})")  # fmt: skip
    run = Run(who, args.reference_rows)
    cmd = [str(python), str(HERE / runner), "--reference", str(work / "reference.parquet")]
    cmd += ["--current", str(work / "current.parquet"), "--columns", str(work / "columns.json")]
    cmd += ["--out", str(work / f"{who}.json")]
    measure(run, cmd, args.peer_timeout, work, args)
    return run


def run_mlprod(who: str, reference: Path, rows: int, work: Path, args: argparse.Namespace) -> Run:
    run = Run(who, rows)
    cmd = [sys.executable, str(Path(__file__).resolve()), MLPROD_CHILD, str(reference)]
    cmd += [str(work / "current.parquet"), str(work / "columns.json"), str(work / f"{who}.json")]
    cmd += [str(args.mlprod_workers)]
    measure(run, cmd, args.mlprod_timeout, work, args)
    return run


def median_run(runs: list[Run]) -> Run:
    """The run of median time (the lower one of an even count), noting every run's time in its info.

    mlprod's runs take seconds, so a burst of load from other jobs moves one run a lot; Evidently's
    take minutes and average such bursts out.
    """
    timed = sorted((run for run in runs if run.seconds is not None), key=lambda run: run.seconds or 0.0)
    chosen = timed[(len(timed) - 1) // 2] if timed else runs[0]
    chosen.info["repeats"] = [run.seconds for run in runs]
    chosen.info["cpu_repeats"] = [run.info.get("cpu_seconds") for run in runs]
    cpus = sorted(run.info["cpu_seconds"] for run in timed if run.info.get("cpu_seconds") is not None)
    if cpus:
        chosen.info["median_cpu"] = cpus[(len(cpus) - 1) // 2]
    return chosen


def measure(run: Run, cmd: list[str], timeout: float, work: Path, args: argparse.Namespace) -> None:
    """Run one tool and read the verdicts it wrote to ``WHO.json``: per column drift, method, statistic."""
    run.info["load"] = os.getloadavg()[0]
    print(f"running {run.who} on {run.reference_rows:,} reference rows (timeout {timeout:.0f} s; "
          f"load average {run.info['load']:.2f}) …", file=sys.stderr, flush=True)  # fmt: skip
    outcome = run_measured(
        cmd, started_key="timed_started", timeout=timeout, memory_limit_gb=args.memory_limit_gb,
        log=work / f"{run.who}.log", env=dict(os.environ, NML_DISABLE_USAGE_LOGGING="1"),
    )  # fmt: skip
    run.status, run.seconds, run.peak_bytes = outcome.status, outcome.seconds, outcome.peak_bytes
    run.info["ran_for"] = outcome.ran_for
    run.info.update(outcome.result)
    if run.status == "ok":
        columns = json.loads((work / f"{run.who}.json").read_text())["columns"]
        run.flagged = {name for name, found in columns.items() if found["drift"]}
        run.info["columns"] = columns


# ------------------------------------------------------------------------------------- mlprod child


def mlprod_child(argv: list[str]) -> None:
    """Inside the subprocess: reference profile and window from Parquet batches, then the drift checks.

    The timed part includes reading the Parquet files: nothing is loaded before the clock starts.
    """
    from mlprod.monitor.drift import PRIMARY_METHODS, drift_checks, drifted_columns
    from mlprod.monitor.parallel_profile import default_workers, reference_from_parquet, window_from_parquet
    from mlprod.monitor.profile import ProfileSpec

    reference_path, current_path, columns_path, out, asked = argv
    columns = json.loads(Path(columns_path).read_text())
    spec = ProfileSpec(
        numeric=tuple(columns["numeric"]),
        categorical=tuple(columns["categorical"]),
        prediction=None,
        label=None,
    )
    print(json.dumps({"timed_started": time.time()}), flush=True)
    started, cpu_started, sys_started = time.perf_counter(), cpu_time(), system_time()
    workers = default_workers() if asked == "auto" else int(asked)  # what workers=None would choose
    builder = reference_from_parquet(reference_path, spec, workers=workers)
    reference = builder.finish()
    profiled = time.perf_counter()
    window = window_from_parquet(reference, current_path, workers=workers)
    checks = drift_checks(reference, window)
    flagged = set(drifted_columns(checks))
    seconds, cpu_seconds = time.perf_counter() - started, cpu_time() - cpu_started
    sys_seconds = system_time() - sys_started

    found: dict[str, dict[str, Any]] = {}
    for check in checks:
        found.setdefault(check.column, {"drift": check.column in flagged, "checks": []})
        summary = {"method": check.method, "statistic": check.statistic, "threshold": check.threshold}
        found[check.column]["checks"].append({**summary, "drift": check.alert})
        if check.method in PRIMARY_METHODS:
            found[check.column].update(summary)
    Path(out).write_text(json.dumps({"columns": found}, indent=1))
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "sys_seconds": sys_seconds,
                      "reference_seconds": profiled - started, "rows": reference.rows,
                      "workers": workers}))  # fmt: skip


# ------------------------------------------------------------------------------------------- report


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f}"


def names(columns: set[str]) -> str:
    return ",".join(sorted(columns)) if columns else "none"


def agreement(flagged: set[str] | None, expected: set[str] | None) -> str:
    """``same`` or the differences: ``-x`` expected but not flagged, ``+y`` flagged but not expected."""
    if flagged is None or expected is None:
        return "-"
    if flagged == expected:
        return "same"
    missed = [f"-{name}" for name in sorted(expected - flagged)]
    extra = [f"+{name}" for name in sorted(flagged - expected)]
    return " ".join(missed + extra)


def ratio(base: Run | None, this: Run | None) -> tuple[str, float | None]:
    """``base`` time / ``this`` time as text and number; a lower bound (">") when ``base`` was stopped."""
    if base is None or this is None or this.seconds is None:
        return "-", None
    if base.seconds is not None:
        return f"{base.seconds / this.seconds:,.1f}x", base.seconds / this.seconds
    if base.info.get("ran_for"):
        return f">{base.info['ran_for'] / this.seconds:,.1f}x", base.info["ran_for"] / this.seconds
    return "-", None


def cpu_ratio(base: Run | None, this: Run | None) -> tuple[str, float | None]:
    """``base`` CPU seconds / ``this`` CPU seconds (for a repeated run, the median of its repeats)."""
    if base is None or this is None or base.info.get("cpu_seconds") is None:
        return "-", None
    cpu = this.info.get("median_cpu", this.info.get("cpu_seconds"))
    if not cpu:
        return "-", None
    return f"{base.info['cpu_seconds'] / cpu:,.1f}x", base.info["cpu_seconds"] / cpu


def seconds_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def column_table(runs: list[Run], specs: list[ColumnSpec]) -> None:
    """The primary statistic / threshold of each tool on the shifted columns and any column flagged."""
    done = [run for run in runs if run.flagged is not None]
    flagged = set().union(*(run.flagged or set() for run in done))
    shown = [spec for spec in specs if spec.shift is not None or spec.name in flagged]
    print(f"\n{'column':<8}{'kind':<12}{'shift':<12}" + "".join(f"{run.who:>26}" for run in done))
    print(f"{'':<32}" + "".join(f"{method_names(run):>26}" for run in done))
    for spec in shown:
        shift = "-" if spec.shift is None else f"{spec.shift[0]} {spec.shift[1]:g}"
        cells = ""
        for run in done:
            found = run.info["columns"].get(spec.name, {})
            threshold = found.get("threshold")
            value = f"{found.get('statistic', float('nan')):.4f}"
            value += "" if threshold is None else f" / {threshold:.4f}"
            cells += f"{value + (' *' if found.get('drift') else '  '):>26}"
        print(f"{spec.name:<8}{spec.kind:<12}{shift:<12}{cells}")
    print("  statistic / threshold of each tool's verdict method, * = flagged; shift: loc in standard "
          "deviations, scale factor, or share of the categories' mix reversed")  # fmt: skip


def method_names(run: Run) -> str:
    methods = sorted({found.get("method", "?") for found in run.info["columns"].values()})
    return "(" + ", ".join(short(method) for method in methods) + ")"


def short(method: str) -> str:
    return {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "JS"}.get(
        method, method.replace("jensen_shannon", "JS")
    )


def report(runs: list[Run], specs: list[ColumnSpec], args: argparse.Namespace) -> None:
    planted = {s.name for s in specs if s.planted}
    tiny = {s.name for s in specs if s.shift is not None and not s.planted}
    by = {run.who: run for run in runs}
    evidently, mlprod = by.get("evidently"), by.get("mlprod")
    print(f"\nplanted shifts ({len(planted)}): {names(planted)}")
    print(f"tiny harmless shifts, not to be flagged ({len(tiny)}): {names(tiny)}")
    rows = []
    for run in runs:
        read = run.info.get("read_seconds")
        rows.append(
            (
                LABELS.get(run.who, "mlprod"),
                f"{run.reference_rows:,}",
                seconds_cell(run.seconds),
                seconds_cell(run.info.get("median_cpu", run.info.get("cpu_seconds"))),
                seconds_cell(run.info.get("sys_seconds")),
                "incl." if run.who.startswith("mlprod") else "-" if read is None else f"{read:.2f}",
                mb(run.peak_bytes),
                "-" if run.flagged is None else str(len(run.flagged)),
                agreement(run.flagged, planted),
                ""
                if run.who == "evidently"
                else agreement(run.flagged, evidently.flagged if evidently else None),
                ratio(run, mlprod)[0] if run.who in PEERS else "-",
                cpu_ratio(run, mlprod)[0] if run.who in PEERS else "-",
                f"{run.info['load']:.1f}",
                run.status,
            )
        )
    header = ("tool", "ref rows", "seconds", "cpu s", "sys s", "read s", "peak MB", "flagged", "vs planted")
    header += ("vs Evidently", "x wall", "x cpu", "load", "status")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        cells = [
            cell.ljust(w) if i in (0, 8, 9, 13) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    column_table(runs, specs)
    print("  seconds: the drift computation alone for Evidently and NannyML (reading Parquet into pandas is "
          "'read s'); for mlprod it includes streaming both Parquet files. cpu s: CPU seconds of that timed "
          "part, all threads and child processes (cpu s / seconds = cores kept busy; for mlprod the median "
          "of its runs), sys s the part of it spent in the kernel (page faults, reads, switches). vs "
          "planted/vs Evidently: 'same' or -missed +extra columns. x wall / x cpu: tool seconds / mlprod "
          "seconds and tool cpu s / mlprod cpu s at the same size. load: the machine's 1-minute load "
          "average when the run started.")  # fmt: skip
    workers = {run.info.get("workers") for run in runs if run.who.startswith("mlprod")} - {None}
    if workers:
        used = names({str(w) for w in workers})
        print(f"  mlprod read and sketched with {used} thread(s) (--mlprod-workers {args.mlprod_workers}) on "
              f"this {os.cpu_count()}-core machine; Evidently and NannyML run as they come (their cpu s "
              f"shows how many cores they used).")  # fmt: skip

    for run in runs:
        if run.who.startswith("mlprod") and run.seconds is not None:
            print(f"  mlprod at {run.reference_rows:,} rows: reference profile (read + sketch) "
                  f"{run.info['reference_seconds']:.2f} s, window (read + sketch) and drift checks "
                  f"{run.seconds - run.info['reference_seconds']:.2f} s")  # fmt: skip
            if len(run.info.get("repeats", [])) > 1:
                every = ", ".join(seconds_cell(s) for s in run.info["repeats"])
                cpus = ", ".join(seconds_cell(s) for s in run.info["cpu_repeats"])
                print(f"    the median of {len(run.info['repeats'])} runs (--mlprod-repeats, the first "
                      f"before the peers, the others after them): {every} s; cpu {cpus} s")  # fmt: skip
            if run.info.get("cpu_seconds") is not None:
                per_million = run.info.get("median_cpu", run.info["cpu_seconds"]) / run.reference_rows * 1e6
                print(f"    {per_million:.2f} CPU s per million reference rows (x {args.columns} columns, "
                      f"with the {args.current_rows:,} current rows and the checks)")  # fmt: skip

    big = by.get("mlprod-big")
    if mlprod is not None and big is not None and big.seconds is not None and mlprod.seconds is not None:
        growth = big.reference_rows / mlprod.reference_rows
        kept = agreement(big.flagged, mlprod.flagged)
        print(f"\nmlprod at {big.reference_rows:,} reference rows: {big.seconds:,.2f} s "
              f"({big.seconds / mlprod.seconds:,.1f}x the time for {growth:g}x the rows), peak RSS "
              f"{mb(big.peak_bytes)} MB vs {mb(mlprod.peak_bytes)} MB at {mlprod.reference_rows:,} rows; "
              f"flagged columns vs those at {mlprod.reference_rows:,} rows: {kept}")  # fmt: skip

    same = evidently is not None and mlprod is not None and evidently.flagged == mlprod.flagged
    found = mlprod is not None and mlprod.flagged == planted
    print(f"\ngoal: at least {GOAL:g}x faster than Evidently at {args.reference_rows:,} rows in wall time "
          f"and in CPU seconds, flagging the same shifted columns (load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    if args.reference_rows != 1_000_000:
        print("  (the goal is set at 1,000,000 reference rows: at another size the verdicts are indicative)")
    if evidently is None:
        print("  Evidently not run (--skip-peers or --peers)")
    else:
        for what, (text, value) in (
            ("wall", ratio(evidently, mlprod)),
            ("CPU", cpu_ratio(evidently, mlprod)),
        ):
            verdict = "PASS" if value is not None and value >= GOAL else "FAIL"
            print(f"  Evidently/mlprod {what}: {text}  {verdict}")
        print(f"  same flagged columns as Evidently: {'yes' if same else 'NO'}  {'PASS' if same else 'FAIL'}")
    print(f"  mlprod flagged exactly the planted columns: {'yes' if found else 'NO'}")


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == MLPROD_CHILD:
        mlprod_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--current-rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=50, help="four fifths numeric, one fifth categorical")
    parser.add_argument(
        "--big-rows", type=int, default=10_000_000, help="reference rows of mlprod alone; 0: skip"
    )
    parser.add_argument(
        "--batch-rows", type=int, default=250_000, help="rows per Parquet row group of the generated data"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mlprod-workers",
        default="auto",
        help="threads mlprod reads and sketches with: a number, or 'auto' (the library's default: the idle "
        "cores by the load average)",
    )
    parser.add_argument(
        "--mlprod-repeats",
        type=int,
        default=3,
        help="mlprod runs at --reference-rows; the median is reported",
    )
    parser.add_argument("--skip-peers", action="store_true", help="run mlprod only")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers to run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a preset to iterate with (a few minutes): "
        + ", ".join(f"--{key.replace('_', '-')} {value}" for key, value in QUICK.items())
        + " unless given",
    )
    parser.add_argument(
        "--peer-timeout", type=float, default=1800.0, help="seconds per Evidently/NannyML run"
    )
    parser.add_argument("--mlprod-timeout", type=float, default=1800.0, help="seconds per mlprod run")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=default_memory_limit(), help="RSS at which a run is stopped"
    )
    parser.add_argument("--work-dir", type=Path, help="keep data and outputs here (reused if it matches)")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    peers = [] if args.skip_peers else [who for who in args.peers.split(",") if who]
    if any(who not in PEERS for who in peers):
        parser.error(f"--peers takes some of {','.join(PEERS)}, got {args.peers!r}")
    if args.reference_rows < 1000 or args.current_rows < 100 or args.columns < 5 or args.batch_rows < 1000:
        parser.error(
            "need --reference-rows >= 1000, --current-rows >= 100, --columns >= 5, --batch-rows >= 1000"
        )
    if not (
        args.mlprod_workers == "auto" or (args.mlprod_workers.isdigit() and int(args.mlprod_workers) >= 1)
    ):
        parser.error(f"--mlprod-workers takes 'auto' or a number >= 1, got {args.mlprod_workers!r}")
    if args.mlprod_repeats < 1:
        parser.error("need --mlprod-repeats >= 1")

    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        work = (args.work_dir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        specs = ensure_data(work, args)
        # one mlprod run before the peers and the others after them, so that a change of load
        # during the minutes the peers take reaches both sides
        repeats = [run_mlprod("mlprod", work / "reference.parquet", args.reference_rows, work, args)]
        runs = [run_peer(who, work, args) for who in peers]
        repeats += [
            run_mlprod("mlprod", work / "reference.parquet", args.reference_rows, work, args)
            for _ in range(args.mlprod_repeats - 1)
        ]
        runs.append(median_run(repeats))
        if args.big_rows > 0:
            runs.append(run_mlprod("mlprod-big", work / "big_reference.parquet", args.big_rows, work, args))
        report(runs, specs, args)


if __name__ == "__main__":
    main()
