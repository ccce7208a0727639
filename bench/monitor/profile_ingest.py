"""What mlprod's side of ``drift_speed.py`` costs per configuration, on this machine at its present load.

Run: ``.venv/bin/python bench/monitor/profile_ingest.py [--rounds 4] [--configs rows-2,chunks-1,...]
[--work-dir DIR] [--reference-rows 1000000]`` (the data of ``drift_speed.py``, generated when missing).

Each configuration profiles the same reference Parquet file, builds a window of the current one and
runs the drift checks, in a fresh process as ``drift_speed.py`` does (a process's first touches of
memory are part of what load makes expensive, so a warm loop would hide them). The configurations
run in turns, ``--rounds`` times, so load changes reach them all; the table prints medians: wall and
CPU seconds per million reference rows, the system part of the CPU, minor page faults, the growth of
peak RSS during the timed part, and the CPU ratio against ``rows-2``.

* ``rows-N``: the ingest on main before column chunks: N threads each read whole row groups in
  record batches of all columns (``ReferenceBuilder.update``; the window fed the same way).
* ``chunks-N``: ``reference_from_parquet`` / ``window_from_parquet`` as now: units of one column chunk;
  ``chunks-auto`` lets ``default_workers()`` pick N from the load average.
* ``...-1pool``: the same with Arrow's CPU pool at one thread and OMP/OpenBLAS at one thread, to see
  whether those thread pools matter (they do not: the work calls them little).

Measured on the 2-core VM shared with other jobs (``nice python bench/monitor/profile_ingest.py
--rounds 3``, load average 7.0-10.8, Evidently running alongside; medians, per million rows):

    config          threads  wall s/M  cpu s/M  sys s/M  faults  RSS growth MB  cpu vs rows-2
    rows-2                2     10.33     2.92     1.75  23,466            510          1.00x
    rows-1                1      6.91     2.03     0.86  18,675            276          0.69x
    rows-2-1pool          2     10.62     3.18     1.85  24,391            513          1.09x
    chunks-2              2      5.34     1.65     0.30  13,280             92          0.57x
    chunks-1              1      5.12     1.54     0.25   7,608             67          0.53x
    chunks-auto           1      5.15     1.47     0.17   5,881             65          0.50x
    chunks-2-1pool        2      5.61     1.48     0.23  14,012             89          0.51x

An earlier run at load 11.9-13.9 (4 rounds) gave rows-2 2.86 CPU s/M (1.60 in the kernel) and every
``chunks`` configuration 1.45-1.51 (0.17-0.26 in the kernel): the CPU that load added was system
time for fresh memory, and it follows the memory a configuration touches, not its thread count.
At load 2.3-2.8 (3 rounds): rows-2 3.01 CPU s/M (1.69 in the kernel), 4.55 s/M wall; chunks-1 1.19
and 1.66 s/M wall; chunks-2 1.26 and 2.10 (no core idle, so a second thread did not help); auto
chose 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import reduce
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
CHILD = "--child"
CONFIGS = ["rows-2", "rows-1", "rows-2-1pool", "chunks-2", "chunks-1", "chunks-auto", "chunks-2-1pool"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MLPROD_BENCH_ARROW_CPUS": "1"}


def rows_reference(path: Path, spec: Any, workers: int) -> Any:
    """main's ``reference_from_parquet`` before column chunks: threads take row groups, read all columns."""
    import pyarrow.parquet as pq

    from mlprod.monitor.parallel_profile import DEFAULT_BATCH_ROWS
    from mlprod.monitor.profile import ReferenceBuilder

    strings = list(spec.categorical)
    groups: queue.SimpleQueue[int] = queue.SimpleQueue()
    for group in range(pq.ParquetFile(path).num_row_groups):
        groups.put(group)

    def work() -> Any:
        builder = ReferenceBuilder(spec)
        parquet = pq.ParquetFile(path, pre_buffer=False, read_dictionary=strings)
        while True:
            try:
                group = groups.get_nowait()
            except queue.Empty:
                return builder
            for batch in parquet.iter_batches(
                batch_size=DEFAULT_BATCH_ROWS,
                row_groups=[group],
                columns=list(spec.kinds()),
                use_threads=False,
            ):
                builder.update(batch)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        builders = [future.result() for future in [pool.submit(work) for _ in range(workers)]]
    return reduce(lambda left, right: left.merge(right), builders)


