"""``mlprod serve``: online prediction over HTTP."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError

if TYPE_CHECKING:
    from mlprod.serve import PredictionLogWriter


class Backend(StrEnum):
    local = "local"
    ray = "ray"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: serve.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: serve.port; 0 picks a free one).")
    ] = None,
    auth: Annotated[
        str | None,
        typer.Option(
            help="API tokens: auto (required unless on loopback), always, never (default: serve.auth)."
        ),
    ] = None,
    micro_batch_ms: Annotated[
        float | None,
        typer.Option(
            min=0, help="Batch concurrent requests, waiting up to this long (default: serve setting)."
        ),
    ] = None,
    backend: Annotated[
        Backend, typer.Option(help="local: this process (uvicorn); ray: replicas on Ray Serve.")
    ] = Backend.local,
    replicas: Annotated[int, typer.Option(min=1, help="Copies of the app on Ray Serve (--backend ray).")] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join: host:port or ray://host:port (default: start a local Ray)."),
    ] = None,
    access_log: Annotated[
        str | None,
        typer.Option(
            help="Append one JSON line per request (time, method, path, status, duration, model, "
            "version, request id; no bodies) to this file, or '-' for stdout."
        ),
    ] = None,
) -> None:
    """Serve registered models over HTTP until interrupted (Ctrl-C flushes the prediction log).

    Native API under /v1, Open Inference Protocol v2 under /v2, admin under /v1/admin, Prometheus
    metrics on /metrics, OpenAPI on /docs. Create tokens with `mlprod tokens create`.
    """
    from mlprod.serve import ServeOptions, create_app, listen, serve_forever, url_of
    from mlprod.serve.auth import auth_required
    from mlprod.serve.json_logs import configure_json_logging
    from mlprod.serve.local_admin import ensure_local_admin

    with open_workspace() as ws:
        settings = ws.config.serve
        bind_host = host or settings.host
        bind_port = settings.port if port is None else port
        require = auth_required(bind_host, auth or settings.auth)
        if settings.json_logs:
            configure_json_logging()
        if not require:
            where = (
                "loopback" if auth is None and settings.auth == "auto" else f"auth={auth or settings.auth}"
            )
            err.print(
                f"API tokens not required for predictions ({where}): anyone who can reach {bind_host} can "
                "predict; the admin API always needs one"
            )
        overrides = {} if micro_batch_ms is None else {"micro_batch_max_wait_ms": micro_batch_ms}
        if backend is Backend.local and (replicas != 1 or ray_address is not None):
            raise InvalidInputError("--replicas and --ray-address need --backend ray")
        if backend is Backend.ray and access_log is not None:
            raise InvalidInputError("--access-log needs --backend local (Ray Serve keeps its own access log)")
        options = ServeOptions.from_config(ws, **overrides)
        admin_path, created = ensure_local_admin(ws)
        if created:
            err.print(f"created the local admin token (admin API): {admin_path}, readable only by you")
        if backend is Backend.ray:
            _serve_on_ray(ws.root, bind_host, bind_port, replicas, ray_address, options, require)
            return
        listener = listen(bind_host, bind_port)  # a taken port fails here, before any announcement
        try:
            app = create_app(ws, options=options, require_auth=require, host=bind_host, access_log=access_log)
            out.print(f"mlprod serving workspace {ws.root} on {url_of(listener)} (Ctrl-C to stop)")
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the server took the signals
                serve_forever(app, listener=listener, keep_logging=settings.json_logs)
        finally:
            listener.close()
        err.print(_stopped_line(app.state.prediction_log))


def _stopped_line(writer: PredictionLogWriter) -> str:
    """What the shutdown flush did: rows now in Parquet, and any it could not write."""
    line = f"stopped, {writer.rows_written:,} predictions flushed"
    if writer.buffered_rows:
        where = "kept in write-ahead segments for the next server" if writer.write_ahead else "lost"
        line += f"; {writer.buffered_rows:,} not written ({where})"
    if writer.dropped_rows:
        line += f"; {writer.dropped_rows:,} dropped"
    return line


def _serve_on_ray(
    root: Path, host: str, port: int, replicas: int, address: str | None, options: Any, require: bool
) -> None:
    from mlprod.serve.ray_backend import serve_on_ray

    with err.status(f"starting {replicas} Ray Serve replica(s)"):
        handle = serve_on_ray(
            root, host=host, port=port, replicas=replicas, address=address,
            app_options={"options": options, "require_auth": require, "host": host}, blocking=False,
        )  # fmt: skip
    out.print(
        f"mlprod serving workspace {root} on {handle.url} with {replicas} Ray Serve replica(s) "
        "(Ctrl-C to stop)"
    )
    try:
        handle.wait()
    except KeyboardInterrupt:
        err.print("stopped; prediction log flushed")
