"""Batch prediction throughput: ``predict_file`` (and Ray Data) against a plain loop, side by side.

Run: ``.venv/bin/python bench/batch_predict.py [--rows 10000000] [--chunk-rows 100000] [--ray]``.
Trains the schedule-only flights model (LightGBM, 200 trees) in a temporary workspace as
``serve_latency.py`` does, synthesizes ``--rows`` inputs by resampling the July flights, writes them to
Parquet, then runs each way in its own subprocess (so each has its own peak RSS) on the same file:

- plain loop: read the whole file, ``LoadedModel.predict_frame`` on 100k-row pandas chunks, write
  inputs + predictions with ``pq.write_table``;
- ``predict_file`` local engine: streamed chunks, Arrow encoding, read-ahead thread;
- ``predict_file`` on Ray Data (``--ray``): timed on an already started local Ray (start time shown).

Prints rows/s, the ratio to the plain loop and each run's peak RSS, and checks the predictions agree.
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
from pathlib import Path

PIECE_ROWS = 1_000_000


def make_inputs(workspace: Path, path: Path, rows: int) -> tuple[str, int]:
    """Train the model; write ``rows`` resampled July flights (model inputs only) to ``path``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlprod.data import TableStore
    from mlprod.demo.flights import load_flights, training_spec
    from mlprod.models import Registry, build_frame, run_training
    from mlprod.workspace import Workspace

    with Workspace.init(workspace) as ws:
        spec = training_spec("lightgbm", rounds=200, context=False)
        TableStore(ws).create("flights", key=["flight_id"], data=load_flights(range(1, 7)))
        TableStore(ws).tag("flights", "jan-jun")
        version = run_training(ws, spec).version
        assert version is not None
        Registry(ws).set_alias(spec.model, "champion", version.version)
        inputs = list(Registry(ws).load(f"{spec.model}@champion").signature.input_names)
        july = pa.Table.from_pandas(build_frame(spec, load_flights([7]))[inputs], preserve_index=False)
    rng = np.random.default_rng(7)
    with pq.ParquetWriter(path, july.schema) as writer:
        for start in range(0, rows, PIECE_ROWS):
            take = rng.integers(0, july.num_rows, size=min(PIECE_ROWS, rows - start))
            writer.write_table(july.take(take))
    return f"{spec.model}@champion", int(spec.estimator.params["n_estimators"])


def worker(mode: str, workspace: str, ref: str, source: str, output: str, chunk_rows: int) -> None:
    """One timed run, in its own process; prints a JSON line."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlprod.models import Registry
    from mlprod.serve.batch_predict import predict_file
    from mlprod.workspace import Workspace

    with Workspace.open(workspace) as ws:
        model = Registry(ws).load(ref)
    extra: dict[str, float] = {}
    if mode == "ray":
        import logging

        import ray

        started = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        extra["start_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    if mode == "plain":
        table = pq.read_table(source)
        frame = table.to_pandas()
        predictions = np.concatenate(
            [model.predict_frame(frame.iloc[i : i + chunk_rows]) for i in range(0, len(frame), chunk_rows)]
        )
        pq.write_table(table.append_column(model.signature.output, pa.array(predictions)), output)
        rows = len(frame)
    else:
        engine = "ray" if mode == "ray" else "local"
        rows = predict_file(
            model, Path(source), Path(output), chunk_rows=chunk_rows, engine=engine, workspace=Path(workspace)
        ).rows
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started, **extra}))


def run(mode: str, args: list[str]) -> tuple[dict[str, float], float]:
    """Run one mode in a subprocess; its result and its peak RSS in MB.

    Linux carries the parent's peak RSS into a forked child, so this process stays small (standard
    library only) and the data is made in a subprocess too.
    """
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", mode, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{stderr}")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--ray", action="store_true", help="also run predict_file on Ray Data")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    known, rest = parser.parse_known_args()
    if known.worker == "prepare":
        ref, trees = make_inputs(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps({"ref": ref, "trees": trees}))
        return
    if known.worker:
        workspace, ref, source, output, chunk_rows = rest
        worker(known.worker, workspace, ref, source, output, int(chunk_rows))
        return

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        source = Path(tmp) / "inputs.parquet"
        made = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                "prepare",
                str(Path(tmp) / "ws"),
                str(source),
                str(known.rows),
            ],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise SystemExit(f"preparing the inputs failed:\n{made.stderr}")
        prepared = json.loads(made.stdout.strip().splitlines()[-1])
        ref, trees = prepared["ref"], prepared["trees"]
        size_mb = source.stat().st_size / 1e6
        print(
            f"{known.rows:,} rows ({size_mb:,.0f} MB Parquet) ready in {time.perf_counter() - started:.0f} s"
        )
        modes = ["plain", "local", *(["ray"] if known.ray else [])]
        results = {}
        for mode in modes:
            output = str(Path(tmp) / f"{mode}.parquet")
            results[mode] = run(
                mode, [str(Path(tmp) / "ws"), ref, str(source), output, str(known.chunk_rows)]
            )
            print(f"  {mode}: {results[mode][0]['seconds']:.1f} s", flush=True)
        import pyarrow.parquet as pq

        reference = pq.read_table(Path(tmp) / "plain.parquet", columns=["probability"])["probability"]
        for mode in modes[1:]:
            got = pq.read_table(Path(tmp) / f"{mode}.parquet", columns=["probability"])["probability"]
            assert got.equals(reference), f"{mode} predictions differ from the plain loop's"

    plain_rate = results["plain"][0]["rows"] / results["plain"][0]["seconds"]
    names = {
        "plain": "plain loop (pandas, 100k chunks)",
        "local": "predict_file local",
        "ray": "predict_file ray",
    }
    print(f"\nbatch prediction, {known.rows:,} rows, LightGBM {trees} trees, chunk {known.chunk_rows:,} rows")
    print(f"{'way':<36}{'seconds':>10}{'rows/s':>14}{'ratio':>9}{'peak RSS MB':>14}")
    for mode in modes:
        result, peak = results[mode]
        rate = result["rows"] / result["seconds"]
        seconds = result["seconds"]
        print(f"{names[mode]:<36}{seconds:>10.1f}{rate:>14,.0f}{rate / plain_rate:>9.2f}{peak:>14,.0f}")
    print("ratio = rows/s over the plain loop's; predictions identical in every way")
    if "ray" in results:
        start = results["ray"][0]["start_seconds"]
        print(f"ray: started in {start:.1f} s (not timed); peak RSS is the driver's, not its workers'")
    print(
        f"(this bench process peaked at {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)"
    )


if __name__ == "__main__":
    main()
