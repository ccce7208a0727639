"""``mlprod monitor``: references, drift and performance per window, alerts, reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    import pyarrow as pa

    from mlprod.monitor import Check, LabelSource, MonitorResult, WindowResult

app = typer.Typer(
    help="Monitoring of served models: references, drift, data quality, performance, alerts.",
    no_args_is_help=True,
)
ModelOption = Annotated[str, typer.Option("--model", "-m", help="NAME, NAME/VERSION or NAME@ALIAS.")]


@app.command("profile")
def profile(
    model: ModelOption,
    data: Annotated[
        Path, typer.Option("--data", help="Reference data: Parquet or CSV with the model's inputs.")
    ],
    label: Annotated[
        str | None,
        typer.Option(help="Label column (0/1): enables performance estimation.", show_default=False),
    ] = None,
) -> None:
    """Build and store a version's reference from its training or evaluation data (one streaming pass).

    The model scores the data as it is read; the reference holds per-feature sketches, the score
    calibration (with --label) and the multivariate detector. Rebuilding replaces it.
    """
    from mlprod.monitor import profile_version

    with open_workspace() as ws:
        profiled = profile_version(ws, model, data, label=label)
    reference = profiled.reference
    features = len(reference.spec.features)
    parts = [f"{reference.profile.rows:,} rows", f"{features} feature" + ("" if features == 1 else "s")]
    parts.append("performance estimation on" if reference.estimator else "no labels: drift only")
    if reference.multivariate:
        components = reference.multivariate.components
        parts.append(f"PCA detector ({components} component{'' if components == 1 else 's'})")
    out.print(f"reference of {profiled.version.ref}: " + ", ".join(parts))


@app.command("report")
def report(
    model: ModelOption,
    by: Annotated[str | None, typer.Option(help="hour, day, week, month, or rows per window.")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Parquet or CSV of labels that arrived (joined to the log).")
    ] = None,
    label_column: Annotated[str, typer.Option(help="The label column in --labels.")] = "label",
    label_on: Annotated[
        str, typer.Option(help="request_id, or entity key columns (comma-separated) matched by time.")
    ] = "request_id",
    label_time: Annotated[
        str | None, typer.Option(help="Event time column of --labels (entity-key joins).", show_default=False)
    ] = None,
    since: Annotated[str | None, typer.Option(help="First day or time (UTC), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Last day or time (UTC), exclusive.")] = None,
    route: Annotated[
        list[str] | None,
        typer.Option(help="Only these routes (repeatable; default: all).", show_default=False),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(help="HTML report path (default: reports/ in the workspace).", show_default=False),
    ] = None,
) -> None:
    """Check each window of a version's logged predictions against its reference; print, alert, report.

    Drift per feature and of the prediction, data quality, the multivariate detector, and accuracy
    estimated without labels next to the realized value where labels have arrived. New alerts are
    recorded (once per window) and posted to [monitor] webhook_url when set.
    """
    from mlprod.monitor import monitor_version, settings_of, write_html
    from mlprod.monitor.windows import Windowing

    start, end = parse_optional_utc(since, "--since"), parse_optional_utc(until, "--until")
    with open_workspace() as ws:
        settings = settings_of(ws)
        if by is not None:
            settings = replace(settings, windowing=Windowing.parse(by))
        label_source = _labels(labels, label_column, label_on, label_time) if labels else None
        with _progress() as progress:
            task = progress.add_task("reading the prediction log", total=None)
            run = monitor_version(
                ws, model, labels=label_source, since=start, until=end,
                routes=route, settings=settings, progress=lambda rows: progress.advance(task, rows),
            )  # fmt: skip
        result = run.result
        name = f"monitor-{result.model}-v{result.version}-{result.by.replace(' ', '-')}.html"  # "1000 rows"
        path = html or ws.root / "reports" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_html(result, path, rules=run.rules)
    out.print(window_table(result))
    out.print(f"{len(run.alerts)} alert(s), {len(run.new_alerts)} new; HTML report: {path}")
    if run.delivery is not None:
        d = run.delivery
        status = f"{d.delivered} delivered" + (f", {d.pending} pending ({d.error})" if d.pending else "")
        (err if d.pending else out).print(f"webhook: {status}")


@app.command("alerts")
def alerts(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest window first.")] = 50,
) -> None:
    """Alerts recorded by earlier reports: window, rule, column, statistic and threshold, delivery."""
    from mlprod.monitor import AlertStore

    if limit <= 0:
        raise InvalidInputError(f"--limit must be positive, got {limit}")
    with open_workspace() as ws:
        stored = AlertStore(ws).list(model=model, limit=limit)
    table = Table("window", "model", "rule", "message", "delivered")
    for a in stored:
        delivered = f"{a.delivered_at:%Y-%m-%d %H:%M}" if a.delivered_at else "-"
        table.add_row(
            f"{a.window_start:%Y-%m-%d %H:%M}", f"{a.model}/{a.version}", a.rule, a.message, delivered
        )
    out.print(table if stored else "no alerts recorded")


@app.command("predictions")
def predictions(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
) -> None:
    """Per model version: predictions and requests logged, time span, mean score, latency."""
    from mlprod.monitor import summarize_predictions

    with open_workspace() as ws:
        summaries = summarize_predictions(ws.prediction_log_dir, model=model)
    table = Table("model", "version", "predictions", "requests", "UTC span", "mean", "p50 ms", "p99 ms")
    for s in summaries:
        table.add_row(
            s.model,
            str(s.version),
            f"{s.predictions:,}",
            f"{s.requests:,}",
            f"{s.first:%m-%d %H:%M} to {s.last:%m-%d %H:%M}",
            f"{s.mean_prediction:.4f}",
            f"{s.latency_p50_ms:.2f}",
            f"{s.latency_p99_ms:.2f}",
        )
    out.print(table if summaries else "no predictions logged yet")


def window_table(result: MonitorResult) -> Table:
    """Per window: rows, labels, drift alarms and quality breaches (the strongest first, "*" for the
    multivariate detector), accuracy estimated without labels and realized."""
    from mlprod.monitor.alerts import PRIMARY_DRIFT_METHODS

    table = Table("window", "rows", "labelled", "drift alarms", "quality breaches", "est. accuracy [95 %]")
    table.add_column("realized")
    for w in result.windows:
        drift = [c for c in w.alerts if c.kind == "drift" and c.method in PRIMARY_DRIFT_METHODS]
        quality = [c for c in w.alerts if c.kind == "quality"]
        estimated, realized = _accuracy(w)
        labelled = next((p.labelled_rows for p in w.performance), 0)
        table.add_row(
            f"{w.start:%Y-%m-%d %H:%M}" if result.by == "hour" else f"{w.start:%Y-%m-%d}",
            f"{w.rows:,}", f"{labelled:,}", _strongest(drift), _strongest(quality), estimated, realized,
        )  # fmt: skip
    return table


def _strongest(checks: list[Check], shown: int = 3) -> str:
    """How many columns alerted, naming the furthest past their thresholds."""
    if not checks:
        return "-"
    worst: dict[str, float] = {}
    for c in checks:
        excess = c.statistic / c.threshold if c.higher_is_worse and c.threshold else 1.0
        worst[c.column] = max(worst.get(c.column, 0.0), excess)
    names = sorted(worst, key=lambda name: -worst[name])
    more = f" +{len(names) - shown}" if len(names) > shown else ""
    return f"{len(names)}: " + ", ".join(names[:shown]) + more


def _accuracy(window: WindowResult) -> tuple[str, str]:
    point = next((p for p in window.performance if p.metric == "accuracy"), None)
    if point is None or point.estimated is None:
        return "-", "-"
    band = (
        f" [{point.lower:.3f}, {point.upper:.3f}]"
        if point.lower is not None and point.upper is not None
        else ""
    )
    realized = f"{point.realized:.3f}" if point.realized is not None else "-"
    return f"{point.estimated:.3f}{band}", realized


def _labels(path: Path, column: str, on: str, time_column: str | None) -> LabelSource:
    from mlprod.monitor import LabelSource

    keys = "request_id" if on == "request_id" else [k.strip() for k in on.split(",") if k.strip()]
    if not keys:
        raise InvalidInputError("--label-on needs request_id or entity key columns")
    return LabelSource(_read_table(path), on=keys, column=column, time_column=time_column)


def _read_table(path: Path) -> pa.Table:
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidInputError(f"--labels {path} is not a file")
    if path.suffix.lower() == ".csv":
        return pv.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.read_table(path)
    raise InvalidInputError(f"--labels {path}: expected a .parquet or .csv file")


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"))
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)
