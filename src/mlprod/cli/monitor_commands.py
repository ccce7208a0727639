"""``mlprod monitor``: references, drift and performance per window, alerts, reports."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from mlprod.cli.listing import Column, FormatOpt, emit, print_table, rows_of
from mlprod.cli.state import err, open_workspace, out, state
from mlprod.errors import InvalidInputError
from mlprod.times import parse_optional_utc

if TYPE_CHECKING:
    from datetime import datetime

    from mlprod.evaluate.bootstrap import Interval
    from mlprod.evaluate.fairness import FairnessReport
    from mlprod.monitor import Check, LabelSource, MonitorResult, MonitorSettings, WindowResult
    from mlprod.workspace import Workspace

T = TypeVar("T")

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


ByOption = Annotated[str | None, typer.Option(help="hour, day, week, month, quarter, year, or N rows.")]
LabelsOption = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help="Labels that arrived (joined to the log): a Parquet or CSV file, or a table NAME or NAME@REF.",
        show_default=False,
    ),
]
LabelColumnOption = Annotated[str, typer.Option(help="The label column in --labels.")]
LabelOnOption = Annotated[
    str, typer.Option(help="request_id, or entity key columns (comma-separated) matched by time.")
]
LabelTimeOption = Annotated[
    str | None, typer.Option(help="Event time column of --labels (entity-key joins).", show_default=False)
]
SinceOption = Annotated[str | None, typer.Option(help="First day or time (UTC), inclusive.")]
UntilOption = Annotated[str | None, typer.Option(help="Last day or time (UTC), exclusive.")]
RouteOption = Annotated[
    list[str] | None, typer.Option(help="Only these routes (repeatable; default: all).", show_default=False)
]


@app.command("report")
def report(
    model: ModelOption,
    by: ByOption = None,
    labels: LabelsOption = None,
    label_column: LabelColumnOption = "label",
    label_on: LabelOnOption = "request_id",
    label_time: LabelTimeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    route: RouteOption = None,
    html: Annotated[
        Path | None,
        typer.Option(help="HTML report path (default: reports/ in the workspace).", show_default=False),
    ] = None,
) -> None:
    """Check each window of a version's logged predictions against its reference; print and write HTML.

    Drift per feature and of the prediction, data quality, the multivariate detector, and accuracy
    estimated without labels next to the realized value where labels have arrived. Read-only: it
    records no alert and calls no webhook (`mlprod monitor check` does). A window the range read does
    not cover whole is marked partial and raises no alert.
    """
    from mlprod.monitor import AlertStore, monitor_version, write_html

    with open_workspace() as ws:
        run = _run(
            monitor_version, ws, model, by, labels, label_column, label_on, label_time, since, until, route
        )
        unrecorded = AlertStore(ws).unrecorded(run.alerts)
        result = run.result
        name = f"monitor-{result.model}-v{result.version}-{result.by.replace(' ', '-')}.html"  # "1000 rows"
        path = html or ws.root / "reports" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_html(result, path, rules=run.rules)
    print_windows(result)
    partial = sum(w.partial for w in result.windows)
    if partial:
        out.print(f"{partial} partial window(s): not covered whole by the range read, they raise no alert")
    pending = " (`mlprod monitor check` records them)" if unrecorded else ""
    out.print(f"{len(run.alerts)} alert(s), {len(unrecorded)} not recorded yet{pending}; HTML report:")
    out.print(Text(str(path)), soft_wrap=True)


@app.command("check")
def check(
    model: ModelOption,
    by: ByOption = None,
    labels: LabelsOption = None,
    label_column: LabelColumnOption = "label",
    label_on: LabelOnOption = "request_id",
    label_time: LabelTimeOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    route: RouteOption = None,
) -> None:
    """Check the windows as `report` does, record the alerts not recorded yet, send them to the webhook.

    Idempotent: an alert is recorded once per window, rule, column and method, and POSTed to the
    configured webhook (monitor.webhook_url) until the webhook accepted it (a failed delivery is
    retried by the next check). Partial windows raise no alert until they are whole. Run it on a
    schedule.
    """
    from mlprod.monitor import check_version

    with open_workspace() as ws:
        done = _run(
            check_version, ws, model, by, labels, label_column, label_on, label_time, since, until, route
        )
    result = done.run.result
    whole = sum(not w.partial for w in result.windows)
    out.print(
        f"{result.model}/{result.version}: {whole} whole window(s) checked, "
        f"{len(result.windows) - whole} partial; {len(done.run.alerts)} alert(s), {len(done.new_alerts)} new "
        "recorded (`mlprod monitor alerts` lists them)"
    )
    if done.delivery is not None:
        d = done.delivery
        status = f"{d.delivered} delivered" + (f", {d.pending} pending ({d.error})" if d.pending else "")
        (err if d.pending else out).print(f"webhook: {status}")


def _run(
    monitor: Callable[..., T],
    ws: Workspace,
    model: str,
    by: str | None,
    labels: str | None,
    label_column: str,
    label_on: str,
    label_time: str | None,
    since: str | None,
    until: str | None,
    route: list[str] | None,
) -> T:
    """``monitor_version`` or ``check_version`` with the options parsed, under a progress bar."""
    from mlprod.monitor import settings_of
    from mlprod.monitor.windows import Windowing

    start, end = parse_optional_utc(since, "--since"), parse_optional_utc(until, "--until")
    settings = settings_of(ws)
    if by is not None:
        settings = replace(settings, windowing=Windowing.parse(by))
    label_source = _labels(ws, labels, label_column, label_on, label_time) if labels else None
    with _progress() as progress:
        task = progress.add_task("reading the prediction log", total=None)
        return monitor(
            ws, model, labels=label_source, since=start, until=end,
            routes=route, settings=settings, progress=lambda rows: progress.advance(task, rows),
        )  # fmt: skip


def _local_settings() -> MonitorSettings:
    """The ``[monitor]`` thresholds of the workspace named by -C (or $MLPROD_HOME, or found upward),
    read from its mlprod.toml alone (no database is opened); the defaults when there is none."""
    from mlprod.config import load_config
    from mlprod.config_check import CONFIG_FILENAME
    from mlprod.errors import WorkspaceError
    from mlprod.monitor import MonitorSettings
    from mlprod.workspace import locate

    root = state.workspace or locate(environ=os.environ)
    if root is None:
        return MonitorSettings()
    path = Path(root).expanduser().resolve() / CONFIG_FILENAME
    if not path.is_file():
        raise WorkspaceError(f"{root} is not an mlprod workspace (no {CONFIG_FILENAME}); leave -C out")
    return MonitorSettings.from_config(load_config(path, os.environ).monitor)


def _names(text: str | None, option: str) -> tuple[str, ...] | None:
    """``a,b,c`` as names; None when the option was not given."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise InvalidInputError(f"{option}: no column named; give names separated by commas, e.g. a,b,c")
    return names


