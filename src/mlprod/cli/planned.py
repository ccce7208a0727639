"""Command groups the system will have but this release does not implement yet."""

from __future__ import annotations

import typer

from mlprod.errors import MlprodError


def planned_group(description: str) -> typer.Typer:
    """A group that shows in ``--help`` and says plainly, when run, that it is not available yet."""
    group = typer.Typer(help=f"(not available yet) {description}")  # first: short help keeps it

    @group.callback(invoke_without_command=True)
    def _not_yet(ctx: typer.Context) -> None:
        raise MlprodError(f"`mlprod {ctx.info_name}` is planned but not available in this release")

    return group


def planned_command(group: typer.Typer, group_name: str, name: str, description: str) -> None:
    """Add command ``name`` to ``group``: listed in ``--help``, and when run it says it is planned."""

    def _not_yet() -> None:
        raise MlprodError(f"`mlprod {group_name} {name}` is planned but not available in this release")

    group.command(name, help=f"(not available yet) {description}")(_not_yet)
