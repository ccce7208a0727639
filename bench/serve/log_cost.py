"""What the durable prediction log costs per request, in one process: write-ahead on vs off.

Run after ``run.py --work-dir DIR`` prepared the context model:
``.venv/bin/python bench/serve/log_cost.py DIR [--requests 200] [--rounds 60] [--profile durable|buffered]``.

Builds two apps exactly as ``mlprod serve`` does (``create_app``, lifespans started) over the
prepared workspace, one with the write-ahead log (``prediction_log.write_ahead = true``, the
default: ``mlprod`` in ``run.py``) and one without (``mlprod-buffered``), and sends both the
``mlprod`` request (entity keys, the 15 context features looked up, the prediction logged) as
uvicorn would, in interleaved rounds (ABBA order), each timed as the process's CPU time. The logs
are not flushed meanwhile (flush interval set to an hour): the Parquet conversion is the same work
with and without the write-ahead segment, and a flush landing in one round and not the other is
noise. Printed: the lowest CPU per request of each, the median of the rounds' ratios (buffered /
durable: the throughput ratio the benchmark's goal is about, >= 0.9), the CPU seconds per 10,000
requests, then ``append`` alone, durable vs buffered, in µs per call. Uvicorn's HTTP parsing and
socket writes are not included (the same for both). ``LOG_COST_BUFFERED=true`` makes both apps
durable: the A/A run that shows how far two identical apps differ on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prepare import prepare_model
from profile_protocol import Caller, _lifespan, print_profile
from run import mlprod_target

KINDS = {"durable": "true", "buffered": os.environ.get("LOG_COST_BUFFERED", "false")}


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _append_cost(rows: list[dict[str, Any]], n: int, rounds: int) -> dict[str, float]:
    """Lowest median µs of ``PredictionLogWriter.append`` per kind (one row a call, interleaved)."""
    from mlprod.serve import PredictionLogWriter

    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        writers = {
            kind: PredictionLogWriter(Path(tmp) / kind, write_ahead=value == "true", flush_interval=0.5)
            for kind, value in KINDS.items()
        }
        try:
            for _ in range(rounds):
                for kind, writer in writers.items():
                    samples = []
                    for i in range(n):
                        started = time.perf_counter_ns()
                        writer.append(request_id=f"r{i}", model="m", version=1, route="champion",
                                      inputs=rows, predictions=[0.25], latency_ms=0.5)  # fmt: skip
                        samples.append(time.perf_counter_ns() - started)
                    median = statistics.median(samples) / 1000
                    best[kind] = min(best.get(kind, median), median)
        finally:
            for writer in writers.values():
                writer.close()
    return best


async def _run(args: argparse.Namespace) -> None:
    from mlprod.serve import create_app
    from mlprod.workspace import Workspace

    model = prepare_model(args.work.resolve(), "context", sample=1.0)
    target = mlprod_target(model)
    body = json.dumps(target.body).encode()
    with contextlib.ExitStack() as stack:
        apps: dict[str, Any] = {}
        for kind, value in KINDS.items():
            with (
                _environment("MLPROD_PREDICTION_LOG_WRITE_AHEAD", value),
                _environment("MLPROD_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS", "3600"),
                _environment("MLPROD_PREDICTION_LOG_MAX_BUFFERED_ROWS", "10000000"),
            ):
                ws = stack.enter_context(Workspace.open(model.workspace))
            apps[kind] = create_app(ws)
        lifespans = [await _lifespan(app) for app in apps.values()]
        try:
            callers = {kind: Caller(app, target.path, body) for kind, app in apps.items()}
            writers = {kind: app.state.service.prediction_log for kind, app in apps.items()}
            assert writers["durable"].write_ahead
            for caller in callers.values():  # loads the model; warms the caches
                await caller.many(200)
            print(f"{model.name}/{model.version}, the mlprod request ({len(body)} B, 15 features looked up); "
                  f"{args.requests} requests a kind in {args.rounds} rounds, process CPU time incl. the "
                  "log's flush to Parquet")  # fmt: skip
            cpu: dict[str, list[float]] = {kind: [] for kind in callers}
            for round_ in range(args.rounds):
                order = list(callers.items())
                for kind, caller in order if round_ % 2 else order[::-1]:  # ABBA: no order bias
                    started = time.process_time()
                    await caller.many(args.requests)
                    cpu[kind].append((time.process_time() - started) / args.requests * 1e6)
            durable, buffered = cpu["durable"], cpu["buffered"]
            ratios = sorted(b / d for b, d in zip(buffered, durable, strict=True))
            for kind, values in (("buffered", buffered), ("durable", durable)):
                print(f"  {kind:<9} {min(values):7.1f} µs/req  {min(values) / 100:.3f} CPU s / 10k (lowest)")
            print(f"  durable / buffered by CPU per request: {min(buffered) / min(durable):.3f}x of the "
                  f"lowest, {statistics.median(ratios):.3f}x the median of the rounds' ratios "
                  f"({ratios[0]:.3f}x-{ratios[-1]:.3f}x)   goal >= 0.9x")  # fmt: skip
            if args.profile:
                await print_profile(callers[args.profile], args.profile, args.requests, args.top, "tottime")
        finally:
            for inbox, task in lifespans:
                await inbox.put({"type": "lifespan.shutdown"})
                await task
    append = _append_cost([model.row], args.requests, args.rounds)
    extra = append["durable"] - append["buffered"]
    print(f"append alone (one logged row, lowest median): durable {append['durable']:.1f} µs, "
          f"buffered {append['buffered']:.1f} µs ({extra:+.1f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work", type=Path, help="the --work-dir of a run.py run with the context model")
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds")
    parser.add_argument("--profile", choices=list(KINDS), help="then cProfile that kind's requests")
    parser.add_argument("--top", type=int, default=30)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