@app.command("run")
def run(
    reference: Annotated[
        list[str],
        typer.Option(
            help="Reference data: Parquet, CSV or JSON-lines files, globs or directories (repeatable)."
        ),
    ],
    analysis: Annotated[
        list[str],
        typer.Option(help="Analysis data (what the model met in production), same forms (repeatable)."),
    ],
    score: Annotated[
        str | None,
        typer.Option(help="Column of the model's score: probability of class 1.", show_default=False),
    ] = None,
    prediction: Annotated[
        str | None, typer.Option(help="Column of the predicted class (0/1).", show_default=False)
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Label column (0/1; null: not known yet).", show_default=False)
    ] = None,
    timestamp: Annotated[
        str | None, typer.Option(help="Time of each row (calendar windows).", show_default=False)
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Feature columns, comma-separated (default: every other column).", show_default=False
        ),
    ] = None,
    ignore: Annotated[
        str | None,
        typer.Option(help="Columns that are no feature (ids), comma-separated.", show_default=False),
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option(
            help="Group columns for fairness per window (needs --label), comma-separated.", show_default=False
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="hour, day, week, month, quarter, year, N or rows:N, chunks:N, by:COLUMN "
            "(default: week with --timestamp, else chunks:10).",
            show_default=False,
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the HTML report here.", show_default=False)
    ] = None,
    name: Annotated[str, typer.Option(help="The model's name in the report.")] = "model",
    output_format: FormatOpt = "table",
) -> None:
    """Monitor a model mlprod does not run: analysis data against reference data, window by window.

    Both carry the features, the model's score and/or predicted class and, where known, the label.
    Needs no workspace, no registered model and no prediction log; reads the files, writes only
    --report. Thresholds are the [monitor] keys of the workspace found (mlprod.toml only), else the
    defaults. Exit code 0 whatever the alerts: read them in the output or the report.
    """
    from mlprod.monitor import FrameColumns, monitor_frames
    from mlprod.monitor.frames_report import write_frames_html

    columns = FrameColumns(
        score=score, prediction=prediction, label=label, timestamp=timestamp,
        features=_names(features, "--features"), ignore=_names(ignore, "--ignore") or (),
        groups=_names(groups, "--groups") or (),
    )  # fmt: skip
    spec = window or ("week" if timestamp else "chunks:10")
    done = monitor_frames(reference, analysis, columns, window=spec, settings=_local_settings(), model=name)
    if report is not None:
        described = ", ".join(reference)
        write_frames_html(done, report, title=f"Monitoring report: {name}", reference=described)
    if output_format != "table":
        records = _window_records(done.result)
        for index, record in enumerate(records):
            record["fairness"] = {c: _gaps(reports[index]) for c, reports in done.fairness.items()}
        listed = WINDOW_COLUMNS + ((Column("fairness", "fairness"),) if done.fairness else ())
        emit(records, listed, output_format)
        return
    print_windows(done.result)
    for column, reports in done.fairness.items():
        print_fairness(done.result, column, reports)
    skipped = f"; left out (type): {', '.join(done.skipped)}" if done.skipped else ""
    out.print(f"features: {', '.join(done.features)}{skipped}", soft_wrap=True, highlight=False)
    out.print(f"{len(done.alerts)} alert(s)" + ("; HTML report:" if report else ""), highlight=False)
    if report is not None:
        out.print(Text(str(report)), soft_wrap=True)


