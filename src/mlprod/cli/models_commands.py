"""``mlprod models``: training runs and the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlprod.cli.listing import Column, FormatOpt, emit, print_table
from mlprod.cli.state import open_workspace, out, read_fast, status
from mlprod.errors import InvalidInputError

if TYPE_CHECKING:
    from mlprod.models import ModelVersion
    from mlprod.models.registry import AliasMove, ModelSummary

app = typer.Typer(
    help="Training runs and the model registry: train, runs, list, search, show, tag, alias, rollback, "
    "history, export.",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="NAME, NAME/VERSION or NAME@ALIAS.")]


@app.command("train")
def train(
    spec_file: Annotated[
        Path, typer.Argument(help="Training spec (TOML): dataset, label, features, estimator.")
    ],
    alias: Annotated[str | None, typer.Option(help="Point this alias at the new version.")] = None,
) -> None:
    """Train a model from a spec as a recorded run and register it."""
    from mlprod.models import TrainingSpec, run_training

    spec = TrainingSpec.from_toml(spec_file)
    with open_workspace() as ws, status(f"training {spec.model} ({spec.estimator.kind})") as step:

        def rounds(done: int, total: int) -> None:
            step(f"training: boosting round {done}/{total}")

        result = run_training(ws, spec, alias=alias, step=step, progress=rounds)
        assert result.version is not None
    run = result.run
    fields = [
        ("registered", result.version.ref + (f" (@{alias})" if alias else "")),
        *(
            (name, f"{run.metrics[name]:.4f}")
            for name in ("validation_auc", "validation_log_loss", "validation_accuracy")
        ),
        ("train / validation rows", f"{run.lineage['train_rows']:,} / {run.lineage['validation_rows']:,}"),
        ("duration", f"{run.duration_seconds:.1f} s, peak memory {run.peak_memory_mb:.0f} MB"),
        ("code version", run.code_version or "not in a git repository"),
    ]
    _print_fields(fields, title=f"run {run.id}")


@app.command("runs")
def runs(
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    output_format: FormatOpt = "table",
) -> None:
    """Recent training runs: status, version registered, validation AUC, duration, memory."""
    from mlprod.models import list_runs

    with open_workspace() as ws:
        records = list_runs(ws, model=model, limit=limit)
    listed = [
        {
            "run": r.id,
            "model": r.model,
            "status": r.status,
            "version": r.model_version,
            "estimator": r.params.get("estimator"),
            "validation_auc": r.metrics.get("validation_auc"),
            "duration_seconds": r.duration_seconds,
            "peak_memory_mb": r.peak_memory_mb,
            "started_at": r.started_at,
        }
        for r in records
    ]
    emit(listed, RUNS_COLUMNS, output_format, empty="no training runs yet")


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items()))


def _fixed(digits: int) -> Callable[[float | None], str]:
    return lambda v: "" if v is None else f"{v:.{digits}f}"


RUNS_COLUMNS = (
    Column("run", "run", text=lambda v: v[:12]),
    Column("model", "model"),
    Column("status", "status", priority=2),
    Column("version", "version"),
    Column("estimator", "estimator", priority=1),
    Column("validation_auc", "val AUC", text=_fixed(4)),
    Column("duration_seconds", "seconds", text=_fixed(1), priority=3),
    Column("peak_memory_mb", "peak MB", text=_fixed(0), priority=4),
    Column("started_at", "started (UTC)", priority=2),
)


@app.command("list")
def list_(output_format: FormatOpt = "table") -> None:
    """Registered models with their latest version and aliases."""
    from mlprod.meta.fast_read import ModelRow, model_summaries

    models: list[ModelRow] | list[ModelSummary] | None = read_fast(model_summaries)
    if models is None:
        from mlprod.models import Registry

        with open_workspace() as ws:
            models = Registry(ws).models()
    listed = [
        {
            "model": m.name,
            "latest": m.latest_version,
            "versions": m.num_versions,
            "aliases": dict(sorted(m.aliases.items())),
        }
        for m in models
    ]
    columns = (
        Column("model", "model"),
        Column("latest", "latest"),
        Column("versions", "versions"),
        Column(
            "aliases", "aliases", wrap=True, text=lambda a: ", ".join(f"@{k} → {v}" for k, v in a.items())
        ),
    )
    emit(listed, columns, output_format, empty="no models registered yet")


@app.command("search")
def search(
    name: Annotated[str | None, typer.Option(help="Model name contains this.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE the version must carry (repeatable).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric threshold, e.g. 'validation_auc>=0.7'.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    output_format: FormatOpt = "table",
) -> None:
    """Versions matching a name, tags and a metric threshold."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        found = Registry(ws).search(name=name, tags=_parse_tags(tag or []), metric=metric, limit=limit)
    listed = [
        {
            "version": v.ref,
            "format": v.format,
            "created_at": v.created_at,
            "validation_auc": v.metrics.get("validation_auc"),
            "metrics": v.metrics,
        }
        for v in found
    ]
    columns = (
        Column("version", "version"),
        Column("format", "format", priority=1),
        Column("created_at", "created (UTC)", priority=2),
        Column("validation_auc", "validation AUC", text=_fixed(4)),
        Column("metrics", "metrics", wrap=True, priority=3, text=_metrics),
    )
    emit(listed, columns, output_format, empty="no matching versions")


