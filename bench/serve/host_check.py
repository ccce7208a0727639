"""What the Host check (DNS-rebinding guard) adds to the native predict fast path, in-process.

``python bench/serve/host_check.py [--requests 5000] [--rounds 5]``

Builds the real app (``create_app``) over a workspace with a small LightGBM model and calls it as an
ASGI application, no sockets, so the figures are the server's own CPU per request. Each round sends
the same predict request to the fast path alone, to the Host check in front of it, and to the whole
app, interleaved; and times the Host check around a no-op app against the no-op app alone. Prints
the median microseconds per request and the ratio checked / unchecked (goal: <= 1.05x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.conftest

from tests.conftest import make_frame, train_toy

from mlprod.models import Registry
from mlprod.serve import create_app
from mlprod.serve.host_check import HostCheck, allowed_host_names
from mlprod.workspace import Workspace

ASGI = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
BODY = json.dumps({"rows": [{"x": 0.3, "c": "a"}]}).encode()
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"), (b"content-length", b"30")]


def scope() -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/models/toy/predict", "raw_path": b"/v1/models/toy/predict",
        "query_string": b"", "root_path": "", "headers": HEADERS, "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip


async def send_requests(app: ASGI, n: int) -> float:
    """Microseconds per request over ``n`` requests; every answer must be a 200."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(n):
        await app(scope(), receive, send)
    elapsed = time.perf_counter() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return elapsed / n * 1e6


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Workspace.init(Path(tmp) / "ws") as workspace:
        trained = train_toy(make_frame(2000), rounds=50)
        registry = Registry(workspace)
        registry.register("toy", trained.model, signature=trained.signature)
        registry.set_alias("toy", "champion", 1)
        app = create_app(workspace)
        app.state.service.reload_routes()
        app.middleware_stack = app.build_middleware_stack()
        host_check: Any = app.middleware_stack  # ServerErrorMiddleware -> ... -> HostCheck -> fast path
        while not isinstance(host_check, HostCheck):
            host_check = host_check.app
        fast_path = host_check.app

        async def nothing(scope: Any, receive: Any, send: Any) -> None:
            return None

        bare_check = HostCheck(nothing, allowed_host_names("127.0.0.1", ""))
        await send_requests(app, 200)  # load the model, warm caches
        alone: list[float] = []
        checked: list[float] = []
        full: list[float] = []
        check: list[float] = []
        bare: list[float] = []
        for _ in range(rounds):
            alone.append(await send_requests(fast_path, requests))
            checked.append(await send_requests(host_check, requests))
            full.append(await send_requests(app, requests))
            for target, into in ((bare_check, check), (nothing, bare)):
                started = time.perf_counter()
                for _ in range(requests):
                    await target(scope(), None, None)
                into.append((time.perf_counter() - started) / requests * 1e6)
    alone_us, checked_us, full_us = (statistics.median(x) for x in (alone, checked, full))
    check_us = statistics.median(c - b for c, b in zip(check, bare, strict=True))
    print(f"{requests} predict requests x {rounds} interleaved rounds, in-process ASGI, one row each")
    print(f"  fast path alone                   {alone_us:8.1f} µs/request (rounds: {_fmt(alone)})")
    print(f"  Host check + fast path            {checked_us:8.1f} µs/request (rounds: {_fmt(checked)})")
    print(f"  whole app (outer middleware too)  {full_us:8.1f} µs/request (rounds: {_fmt(full)})")
    print(f"  the Host check alone (vs a no-op app): {check_us:.2f} µs/request")
    ratio = checked_us / alone_us
    verdict = "PASS" if ratio <= 1.05 else "FAIL"
    print(f"  ratio Host check + fast path / fast path: {ratio:.3f}x (goal <= 1.05x): {verdict}")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