def _gaps(report: FairnessReport | None) -> dict[str, float] | None:
    return None if report is None else report.metrics()


def print_fairness(result: MonitorResult, column: str, reports: list[FairnessReport | None]) -> None:
    """Per window: the groups compared, the demographic-parity and equalized-odds differences [95 %]."""
    from mlprod.monitor.alerts import window_title

    def gap(interval: Interval | None) -> str:
        return "-" if interval is None else f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"

    rows = [
        {
            "window": window_title(w, result.by),
            "groups": "-" if r is None else ", ".join(f"{g.group} ({g.rows:,})" for g in r.groups),
            "dp": gap(None if r is None else r.demographic_parity_difference),
            "eo": gap(None if r is None else r.equalized_odds_difference),
        }
        for w, r in zip(result.windows, reports, strict=True)
    ]
    columns = (
        Column("window", "window"),
        Column("groups", "labelled rows per group", wrap=True, priority=1),
        Column("dp", "demographic parity diff."),
        Column("eo", "equalized odds diff."),
    )
    print_table(rows, columns, title=f"fairness by {column}")


WINDOW_COLUMNS = (
    Column("window", "window"),
    Column("start", "start"),
    Column("end", "end"),
    Column("rows", "rows"),
    Column("partial", "partial"),
    Column("labelled", "labelled"),
    Column("drift", "drift alarms"),
    Column("quality", "quality breaches"),
    Column("accuracy_estimated", "est. accuracy"),
    Column("accuracy_lower", "lower"),
    Column("accuracy_upper", "upper"),
    Column("accuracy_realized", "realized"),
)


def _window_records(result: MonitorResult) -> list[dict[str, Any]]:
    """Per window the raw values JSON and CSV carry: span, rows, columns alarming, accuracy."""
    from mlprod.monitor.alerts import PRIMARY_DRIFT_METHODS, window_title

    records: list[dict[str, Any]] = []
    for w in result.windows:
        point = next((p for p in w.performance if p.metric == "accuracy"), None)
        drift = {c.column for c in w.alerts if c.kind == "drift" and c.method in PRIMARY_DRIFT_METHODS}
        records.append(
            {
                "window": window_title(w, result.by),
                "start": None if w.timeless else w.start,
                "end": None if w.timeless else w.end,
                "rows": w.rows,
                "partial": w.partial,
                "labelled": point.labelled_rows if point else 0,
                "drift": sorted(drift),
                "quality": sorted({c.column for c in w.alerts if c.kind == "quality"}),
                "accuracy_estimated": point.estimated if point else None,
                "accuracy_lower": point.lower if point else None,
                "accuracy_upper": point.upper if point else None,
                "accuracy_realized": point.realized if point else None,
            }
        )
    return records