@app.command("show")
def show(ref: RefArg) -> None:
    """A version: lineage back to the dataset version, run, signature, metrics, tags, exports."""
    from mlprod.models import Registry, get_run

    with open_workspace() as ws:
        registry = Registry(ws)
        version = registry.get(ref)
        tags = registry.tags(version.ref)
        exports = registry.exports(version.ref)
        run = get_run(ws, version.run_id) if version.run_id else None
    out.print(
        f"[bold]{version.ref}[/]  created {version.created_at:%Y-%m-%d %H:%M:%S} UTC  {version.description}"
    )
    out.print(f"format {version.format}, model file sha256 {version.artifact_sha256}")
    _print_fields(
        _lineage(version, run.code_version if run else None, run.id if run else None), title="lineage"
    )
    inputs = [
        {
            "input": f.name,
            "kind": f.kind,
            "dtype": f.dtype,
            "categories": len(f.categories) if f.categories else None,
        }
        for f in version.signature.inputs
    ]
    print_table(inputs, [Column(k, k) for k in ("input", "kind", "dtype", "categories")])
    out.print(
        f"output: {version.signature.output} {version.signature.output_dtype} ({version.signature.task})"
    )
    metrics = [{"metric": name, "value": value} for name, value in sorted(version.metrics.items())]
    print_table(metrics, (Column("metric", "metric"), Column("value", "value")))
    if tags:
        out.print("tags: " + ", ".join(f"{k}={v}" for k, v in tags.items()))
    for e in exports:
        out.print(
            f"export {e.format}: file sha256 {e.artifact_sha256}, "
            f"parity max |diff| {e.parity_max_abs_diff:.1e}"
        )
    out.print(f"params: {json.dumps(version.params, sort_keys=True)}")


@app.command("tag")
def tag(ref: RefArg, tags: Annotated[list[str], typer.Argument(help="KEY=VALUE pairs.")]) -> None:
    """Set tags on a version."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        all_tags = Registry(ws).set_tags(ref, _parse_tags(tags))
    out.print(", ".join(f"{k}={v}" for k, v in all_tags.items()))


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


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to roll back, e.g. champion.")] = "champion",
    why: Annotated[str, typer.Option(help="Reason, kept in the alias history.")] = "",
) -> None:
    """Re-point an alias at the version it had before its latest move (recorded)."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        move = Registry(ws).rollback(name, alias, why=why)
    out.print(f"{name}@{alias} rolled back: version {move.from_version} → version {move.to_version}")


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Model name.")], output_format: FormatOpt = "table"
) -> None:
    """Every alias move of a model: when, action, from, to, who, why."""
    from mlprod.meta.fast_read import AliasMoveRow, alias_moves

    moves: list[AliasMoveRow] | list[AliasMove] | None = read_fast(
        lambda connection: alias_moves(connection, name)
    )
    if moves is None:
        from mlprod.models import Registry

        with open_workspace() as ws:
            moves = Registry(ws).alias_history(name)
    listed = [
        {
            "at": m.at,
            "alias": m.alias,
            "action": m.action,
            "from_version": m.from_version,
            "to_version": m.to_version,
            "who": m.who,
            "why": m.why,
        }
        for m in moves
    ]
    emit(listed, HISTORY_COLUMNS, output_format, empty=f"no alias moves for {name}")


