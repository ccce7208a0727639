"""``mlprod models``: the registry."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from mlprod.cli.state import open_workspace, out

app = typer.Typer(help="Model registry: list, show, alias, history.", no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """Registered models with their latest version and aliases."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        models = Registry(ws).models()
    table = Table("model", "latest", "versions", "aliases")
    for m in models:
        aliases = ", ".join(f"@{a} → {v}" for a, v in sorted(m.aliases.items()))
        table.add_row(m.name, str(m.latest_version), str(m.num_versions), aliases)
    out.print(table if models else "no models registered yet")


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="NAME, NAME/VERSION or NAME@ALIAS.")]) -> None:
    """A model version: format, artifact, signature, metrics, params and lineage."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        version = Registry(ws).get(ref)
    out.print(f"[bold]{version.ref}[/]  created {version.created_at:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"format {version.format}, artifact sha256 {version.artifact_sha256}")
    inputs = Table("input", "kind", "categories")
    for field in version.signature.inputs:
        inputs.add_row(field.name, field.kind, str(len(field.categories)) if field.categories else "")
    out.print(inputs)
    metrics = Table("metric", "value")
    for name, value in sorted(version.metrics.items()):
        metrics.add_row(name, f"{value:.4f}")
    out.print(metrics)
    out.print(f"lineage: {json.dumps(version.lineage)}")
    out.print(f"params: {json.dumps(version.params, sort_keys=True)}")


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version the alias will point at.")],
    why: Annotated[str, typer.Option(help="Reason, kept in the alias history.")] = "",
) -> None:
    """Point NAME@ALIAS at VERSION (recorded in the alias history)."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        move = Registry(ws).set_alias(name, alias, version, why=why)
    before = "nothing" if move.from_version is None else f"version {move.from_version}"
    out.print(f"{name}@{alias}: {before} → version {move.to_version}")


@app.command("history")
def history(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Every alias move of a model: when, who, from, to, why."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        moves = Registry(ws).alias_history(name)
    table = Table("when (UTC)", "alias", "from", "to", "who", "why")
    for m in moves:
        table.add_row(
            f"{m.at:%Y-%m-%d %H:%M:%S}",
            m.alias,
            "-" if m.from_version is None else str(m.from_version),
            "-" if m.to_version is None else str(m.to_version),
            m.who,
            m.why,
        )
    out.print(table if moves else f"no alias moves for {name}")
