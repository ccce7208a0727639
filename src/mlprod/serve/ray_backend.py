"""Serving on Ray Serve: the routes of ``mlprod serve``, on N replicas behind Ray's HTTP proxy.

For when one machine is not enough. Each replica opens the workspace from its root path (a
``Workspace`` holds a database engine and never travels between processes) and builds the app with
``create_app``, so routes, error bodies and the prediction log are the local server's. Ray Serve runs
the app's lifespan in every replica: each replica writes its own prediction-log files and flushes
them when it is stopped. Replicas on other machines need the workspace on shared storage (or a
PostgreSQL metadata database and an fsspec artifact store) and mlprod installed.

Ray is optional (``pip install 'mlprod[ray]'``) and imported only when used.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.serve.app import create_app
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    from fastapi import FastAPI

APP_NAME = "mlprod"
DEPLOYMENT_NAME = "mlprod"
MAX_ONGOING_REQUESTS = 64  # per replica; the app is async and a small prediction takes ~1 ms
_CONNECT_TIMEOUT_SECONDS = 5.0
_LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # requests and answers are small; spare the shared memory
_INSTALL_HINT = "pip install 'mlprod[ray]'"


class RayServeHandle:
    """A running Ray Serve deployment of mlprod; ``shutdown()`` stops what ``serve_on_ray`` started."""

    def __init__(self, *, url: str, replicas: int, started_ray: bool) -> None:
        self.url = url
        self.replicas = replicas
        self.started_ray = started_ray
        self._stopped = False

    def replica_states(self) -> dict[str, int]:
        """Replica count by state (``{"RUNNING": 2}``), as Ray Serve reports it."""
        _, serve = _import_ray()
        app = serve.status().applications.get(APP_NAME)
        if app is None or DEPLOYMENT_NAME not in app.deployments:
            return {}
        return {str(state): int(n) for state, n in app.deployments[DEPLOYMENT_NAME].replica_states.items()}

    def running_replicas(self) -> int:
        return self.replica_states().get("RUNNING", 0)

    def wait(self) -> None:
        """Block until interrupted (Ctrl-C), then shut down; the interrupt is re-raised."""
        try:
            while True:
                time.sleep(1.0)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Delete the app (each replica flushes its prediction log), then stop Serve and Ray if ours.

        Serve is stopped only when no other application runs on it; Ray only when we started it.
        Calling this twice does nothing the second time.
        """
        if self._stopped:
            return
        self._stopped = True
        ray, serve = _import_ray()
        if not ray.is_initialized():
            return
        try:
            serve.delete(APP_NAME, _blocking=True)
            if not serve.status().applications:
                serve.shutdown()
        finally:
            if self.started_ray:
                ray.shutdown()

    def __enter__(self) -> RayServeHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"RayServeHandle(url={self.url!r}, replicas={self.replicas})"


def serve_on_ray(
    workspace_root: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    address: str | None = None,
    cpus_per_replica: float = 0.5,
    app_options: Mapping[str, Any] | None = None,
    blocking: bool = True,
) -> RayServeHandle:
    """Serve the workspace's models on Ray Serve with ``replicas`` copies of the app.

    ``address`` names a running Ray cluster (``host:port``, ``ray://host:port`` or ``auto``); without
    it a new local Ray instance is started, and stopped again by ``shutdown()``; a process already
    connected to Ray keeps that connection. ``port=0`` picks a free port (local Ray only).
    ``cpus_per_replica`` is the Ray CPU reservation of each replica (0.5: two fit on one core).
    ``app_options`` are passed to ``create_app`` in every replica. With ``blocking`` this serves
    until Ctrl-C (then shuts down and re-raises ``KeyboardInterrupt``); otherwise it returns
    the running handle, to be shut down by the caller.
    """
    if replicas < 1:
        raise InvalidInputError(f"replicas must be at least 1, got {replicas}")
    if cpus_per_replica < 0:
        raise InvalidInputError(f"cpus_per_replica must be 0 or more, got {cpus_per_replica}")
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"port must be between 0 and 65535, got {port}")
    root = Path(workspace_root).expanduser().resolve()
    Workspace.open(root).close()  # a bad workspace fails here, not in every replica
    ray, serve = _import_ray()
    if address is None:  # the proxy will listen on this machine
        port = _check_port(host, port)
    elif port == 0:
        raise InvalidInputError(
            "port 0 (any free port) needs a local Ray; name a port for the cluster's proxies"
        )
    else:
        _check_reachable(address)
    started_ray = _connect(ray, address)
    try:
        serve.start(http_options={"host": host, "port": port})
        deployment = serve.deployment(
            _replica_class(str(root), dict(app_options or {})),
            name=DEPLOYMENT_NAME,
            num_replicas=replicas,
            max_ongoing_requests=MAX_ONGOING_REQUESTS,
            ray_actor_options={"num_cpus": cpus_per_replica},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        try:
            serve.run(deployment.bind(), name=APP_NAME, route_prefix="/", blocking=False)
        except RuntimeError as exc:  # Serve's report of replicas that failed to start
            raise MlprodError(f"Ray Serve could not start the mlprod app: {exc}") from exc
    except BaseException:
        if started_ray:
            ray.shutdown()
        raise
    handle = RayServeHandle(url=_url(host, port), replicas=replicas, started_ray=started_ray)
    if blocking:
        handle.wait()
    return handle


def _import_ray() -> tuple[Any, Any]:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise MlprodError(
            f"serving on Ray needs Ray Serve, which is not installed ({exc}); {_INSTALL_HINT}"
        ) from exc
    return ray, serve


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to ``address`` or start a local instance; True when we started Ray ourselves."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(
            address="local",  # a new instance, even when RAY_ADDRESS or a `ray start` cluster exists
            include_dashboard=False,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=False,
            configure_logging=False,
        )
        return True
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MlprodError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
    return False


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes: Ray retries an unreachable address for a long time."""
    if address == "auto":
        return
    split = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        host, port = split.hostname, split.port
    except ValueError as exc:
        raise InvalidInputError(f"Ray address {address!r} is not host:port or ray://host:port") from exc
    if not host or port is None:
        raise InvalidInputError(f"Ray address {address!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_SECONDS).close()
    except OSError as exc:
        raise MlprodError(
            f"cannot connect to the Ray cluster at {address!r}: {exc.strerror or exc}; "
            "start one with `ray start --head` or leave out the address to start a local Ray"
        ) from exc


def _check_port(host: str, port: int) -> int:
    """The port Serve's proxy will listen on (a free one for 0); a clear error when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise MlprodError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        return int(sock.getsockname()[1])


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _replica_class(workspace_root: str, app_options: dict[str, Any]) -> type:
    """The deployment class; Ray pickles it with its closure and builds the app in each replica."""
    from ray import serve

    opened: list[Workspace] = []

    def build_app() -> FastAPI:
        workspace = Workspace.open(workspace_root)
        opened.append(workspace)
        return create_app(workspace, **app_options)

    @serve.ingress(build_app)
    class MlprodReplica:
        """One replica of the mlprod app; Serve runs the app's shutdown first, then this."""

        def __del__(self) -> None:
            while opened:
                opened.pop().close()

    return MlprodReplica