def _version_or_dash(v: int | None) -> str:
    return "-" if v is None else str(v)


HISTORY_COLUMNS = (
    Column("at", "when (UTC)"),
    Column("alias", "alias"),
    Column("action", "action", priority=2),
    Column("from_version", "from", text=_version_or_dash),
    Column("to_version", "to", text=_version_or_dash),
    Column("who", "who", wrap=True, priority=3),
    Column("why", "why", wrap=True, priority=1),
)


@app.command("export")
def export(
    ref: RefArg,
    format: Annotated[str, typer.Option(help="Export format.")] = "onnx",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the file here.")] = None,
) -> None:
    """Export a version (ONNX) after checking it predicts like the native model (max |diff| <= 1e-5)."""
    from mlprod.models import Registry

    if output is not None and not output.parent.is_dir():
        raise InvalidInputError(f"cannot write the export to {output}: {output.parent} is not a directory")
    with open_workspace() as ws:
        exported = Registry(ws).export(ref, format=format)
        if output is not None:
            try:
                output.write_bytes(ws.artifacts.get_bytes(exported.artifact_sha256))
            except OSError as exc:
                raise InvalidInputError(f"cannot write the export to {output}: {exc}") from exc
    out.print(
        f"{exported.model}/{exported.version} exported to {exported.format}: parity max |diff| "
        f"{exported.parity_max_abs_diff:.1e}, sha256 {exported.artifact_sha256}"
        + (f", written to {output}" if output else "")
    )


def _print_fields(fields: list[tuple[str, str]], *, title: str) -> None:
    """A record as a two-column table (name, value) whose values wrap, never cut."""
    rows = [{"field": name, "value": value} for name, value in fields]
    print_table(
        rows, (Column("field", "field"), Column("value", "value", wrap=True)), title=title, show_header=False
    )


def _lineage(version: ModelVersion, code: str | None, run_id: str | None) -> list[tuple[str, str]]:
    lineage = version.lineage
    table: list[tuple[str, str]] = []
    if lineage.get("dataset"):
        table.append(
            (
                "dataset",
                f"table {lineage['dataset']} @ {lineage.get('dataset_ref', 'main')}, "
                f"commit {lineage['dataset_commit']} "
                f"({lineage['dataset_rows']:,} rows)",
            )
        )
    elif lineage:
        table.append(("data", str(lineage.get("source", "unknown"))))
    if lineage.get("feature_set"):
        version_hash = lineage["feature_set_version"]
        table.append(("feature set", f"{lineage['feature_set']}, definitions sha256 {version_hash}"))
    if "feature_set_hash" in lineage:
        what = "feature expressions, label, filter" + (", feature set" if lineage.get("feature_set") else "")
        table.append(("inputs sha256", f"{lineage['feature_set_hash']} ({what})"))
        table.append(("label", f"{lineage['label']}  where {lineage.get('where') or 'true'}"))
        table.append(
            (
                "split",
                f"time < {lineage['split_time']}: {lineage['train_rows']:,} train, "
                f"{lineage['validation_rows']:,} validation",
            )
        )
    table.append(("run", run_id or "none (registered directly)"))
    table.append(("code version", f"git {code}" if code else "unknown (not run in a git repository)"))
    return table


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"tag {pair!r} should be KEY=VALUE")
        tags[key] = value
    return tags
