"""``mlprod routes``: a model's routing plan (champion, canary, shadows), changed with history.

Changes go to the metadata database; running servers pick them up within ``serve.refresh_seconds``
(a server's admin API, ``PUT /v1/admin/routes/NAME``, applies them to that server at once).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlprod.cli.listing import Column, FormatOpt, emit
from mlprod.cli.state import open_workspace, out, read_fast

if TYPE_CHECKING:
    from mlprod.serve.route_store import RouteChange

app = typer.Typer(
    help="Routing plans for online serving: show, set, clear, history.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Model name.")]
WhyOpt = Annotated[str, typer.Option(help="Reason, kept in the routing history.")]


@app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="Model name (default: every plan).")] = None,
    output_format: FormatOpt = "table",
) -> None:
    """The routing plans in force. A model without one serves NAME@champion to requests for its bare
    name (never merely its latest version); without a champion alias they get 404."""
    from mlprod.serve import RouteStore

    with open_workspace() as ws:
        plans = RouteStore(ws).all()
    if name is not None:
        plans = {k: v for k, v in plans.items() if k == name}
    listed = [
        {
            "model": model,
            "revision": revision,
            "champion": plan.champion,
            "canary": plan.canary,
            "canary_percent": plan.canary_percent,
            "shadows": list(plan.shadows),
            "sticky_key": plan.sticky_key,
        }
        for model, (revision, plan) in sorted(plans.items())
    ]
    columns = (
        Column("model", "model"),
        Column("revision", "revision", priority=2),
        Column("champion", "champion"),
        Column("canary", "canary", text=_or_dash),
        Column("canary_percent", "canary %", text=lambda p: f"{p:g}"),
        Column("shadows", "shadows", text=_or_dash),
        Column("sticky_key", "sticky key", text=_or_dash, priority=1),
    )
    serves = f"{name}@champion" if name else "NAME@champion"
    empty = f"no routing plan{f' for {name}' if name else 's'}: a bare model name serves {serves}"
    emit(listed, columns, output_format, empty=empty)


def _or_dash(value: str | list[str] | None) -> str:
    text = ", ".join(value) if isinstance(value, list) else value
    return text or "-"


@app.command("set")
def set_plan(
    name: NameArg,
    champion: Annotated[
        str, typer.Option(help="'@ALIAS' or '/VERSION' answering the traffic.")
    ] = "@champion",
    canary: Annotated[str | None, typer.Option(help="'@ALIAS' or '/VERSION' taking a share.")] = None,
    canary_percent: Annotated[float, typer.Option(min=0, max=100, help="Share of the canary, in %.")] = 0.0,
    shadow: Annotated[
        list[str] | None, typer.Option(help="'@ALIAS' or '/VERSION' mirrored, logged, never returned.")
    ] = None,
    sticky_key: Annotated[
        str | None, typer.Option(help="Request field whose value keeps a caller on one version.")
    ] = None,
    why: WhyOpt = "",
) -> None:
    """Replace a model's routing plan (every target must exist; recorded in the history)."""
    from mlprod.serve import RoutePlan, RouteStore

    plan = RoutePlan(
        name,
        champion=champion,
        canary=canary,
        canary_percent=canary_percent,
        shadows=tuple(shadow or ()),
        sticky_key=sticky_key,
    )
    with open_workspace() as ws:
        change = RouteStore(ws).set(plan, why=why)
    out.print(f"{name}: routing revision {change.revision}: {_describe(change.after)}")


@app.command("clear")
def clear(name: NameArg, why: WhyOpt = "") -> None:
    """Remove a model's routing plan (recorded in the history)."""
    from mlprod.serve import RouteStore

    with open_workspace() as ws:
        change = RouteStore(ws).clear(name, why=why)
    out.print(f"{name}: routing revision {change.revision}: plan removed")


@app.command("history")
def history(name: NameArg, output_format: FormatOpt = "table") -> None:
    """Every change of a model's routing plan: when, who, why, before and after."""
    from mlprod.meta.fast_read import RouteChangeRow, route_changes

    changes: list[RouteChangeRow] | list[RouteChange] | None = read_fast(
        lambda connection: route_changes(connection, name)
    )
    if changes is None:
        from mlprod.serve import RouteStore

        with open_workspace() as ws:
            changes = RouteStore(ws).history(name)
    listed = [
        {"revision": c.revision, "at": c.at, "who": c.who, "why": c.why, "before": c.before, "after": c.after}
        for c in changes
    ]
    columns = (
        Column("revision", "revision"),
        Column("at", "when (UTC)"),
        Column("who", "who", wrap=True, priority=2),
        Column("why", "why", wrap=True, priority=1),
        Column("before", "before", priority=9),
        Column("after", "plan", text=_describe, wrap=True),
    )
    emit(
        listed,
        [c for c in columns if output_format != "table" or c.key != "before"],
        output_format,
        empty=f"no routing changes for {name}",
    )


def _describe(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "none"
    return json.dumps({k: v for k, v in plan.items() if v not in (None, [], 0.0)})
