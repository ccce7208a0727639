"""``mlprod monitor``: references, drift and performance per window, alerts, reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from mlprod.cli.listing import Column, FormatOpt, emit, print_table
from mlprod.cli.state import err, open_workspace, out
from mlprod.errors import InvalidInputError

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

    with open_workspace() as ws:
        settings = settings_of(ws)
        if by is not None:
            settings = replace(settings, windowing=Windowing.parse(by))
        label_source = _labels(labels, label_column, label_on, label_time) if labels else None
        with _progress() as progress:
            task = progress.add_task("reading the prediction log", total=None)
            run = monitor_version(
                ws, model, labels=label_source, since=_time("--since", since), until=_time("--until", until),
                routes=route, settings=settings, progress=lambda rows: progress.advance(task, rows),
            )  # fmt: skip
        result = run.result
        name = f"monitor-{result.model}-v{result.version}-{result.by.replace(' ', '-')}.html"  # "1000 rows"
        path = html or ws.root / "reports" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_html(result, path, rules=run.rules)
    print_windows(result)
    out.print(f"{len(run.alerts)} alert(s), {len(run.new_alerts)} new; HTML report:")
    out.print(Text(str(path)), soft_wrap=True)
    if run.delivery is not None:
        d = run.delivery
        status = f"{d.delivered} delivered" + (f", {d.pending} pending ({d.error})" if d.pending else "")
        (err if d.pending else out).print(f"webhook: {status}")


@app.command("alerts")
def alerts(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest window first.")] = 50,
    output_format: FormatOpt = "table",
) -> None:
    """Alerts recorded by earlier reports: window, rule, column, statistic and threshold, delivery."""
    from mlprod.monitor import AlertStore

    if limit <= 0:
        raise InvalidInputError(f"--limit must be positive, got {limit}")
    with open_workspace() as ws:
        stored = AlertStore(ws).list(model=model, limit=limit)
    listed = [
        {
            "id": a.id,
            "window_start": a.window_start,
            "window_end": a.window_end,
            "model": a.model,
            "version": a.version,
            "rule": a.rule,
            "column": a.column,
            "method": a.method,
            "statistic": a.statistic,
            "threshold": a.threshold,
            "message": a.message,
            "created_at": a.created_at,
            "delivered_at": a.delivered_at,
        }
        for a in stored
    ]
    for row in listed:
        row["model_version"] = f"{row['model']}/{row['version']}"
    columns = ALERT_TABLE if output_format == "table" else ALERT_COLUMNS
    emit(listed, columns, output_format, empty="no alerts recorded")


def _minute(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


ALERT_COLUMNS = (
    Column("id", "id"),
    Column("window_start", "window"),
    Column("window_end", "window end"),
    Column("model", "model"),
    Column("version", "version"),
    Column("rule", "rule"),
    Column("column", "column"),
    Column("method", "method"),
    Column("statistic", "statistic"),
    Column("threshold", "threshold"),
    Column("message", "message"),
    Column("created_at", "created"),
    Column("delivered_at", "delivered"),
)
ALERT_TABLE = (
    Column("window_start", "window", text=_minute),
    Column("model_version", "model"),
    Column("rule", "rule", priority=2),
    Column("message", "message", wrap=True),
    Column("delivered_at", "delivered", text=_minute, priority=1),
)


@app.command("predictions")
def predictions(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    output_format: FormatOpt = "table",
) -> None:
    """Per model version: predictions and requests logged, time span, mean score, latency."""
    from mlprod.monitor import summarize_predictions

    with open_workspace() as ws:
        summaries = summarize_predictions(ws.prediction_log_dir, model=model)
    listed = [
        {
            "model": s.model,
            "version": s.version,
            "predictions": s.predictions,
            "requests": s.requests,
            "first": s.first,
            "last": s.last,
            "mean_prediction": s.mean_prediction,
            "latency_p50_ms": s.latency_p50_ms,
            "latency_p99_ms": s.latency_p99_ms,
        }
        for s in summaries
    ]
    for row in listed:
        row["span"] = f"{row['first']:%m-%d %H:%M} to {row['last']:%m-%d %H:%M}"
    columns: tuple[Column, ...] = PREDICTION_COLUMNS
    if output_format == "table":
        columns = (*columns[:4], Column("span", "UTC span", priority=3), *columns[6:])
    emit(listed, columns, output_format, empty="no predictions logged yet")


def _fixed(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


PREDICTION_COLUMNS = (
    Column("model", "model"),
    Column("version", "version"),
    Column("predictions", "predictions"),
    Column("requests", "requests", priority=2),
    Column("first", "first (UTC)", text=_minute, priority=3),
    Column("last", "last (UTC)", text=_minute, priority=3),
    Column("mean_prediction", "mean", text=_fixed(4), priority=1),
    Column("latency_p50_ms", "p50 ms", text=_fixed(2), priority=4),
    Column("latency_p99_ms", "p99 ms", text=_fixed(2), priority=1),
)


def print_windows(result: MonitorResult) -> None:
    """Per window: rows, labels, drift alarms and quality breaches (the strongest first, "*" for the
    multivariate detector), accuracy estimated without labels and realized."""
    from mlprod.monitor.alerts import PRIMARY_DRIFT_METHODS

    rows = []
    for w in result.windows:
        drift = [c for c in w.alerts if c.kind == "drift" and c.method in PRIMARY_DRIFT_METHODS]
        quality = [c for c in w.alerts if c.kind == "quality"]
        estimated, realized = _accuracy(w)
        rows.append(
            {
                "window": f"{w.start:%Y-%m-%d %H:%M}" if result.by == "hour" else f"{w.start:%Y-%m-%d}",
                "rows": w.rows,
                "labelled": next((p.labelled_rows for p in w.performance), 0),
                "drift": _strongest(drift),
                "quality": _strongest(quality),
                "estimated": estimated,
                "realized": realized,
            }
        )
    columns = (
        Column("window", "window"),
        Column("rows", "rows"),
        Column("labelled", "labelled", priority=2),
        Column("drift", "drift alarms", wrap=True),
        Column("quality", "quality breaches", wrap=True, priority=1),
        Column("estimated", "est. accuracy [95 %]"),
        Column("realized", "realized"),
    )
    print_table(rows, columns, hint="the HTML report shows every column")


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


def _time(option: str, text: str | None) -> datetime | None:
    """A date or ISO time; UTC when it names no zone."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"{option} {text!r} is not a date or time (e.g. 2013-08-01)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"))
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)
