"""``mlprod tokens``: API tokens for the prediction server."""

from __future__ import annotations

from typing import Annotated

import typer

from mlprod.cli.listing import Column, FormatOpt, emit
from mlprod.cli.state import err, open_workspace, out

app = typer.Typer(
    help="API tokens for the prediction server: create, list, revoke. Scopes: predict, read, admin "
    "(admin implies the other two).",
    no_args_is_help=True,
)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A unique name saying who or what uses the token.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help="predict, read or admin (repeatable; at least one)."),
    ] = None,
) -> None:
    """Create a token and print it once: only its hash is stored.

    The token alone goes to stdout (so 'TOKEN=$(mlprod tokens create ci --scope predict)' works),
    the details and the warning to stderr.
    """
    from mlprod.serve.tokens import TokenStore

    with open_workspace() as ws:
        record, plaintext = TokenStore(ws).create(name, scope or [])
    err.print(f"created API token {record.name!r} (id {record.id}, scopes: {', '.join(record.scopes)})")
    err.print(
        "[bold yellow]copy it now: it is not shown again[/] (only its hash is stored); "
        "send it as 'Authorization: Bearer <token>'"
    )
    out.print(plaintext, markup=False, highlight=False)


@app.command("create-local-admin")
def create_local_admin() -> None:
    """Create this workspace's local admin token (if it has none) in a file only you can read.

    'mlprod init' and the first 'mlprod serve' create it too; the demo and local tools send it to the
    server's admin API. Prints the file's path, never the token.
    """
    from mlprod.serve.local_admin import ensure_local_admin

    with open_workspace() as ws:
        path, created = ensure_local_admin(ws)
    out.print(f"{'created' if created else 'already have'} the local admin token: {path} (mode 0600)")


@app.command("list")
def list_(output_format: FormatOpt = "table") -> None:
    """Every token, revoked ones included: name, id, scopes, who created it and when."""
    from mlprod.serve.tokens import TokenStore

    with open_workspace() as ws:
        records = TokenStore(ws).list()
    listed = [
        {
            "name": r.name,
            "id": r.id,
            "scopes": list(r.scopes),
            "created_at": r.created_at,
            "who": r.who,
            "revoked_at": r.revoked_at,
        }
        for r in records
    ]
    columns = (
        Column("name", "name"),
        Column("id", "id"),
        Column("scopes", "scopes", wrap=True),
        Column("created_at", "created (UTC)", priority=2),
        Column("who", "who", wrap=True, priority=3),
        Column("revoked_at", "revoked (UTC)", priority=1),
    )
    emit(
        listed,
        columns,
        output_format,
        empty="no API tokens yet; create one with 'mlprod tokens create NAME --scope predict'",
    )


@app.command("revoke")
def revoke(name_or_id: Annotated[str, typer.Argument(help="The token's name or its id.")]) -> None:
    """Revoke a token; running servers refuse it within their refresh interval (seconds)."""
    from mlprod.serve.tokens import TokenStore

    with open_workspace() as ws:
        record = TokenStore(ws).revoke(name_or_id)
    assert record.revoked_at is not None
    out.print(
        f"revoked API token {record.name!r} (id {record.id}) at {record.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    )