@app.command("import-log")
def import_log(
    version: Annotated[str, typer.Argument(help="The registered version: NAME/VERSION or NAME@ALIAS.")],
    files: Annotated[
        list[str], typer.Argument(help="Parquet, CSV or JSON-lines files (globs, directories).")
    ],
    time: Annotated[str, typer.Option("--time", help="Column of each prediction's time.")],
    prediction: Annotated[str, typer.Option(help="Column of the model's score (probability of class 1).")],
    request_id: Annotated[
        str | None,
        typer.Option(
            help="Column of the request id (default: an id derived from each row).", show_default=False
        ),
    ] = None,
    latency: Annotated[
        str | None, typer.Option(help="Column of the latency in ms.", show_default=False)
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(
            help="Input columns, comma-separated (default: the version's inputs).", show_default=False
        ),
    ] = None,
    route: Annotated[str, typer.Option(help="Route recorded with the imported rows.")] = "imported",
) -> None:
    """Import predictions a deployed model logged elsewhere into a version's prediction log.

    Every column is checked before a row is written; a request id already logged for the version
    is skipped, so importing the same file again adds nothing. `mlprod monitor report` then reads
    the rows like served predictions.
    """
    from mlprod.models import Registry
    from mlprod.monitor.log_import import LogColumns
    from mlprod.monitor.log_import import import_log as run_import

    columns = LogColumns(
        time=time, prediction=prediction, request_id=request_id, latency_ms=latency,
        inputs=_names(inputs, "--inputs"),
    )  # fmt: skip
    with open_workspace() as ws:
        registered = Registry(ws).get(version)
        done = run_import(ws.prediction_log_dir, registered, files, columns, route=route)
    skipped = f", {done.skipped_requests:,} already logged (skipped)" if done.skipped_requests else ""
    out.print(
        f"{registered.ref}: {done.written:,} of {done.rows:,} row(s) imported, "
        f"{done.requests:,} request(s){skipped}",
        highlight=False,
    )


@app.command("alerts")
def alerts(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest window first.")] = 50,
    output_format: FormatOpt = "table",
) -> None:
    """Alerts recorded by `mlprod monitor check`: window, rule, column, statistic and threshold, delivery."""
    from mlprod.monitor import AlertStore

    if limit <= 0:
        raise InvalidInputError(f"--limit must be positive, got {limit}")
    with open_workspace() as ws:
        stored = AlertStore(ws).list(model=model, limit=limit)
    listed = rows_of(stored, ALERT_COLUMNS)
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
    listed = rows_of(summaries, PREDICTION_COLUMNS)
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
    multivariate detector), accuracy estimated without labels and realized; partial windows marked."""
    from mlprod.monitor.alerts import PRIMARY_DRIFT_METHODS

    rows = []
    for w in result.windows:
        drift = [c for c in w.alerts if c.kind == "drift" and c.method in PRIMARY_DRIFT_METHODS]
        quality = [c for c in w.alerts if c.kind == "quality"]
        estimated, realized = _accuracy(w)
        rows.append(
            {
                "window": _window_cell(w, result.by) + (" (partial)" if w.partial else ""),
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
    from mlprod.monitor.coverage import band_coverage

    accuracy = band_coverage(result.windows).get("accuracy")
    if accuracy is not None and accuracy.windows:
        out.print(f"band coverage (nominal 95 %) of estimated {accuracy.describe()}")


def _window_cell(window: WindowResult, by: str) -> str:
    """A window's name (chunk, column value; rows without times), else its start (row windows too)."""
    if window.name and (window.timeless or not by.endswith(" rows")):
        return window.name
    return f"{window.start:%Y-%m-%d %H:%M}" if by == "hour" else f"{window.start:%Y-%m-%d}"


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


def _labels(ws: Workspace, source: str, column: str, on: str, time_column: str | None) -> LabelSource:
    from mlprod.monitor import LabelSource
    from mlprod.monitor.label_input import read_labels

    keys = "request_id" if on == "request_id" else [k.strip() for k in on.split(",") if k.strip()]
    if not keys:
        raise InvalidInputError("--label-on needs request_id or entity key columns")
    return LabelSource(read_labels(ws, source), on=keys, column=column, time_column=time_column)


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"))
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)
