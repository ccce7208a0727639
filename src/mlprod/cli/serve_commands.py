"""``mlprod serve``: online prediction over HTTP."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from mlprod.cli.state import err, open_workspace, out


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: serve.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: serve.port; 0 picks a free one).")
    ] = None,
) -> None:
    """Serve registered models over HTTP until interrupted (Ctrl-C flushes the prediction log)."""
    from mlprod.serve import create_app, serve_forever

    with open_workspace() as ws:
        bind_host = host or ws.config.serve.host
        bind_port = ws.config.serve.port if port is None else port
        if not _is_loopback(bind_host):
            err.print(
                f"warning: serving on {bind_host} without authentication; anyone who can reach it can predict"
            )
        out.print(f"mlprod serving workspace {ws.root} on http://{bind_host}:{bind_port} (Ctrl-C to stop)")
        try:
            serve_forever(create_app(ws), host=bind_host, port=bind_port)
        except KeyboardInterrupt:  # Ctrl-C is how a foreground server is meant to stop
            err.print("stopped; prediction log flushed")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
