"""``mlprod features``: list and show definitions, build training frames, materialize, look up online."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlprod.cli.listing import Column, FormatOpt, emit, print_table
from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    from mlprod.features import FeatureSet
    from mlprod.features.definitions import View

app = typer.Typer(
    help="Feature store: list and show definitions, build point-in-time training frames, materialize "
    "to the online store, look up online.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="A feature set or feature view name.")]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at", help="A date or time, e.g. 2013-08-01T08:00, with Z or an offset; UTC if none (default: now)."
    ),
]


@app.command("list")
def list_definitions(output_format: FormatOpt = "table") -> None:
    """The feature sets and views defined in the module named by [features] module in mlprod.toml.

    In JSON or CSV, one object per definition: name, kind (feature_set, view or aggregation),
    version, views, entity, keys, source, time, ttl_or_windows, features.
    """
    from mlprod.features.catalog import load_catalog

    with open_workspace() as ws:
        catalog = load_catalog(ws)
    sets = [
        {
            "name": fs.name,
            "kind": "feature_set",
            "version": fs.version,
            "views": list(fs.selection()),
            "features": list(fs.feature_names),
        }
        for fs in catalog.feature_sets.values()
    ]
    views = []
    for view in catalog.views.values():
        kind, entity, source, time, ttl, _ = _view_summary(view)
        views.append(
            {
                "name": view.name,
                "kind": kind,
                "entity": view.entity.name,
                "keys": list(view.entity.keys),
                "entity_keys": entity,
                "source": source,
                "time": time,
                "ttl_or_windows": ttl,
                "features": list(view.feature_names),
            }
        )
    if output_format != "table":
        emit([*sets, *views], DEFINITION_COLUMNS, output_format)
        return
    count = Column("features", "features", text=lambda names: str(len(names)))
    set_columns = (
        Column("name", "feature set"),
        Column("version", "version", text=lambda v: v[:12]),
        Column("views", "views", wrap=True),
        count,
    )
    view_columns = (
        Column("name", "view"),
        Column("kind", "kind", priority=3),
        Column("entity_keys", "entity (keys)", wrap=True),
        Column("source", "source", wrap=True, priority=2),
        Column("time", "time", wrap=True, priority=1),
        Column("ttl_or_windows", "ttl / windows", wrap=True, priority=1),
        count,
    )
    print_table(sets, set_columns, title=f"feature sets in {catalog.module}")
    print_table(views, view_columns)


DEFINITION_COLUMNS = tuple(
    Column(key, key)
    for key in (
        "name",
        "kind",
        "version",
        "views",
        "entity",
        "keys",
        "source",
        "time",
        "ttl_or_windows",
        "features",
    )
)


@app.command("show")
def show(name: NameArg) -> None:
    """One feature set or view: its full definition (JSON) and its version."""
    from mlprod.features import FeatureSet
    from mlprod.features.catalog import load_catalog

    with open_workspace() as ws:
        found = load_catalog(ws).lookup(name)
    definition = found.definition()
    if isinstance(found, FeatureSet):
        definition = {"version": found.version, **definition}
    out.print_json(json.dumps(definition))


@app.command("frame")
def frame(
    name: NameArg,
    entity_rows: Annotated[
        Path, typer.Argument(help="Entity rows: Parquet or CSV with keys and event time.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    event_time: Annotated[str, typer.Option(help="Event-time column of the entity rows.")] = "event_time",
    memory_limit: Annotated[str | None, typer.Option(help="DuckDB memory limit, e.g. 4GB.")] = None,
    method: Annotated[
        str, typer.Option(help="auto, in_memory (sort in memory) or asof (DuckDB ASOF JOIN, out of core).")
    ] = "auto",
) -> None:
    """Write a point-in-time correct training frame: the entity rows plus each feature as of their time."""
    from mlprod.features import write_training_frame
    from mlprod.features.catalog import load_catalog

    with open_workspace() as ws:
        found = load_catalog(ws).lookup(name)
        with err.status(f"joining {name} point-in-time onto {entity_rows}"):
            lineage = write_training_frame(
                entity_rows, _as_features(found), output, event_time=event_time, workspace=ws,
                memory_limit=memory_limit, method=method,  # type: ignore[arg-type]
            )  # fmt: skip
    out.print(
        f"wrote {output}"
        + (f" (feature set {lineage.feature_set} {lineage.version[:12]})" if lineage.version else "")
    )


@app.command("materialize")
def materialize_command(name: NameArg, at: AtOpt = None) -> None:
    """Write every key's latest values (as of --at) into the online store named in mlprod.toml."""
    from mlprod.features.catalog import load_catalog, open_online_store
    from mlprod.features.online import materialize

    with open_workspace() as ws:
        found = load_catalog(ws).lookup(name)
        with open_online_store(ws) as store, err.status(f"materializing {name}"):
            written = materialize(store, _as_features(found), at=parse_optional_utc(at, "--at"), workspace=ws)
    rows = [{"view": view, "keys": count} for view, count in written.items()]
    print_table(
        rows,
        (Column("view", "view"), Column("keys", "keys written")),
        title=f"materialized {name} into {store!r}",
    )


@app.command("lookup")
def lookup(
    name: NameArg,
    keys: Annotated[list[str], typer.Argument(help="Entity keys as column=value (e.g. origin=JFK).")],
    at: AtOpt = None,
) -> None:
    """Online features of one entity; views without a value (unknown key, past TTL) are listed as missing."""
    from mlprod.features.catalog import load_catalog, open_online_store
    from mlprod.features.online import FeatureLookup

    given = dict(_key_value(item) for item in keys)
    with open_workspace() as ws:
        found = load_catalog(ws).lookup(name)
        with open_online_store(ws) as store:
            vector = FeatureLookup(store, _as_features(found)).get(given, at=parse_optional_utc(at, "--at"))
    out.print_json(json.dumps({"values": vector.values, "missing": list(vector.missing)}, default=str))


def _as_features(found: View | FeatureSet) -> FeatureSet | list[View]:
    from mlprod.features import FeatureSet

    return found if isinstance(found, FeatureSet) else [found]


def _view_summary(view: View) -> tuple[str, str, str, str, str, str]:
    from mlprod.features import AggregationView, format_duration

    entity = f"{view.entity.name} ({', '.join(view.entity.keys)})"
    if isinstance(view, AggregationView):
        windows = ", ".join(sorted({format_duration(a.window_delta) for a in view.aggregations}))
        return (
            "aggregation",
            entity,
            view.source_description(),
            view.timestamp,
            windows,
            ", ".join(view.feature_names),
        )
    ttl = format_duration(view.ttl_delta) if view.ttl_delta else "none"
    time = view.timestamp or "static"
    if view.created:
        time += f" (created: {view.created})"
    return "view", entity, view.source_description(), time, ttl, str(len(view.feature_names))


def _key_value(item: str) -> tuple[str, object]:
    column, sep, text = item.partition("=")
    if not sep or not column:
        raise InvalidInputError(f"entity key {item!r} must be written column=value (e.g. origin=JFK)")
    try:
        value: object = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return column, value
