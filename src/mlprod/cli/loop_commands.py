"""``mlprod loop …``: ``check`` validates the loop specs; the rest of the loop is not built yet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlprod.cli.planned import planned_command
from mlprod.cli.state import open_workspace, out
from mlprod.errors import NotFoundError
from mlprod.suggest import did_you_mean

app = typer.Typer(
    help="The retraining loop: trigger, retrain, evaluate, canary, promote or roll back "
    "(only `check` is available yet).",
    no_args_is_help=True,
)


@app.command("check")
def check(
    name: Annotated[str | None, typer.Argument(help="Loop name (default: every loop).")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="A TOML file of [loop.NAME] tables (default: mlprod.toml)."),
    ] = None,
) -> None:
    """Validate loop specs against the workspace (model, alias, table, feature set, profile) and show them."""
    from mlprod.loop.check import check_loop, workspace_loops

    with open_workspace() as ws:
        loops = workspace_loops(ws, file)
        source = str(file) if file is not None else "mlprod.toml"
        if name is not None and name not in loops:
            raise NotFoundError(
                f"no loop {name!r} in {source}{did_you_mean(name, loops)}; "
                f"loops: {', '.join(loops) or 'none'} (declare one as [loop.{name}])"
            )
        if not loops:
            out.print(f"no loop in {source}: declare one as [loop.NAME] (see docs/loop.md)")
            return
        for spec in [loops[name]] if name is not None else loops.values():
            checked = check_loop(ws, spec)
            out.print(f"loop {spec.name}: ok")
            resolved = {
                **spec.describe(),
                "champion": checked.champion,
                "table": checked.table,
                "gate profile": checked.gate_profile,
            }
            for key, value in resolved.items():
                out.print(f"  {key + ':':<19}{value}", highlight=False)


for _command, _what in {
    "run": "Run the loop: trigger, retrain, gate, roll out, promote or roll back.",
    "once": "Run one cycle of the loop now.",
    "status": "Show the loops and their last cycles.",
    "history": "Show a loop's cycles and decisions.",
    "freshness": "Measure how fast the model decays and recommend a retraining cadence.",
    "replay": "Replay a period under each retraining policy.",
}.items():
    planned_command(app, "loop", _command, _what)
