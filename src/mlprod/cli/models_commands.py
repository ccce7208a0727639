"""``mlprod models``: training runs and the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlprod.cli.state import open_workspace, out, status
from mlprod.errors import InvalidInputError

if TYPE_CHECKING:
    from mlprod.models import ModelVersion

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
    table = Table(title=f"run {run.id}", show_header=False)
    table.add_row("registered", result.version.ref + (f" (@{alias})" if alias else ""))
    for name in ("validation_auc", "validation_log_loss", "validation_accuracy"):
        table.add_row(name, f"{run.metrics[name]:.4f}")
    table.add_row(
        "train / validation rows", f"{run.lineage['train_rows']:,} / {run.lineage['validation_rows']:,}"
    )
    table.add_row("duration", f"{run.duration_seconds:.1f} s, peak memory {run.peak_memory_mb:.0f} MB")
    table.add_row("code version", run.code_version or "not in a git repository")
    out.print(table)


@app.command("runs")
def runs(
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Recent training runs: status, version registered, validation AUC, duration, memory."""
    from mlprod.models import list_runs

    with open_workspace() as ws:
        records = list_runs(ws, model=model, limit=limit)
    table = Table(
        "run", "model", "status", "version", "estimator", "val AUC", "seconds", "peak MB", "started (UTC)"
    )
    for r in records:
        auc = r.metrics.get("validation_auc")
        table.add_row(
            r.id[:12],
            r.model,
            r.status,
            "" if r.model_version is None else str(r.model_version),
            str(r.params.get("estimator", "")),
            "" if auc is None else f"{auc:.4f}",
            "" if r.duration_seconds is None else f"{r.duration_seconds:.1f}",
            "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}",
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
        )
    out.print(table if records else "no training runs yet")


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


@app.command("search")
def search(
    name: Annotated[str | None, typer.Option(help="Model name contains this.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE the version must carry (repeatable).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric threshold, e.g. 'validation_auc>=0.7'.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Versions matching a name, tags and a metric threshold."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        found = Registry(ws).search(name=name, tags=_parse_tags(tag or []), metric=metric, limit=limit)
    table = Table("version", "format", "created (UTC)", "validation AUC")
    for v in found:
        auc = v.metrics.get("validation_auc")
        table.add_row(v.ref, v.format, f"{v.created_at:%Y-%m-%d %H:%M}", "" if auc is None else f"{auc:.4f}")
    out.print(table if found else "no matching versions")


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
    out.print(f"format {version.format}, artifact sha256 {version.artifact_sha256}")
    out.print(_lineage_table(version, run.code_version if run else None, run.id if run else None))
    inputs = Table("input", "kind", "dtype", "categories")
    for field in version.signature.inputs:
        inputs.add_row(
            field.name, field.kind, field.dtype, str(len(field.categories)) if field.categories else ""
        )
    out.print(inputs)
    out.print(
        f"output: {version.signature.output} {version.signature.output_dtype} ({version.signature.task})"
    )
    metrics = Table("metric", "value")
    for name, value in sorted(version.metrics.items()):
        metrics.add_row(name, f"{value:.4f}")
    out.print(metrics)
    if tags:
        out.print("tags: " + ", ".join(f"{k}={v}" for k, v in tags.items()))
    for e in exports:
        out.print(
            f"export {e.format}: sha256 {e.artifact_sha256}, parity max |diff| {e.parity_max_abs_diff:.1e}"
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
def history(name: Annotated[str, typer.Argument(help="Model name.")]) -> None:
    """Every alias move of a model: when, action, from, to, who, why."""
    from mlprod.models import Registry

    with open_workspace() as ws:
        moves = Registry(ws).alias_history(name)
    table = Table("when (UTC)", "alias", "action", "from", "to", "who", "why")
    for m in moves:
        table.add_row(
            f"{m.at:%Y-%m-%d %H:%M:%S}",
            m.alias,
            m.action,
            "-" if m.from_version is None else str(m.from_version),
            "-" if m.to_version is None else str(m.to_version),
            m.who,
            m.why,
        )
    out.print(table if moves else f"no alias moves for {name}")


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


def _lineage_table(version: ModelVersion, code: str | None, run_id: str | None) -> Table:
    lineage = version.lineage
    table = Table(title="lineage", show_header=False)
    if lineage.get("dataset"):
        table.add_row(
            "dataset",
            f"table {lineage['dataset']} @ {lineage.get('dataset_ref', 'main')}, "
            f"commit {lineage['dataset_commit']} "
            f"({lineage['dataset_rows']:,} rows)",
        )
    elif lineage:
        table.add_row("data", str(lineage.get("source", "unknown")))
    if "feature_set_hash" in lineage:
        table.add_row("feature set", lineage["feature_set_hash"])
        table.add_row("label", f"{lineage['label']}  where {lineage.get('where') or 'true'}")
        table.add_row(
            "split", f"time < {lineage['split_time']}: {lineage['train_rows']:,} train, "
            f"{lineage['validation_rows']:,} validation"
        )  # fmt: skip
    table.add_row("run", run_id or "none (registered directly)")
    table.add_row("code version", code or "unknown")
    return table


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"tag {pair!r} should be KEY=VALUE")
        tags[key] = value
    return tags
