"""Where mlprod's time goes per request, in process: ``PredictionService.predict`` timed and profiled.

Run after ``run.py --work-dir DIR`` prepared the context model:
``.venv/bin/python bench/serve/profile_service.py DIR [--requests 2000] [--rounds 5] [--top 25]``.

Builds the service exactly as ``mlprod serve`` does (``ServeOptions.from_config``, a prediction log
writer, here into a temporary directory) over the prepared workspace, then on one event loop:

1. times ``predict`` for the entity-key request (lookup on) and for the complete row (no lookup);
2. times the parts of the lookup path on their own: ``FeatureLookup.get``, the online store's
   ``read_entries_shared`` (the four views: a ``PRAGMA data_version`` check when the records are cached,
   as they are for a repeated entity; else one SQLite query), and the same read with the cache emptied
   before each call (the first request for an entity), the encoder, the model, the log append;
   all interleaved over ``--rounds`` rounds, keeping each one's lowest median (the machine is shared);
3. profiles the lookup request with ``cProfile`` and prints the functions by own time.

No HTTP: the server's parsing and framing come on top (compare with the table of ``run.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from prepare import KEYS, prepare_model


def timed(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Median and p99 microseconds of ``call`` over ``n`` calls (after ``n // 10`` warm-up calls)."""
    for _ in range(max(1, n // 10)):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work", type=Path, help="the --work-dir of a run.py run with the context model")
    parser.add_argument("--requests", type=int, default=2000, help="calls of each part per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the lowest median is kept")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    model = prepare_model(args.work.resolve(), "context", sample=1.0)
    assert model.lookup_row is not None and model.as_of is not None

    from mlprod.demo import features as demo_features
    from mlprod.features.online import FeatureLookup
    from mlprod.serve import PredictionLogWriter
    from mlprod.serve.service import PredictionService, ServeOptions
    from mlprod.workspace import Workspace

    lookup_payload = {"rows": [model.lookup_row], "as_of": model.as_of}
    rows_payload = {"rows": [model.row]}
    target = f"{model.name}@champion"
    at = datetime.fromisoformat(model.as_of)
    keys = {k: model.lookup_row[k] for k in KEYS}
    n = args.requests

    with tempfile.TemporaryDirectory() as log_dir, Workspace.open(model.workspace) as ws:
        writer = PredictionLogWriter(log_dir, flush_interval=1.0)
        service = PredictionService(ws, ServeOptions.from_config(ws), writer)
        loop = asyncio.new_event_loop()
        try:

            def predict(payload: dict[str, Any]) -> Callable[[], Any]:
                return lambda: loop.run_until_complete(service.predict(target, payload))

            answer = predict(lookup_payload)()
            assert abs(answer.predictions[0] - model.expected) < 1e-4, answer
            assert answer.feature_misses is None, answer.feature_misses
            served = service.pool.peek(target)
            assert served is not None and "online" in served.extras, "the service does no online lookup"
            store = served.extras["online"].lookup.store
            lookup = FeatureLookup(store, demo_features.flight_context)
            entries = [
                (view, FeatureLookup._key(view, columns, keys))
                for view, columns, _, _ in lookup._views  # the one store query get() sends
            ]
            matrix = served.model.encoder.encode_rows([model.row])

            def uncached(entries: list[tuple[str, str]]) -> Any:
                store._thread_connection().cache.clear()  # as for an entity not read before
                return store.read_entries_shared(entries)

            def log_append() -> None:
                writer.append(
                    request_id="r", model=model.name, version=model.version, route="direct",
                    inputs=[{**model.row, "tailnum": model.lookup_row["tailnum"]}],  # type: ignore[index]
                    predictions=[0.5], latency_ms=0.1,
                )  # fmt: skip

            parts = [
                ("predict, entity keys (lookup on)", predict(lookup_payload)),
                ("predict, complete row (no lookup)", predict(rows_payload)),
                ("  FeatureLookup.get (4 views)", lambda: lookup.get(keys, at=at)),
                ("    store.read_entries_shared (cached)", lambda: store.read_entries_shared(entries)),
                ("    the same, cache emptied (1 SQLite query)", lambda: uncached(entries)),
                ("  OnlineInputs.fill", lambda: served.extras["online"].fill([model.lookup_row], at=at)),
                ("  encoder.encode_rows", lambda: served.model.encoder.encode_rows([model.row])),
                ("  model.predict_matrix (ONNX)", lambda: served.model.predict_matrix(matrix)),
                ("  prediction log append", log_append),
            ]
            print(
                f"{model.name}/{model.version}, {model.flight}; {n} calls each in {args.rounds} interleaved "
                "rounds, in process, no HTTP; the round with the lowest median"
            )
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                for label, call in parts:
                    median, p99 = timed(call, n)
                    if label not in best or median < best[label][0]:
                        best[label] = median, p99
            print(f"{'':<42}{'median µs':>10}{'p99 µs':>10}")
            for label, (median, p99) in best.items():
                print(f"{label:<42}{median:>10.1f}{p99:>10.1f}")

            profiler = cProfile.Profile()
            call = predict(lookup_payload)
            profiler.enable()
            for _ in range(n):
                call()
            profiler.disable()
            print(f"\ncProfile of {n} lookup requests (own time, top {args.top}):")
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(args.top)
            print(f"cumulative, top {args.top}:")
            stats.sort_stats("cumulative").print_stats(args.top)
        finally:
            loop.close()
            service.close()
            writer.close()


if __name__ == "__main__":
    main()
