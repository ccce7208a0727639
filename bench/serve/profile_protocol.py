"""Server CPU per request, native API vs Open Inference Protocol, in one process: the ASGI app as served.

Run after ``run.py --work-dir DIR`` prepared the context model:
``.venv/bin/python bench/serve/profile_protocol.py DIR [--requests 500] [--rounds 20] [--profile oip]``.

Builds the app exactly as ``mlprod serve`` does (``create_app``, its lifespan started: the prediction
log on) over the prepared workspace and calls it as uvicorn would, with the bodies of ``run.py``'s
``mlprod-rows`` (native, the complete row) and ``mlprod-oip`` (the same row as protocol tensors)
targets, in interleaved rounds. Each round measures the process's CPU time over ``--requests``
requests of one kind (so the prediction log's writer thread is counted too); printed are the lowest
per kind and the median of the rounds' ratios (a neighbour's load moves both kinds of a round alike).
CPU time is far less sensitive to a shared machine's load than requests per second. Uvicorn's
HTTP parsing and socket writes are not included (a few tens of µs, nearly the same for both).
``--profile native|oip`` then prints a ``cProfile`` of that kind's requests by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from prepare import prepare_model
from run import mlprod_oip_target, mlprod_rows_target


class Caller:
    """One request kind, sent to the ASGI app as uvicorn sends it; the answer's status is checked."""

    def __init__(self, app: Any, path: str, body: bytes) -> None:
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        self.app = app
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        self.message = {"type": "http.request", "body": body, "more_body": False}
        self.status = 0
        self.answer = b""

    async def receive(self) -> dict[str, Any]:
        return self.message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.answer = message.get("body", b"")

    async def many(self, n: int) -> None:
        for _ in range(n):
            await self.app(dict(self.scope), self.receive, self.send)
            if self.status != 200:
                raise SystemExit(f"{self.scope['path']} answered {self.status}: {self.answer[:300]!r}")


async def _lifespan(app: Any) -> tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]:
    """Start the app's lifespan (what uvicorn does before serving); returns what ends it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise SystemExit(f"lifespan: {message}")

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    )
    await started.wait()
    return inbox, task


async def _run(args: argparse.Namespace) -> None:
    from mlprod.serve import create_app
    from mlprod.workspace import Workspace

    model = prepare_model(args.work.resolve(), "context", sample=1.0)
    native, oip = mlprod_rows_target(model), mlprod_oip_target(model)
    with Workspace.open(model.workspace) as ws:
        app = create_app(ws)
        inbox, lifespan = await _lifespan(app)
        try:
            callers = {
                "native": Caller(app, native.path, json.dumps(native.body).encode()),
                "oip": Caller(app, oip.path, json.dumps(oip.body).encode()),
            }
            for caller in callers.values():  # loads the model; warms the caches and the body templates
                await caller.many(200)
            sizes = {kind: len(c.message["body"]) for kind, c in callers.items()}
            print(f"{model.name}/{model.version}; bodies: native {sizes['native']} B, oip {sizes['oip']} B; "
                  f"{args.requests} requests a kind in {args.rounds} rounds, process CPU time")  # fmt: skip
            cpu: dict[str, list[float]] = {kind: [] for kind in callers}
            for _ in range(args.rounds):
                for kind, caller in callers.items():
                    started = time.process_time()
                    await caller.many(args.requests)
                    cpu[kind].append((time.process_time() - started) / args.requests * 1e6)
            native_us, oip_us = cpu["native"], cpu["oip"]
            ratios = sorted(n / o for n, o in zip(native_us, oip_us, strict=True))
            print(f"native {min(native_us):.1f} µs, oip {min(oip_us):.1f} µs (lowest of the rounds); "
                  f"oip/native by CPU per request: {min(native_us) / min(oip_us):.2f}x of the lowest, "
                  f"{statistics.median(ratios):.2f}x the median of the rounds' ratios "
                  f"({ratios[0]:.2f}x-{ratios[-1]:.2f}x)")  # fmt: skip
            if args.profile:
                caller = callers[args.profile]
                await print_profile(caller, args.profile, args.requests, args.top, "tottime", "cumulative")
        finally:
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan


async def print_profile(caller: Caller, name: str, requests: int, top: int, *orders: str) -> None:
    """cProfile of ``requests`` calls of ``caller``, its ``top`` functions by each of ``orders``."""
    profiler = cProfile.Profile()
    profiler.enable()
    await caller.many(requests)
    profiler.disable()
    print(f"\ncProfile of {requests} {name} requests (own time, top {top}):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    for order in orders:
        stats.sort_stats(order).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work", type=Path, help="the --work-dir of a run.py run with the context model")
    parser.add_argument("--requests", type=int, default=500, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--profile", choices=["native", "oip"], help="then cProfile that kind's requests")
    parser.add_argument("--top", type=int, default=30)
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