def child(work: Path, config: str) -> None:
    """One configuration in this fresh process; prints its figures as one JSON line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlprod.monitor.drift import drift_checks, drifted_columns
    from mlprod.monitor.parallel_profile import (
        DEFAULT_BATCH_ROWS,
        default_workers,
        reference_from_parquet,
        window_from_parquet,
    )
    from mlprod.monitor.profile import ProfileSpec

    if os.environ.get("MLPROD_BENCH_ARROW_CPUS"):
        pa.set_cpu_count(int(os.environ["MLPROD_BENCH_ARROW_CPUS"]))
    columns = json.loads((work / "columns.json").read_text())
    spec = ProfileSpec(
        numeric=tuple(columns["numeric"]),
        categorical=tuple(columns["categorical"]),
        prediction=None,
        label=None,
    )
    how, threads = config.split("-")[:2]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    workers = default_workers() if threads == "auto" else int(threads)
    if how == "rows":
        reference = rows_reference(work / "reference.parquet", spec, workers).finish()
        window = reference.window()
        parquet = pq.ParquetFile(
            work / "current.parquet", pre_buffer=False, read_dictionary=columns["categorical"]
        )
        for batch in parquet.iter_batches(batch_size=DEFAULT_BATCH_ROWS, columns=list(spec.kinds())):
            window.update(batch)
    else:
        reference = reference_from_parquet(work / "reference.parquet", spec, workers=workers).finish()
        window = window_from_parquet(reference, work / "current.parquet", workers=workers)
    flagged = sorted(drifted_columns(drift_checks(reference, window)))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "seconds": seconds,
        "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        "sys": after.ru_stime - before.ru_stime,
        "faults": after.ru_minflt - before.ru_minflt,
        "rss_growth": (after.ru_maxrss - before.ru_maxrss) * 1024,
        "rows": reference.rows,
        "workers": workers,
        "flagged": flagged,
    }))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(Path(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"comma-separated, of {','.join(CONFIGS)}"
    )
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, help="drift_speed.py's data here (reused if it matches)")
    args = parser.parse_args()
    configs = [config for config in args.configs.split(",") if config]
    if args.rounds < 1 or any(config not in CONFIGS for config in configs):
        parser.error(f"need --rounds >= 1 and --configs among {','.join(CONFIGS)}")

    import drift_speed  # this folder: its data

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = (args.work_dir or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        data = argparse.Namespace(
            reference_rows=args.reference_rows, current_rows=100_000, columns=50, big_rows=0, seed=0,
            batch_rows=250_000,
        )  # fmt: skip
        drift_speed.ensure_data(work, data)
        loads = [os.getloadavg()[0]]
        found: dict[str, list[dict[str, Any]]] = {config: [] for config in configs}
        for round_ in range(args.rounds):
            for config in configs:
                env = dict(os.environ, **(ONE_THREAD if config.endswith("1pool") else {}))
                done = subprocess.run(
                    [sys.executable, str(HERE), CHILD, str(work), config],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode:
                    sys.exit(f"{config} failed: {done.stderr[-2000:]}")
                found[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
                loads.append(os.getloadavg()[0])
            print(f"round {round_ + 1}/{args.rounds} done (load average {loads[-1]:.1f})", file=sys.stderr)
    report(found, loads)


def report(found: dict[str, list[dict[str, Any]]], loads: list[float]) -> None:
    baseline = statistics.median(run["cpu"] for run in found.get("rows-2", [])) if "rows-2" in found else None
    header = (
        "config",
        "threads",
        "wall s/M",
        "cpu s/M",
        "sys s/M",
        "faults",
        "RSS growth MB",
        "cpu vs rows-2",
    )
    rows = []
    for config, runs in found.items():
        millions = runs[0]["rows"] / 1e6

        def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        rows.append((
            config,
            ",".join(sorted({str(run["workers"]) for run in runs})),
            f"{median('seconds') / millions:.2f}",
            f"{median('cpu') / millions:.2f}",
            f"{median('sys') / millions:.2f}",
            f"{median('faults'):,.0f}",
            f"{median('rss_growth') / 1e6:,.0f}",
            "-" if baseline is None else f"{median('cpu') / baseline:.2f}x",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    flagged = {json.dumps(run["flagged"]) for runs in found.values() for run in runs}
    rounds = len(next(iter(found.values())))
    print(f"\nmedians of {rounds} fresh processes each, run in turns; per million reference "
          f"rows x 50 columns (with 100,000 current rows and the checks); load average {min(loads):.1f}-"
          f"{max(loads):.1f} on {os.cpu_count()} cores; every run flagged the same columns: "
          f"{'yes' if len(flagged) == 1 else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
