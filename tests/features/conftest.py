"""A real Redis server for the online-store tests: skipped locally without redis-server, required in CI."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a throw-away ``redis-server`` on a free loopback port, stopped after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH; .ci/run must install it")
        pytest.skip("install redis-server to run the Redis online-store tests (.ci/run does)")
    workdir = tmp_path_factory.mktemp("redis")
    for _ in range(3):  # another process may take the free port before the server binds it
        port = free_port()
        server = _start(binary, port, workdir)
        if server is not None:
            break
    else:
        pytest.fail(f"redis-server did not start; see {workdir / 'redis.log'}")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _start(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes] | None:
    """A started server answering PING, or None if it exited (port taken)."""
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                return None
            try:  # the pid tells our server from another one that took the port first
                if client.ping() and client.info("server")["process_id"] == server.pid:
                    return server
                break
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    server.kill()
    server.wait()
    if time.monotonic() < deadline:
        return None
    pytest.fail(f"redis-server on port {port} did not answer PING within 15 s; see {workdir / 'redis.log'}")
