"""The monitoring report: one self-contained HTML file that opens offline.

Inline CSS and inline SVG only: no script, no font, no image and no URL of any kind, so the file
can be mailed, attached to a ticket or opened on an air-gapped machine. It shows a summary, a table
per window, drift per feature over time (a heatmap of each feature's primary statistic over its
threshold) and estimated vs realized performance (the estimate in its confidence band, the
realized value where labels arrived, the reference level). Every user string is escaped.

Examples:
    >>> from datetime import UTC, datetime
    >>> from mlprod.monitor.results import MonitorResult, WindowResult
    >>> week = WindowResult(datetime(2013, 7, 8, tzinfo=UTC), datetime(2013, 7, 15, tzinfo=UTC), 5000)
    >>> page = render_html(MonitorResult("flights", 3, "week", [week]))
    >>> page.startswith("<!DOCTYPE html>") and "<script" not in page
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path

from mlprod.monitor.alerts import (
    DEFAULT_RULES,
    PRIMARY_DRIFT_METHODS,
    Alert,
    AlertRule,
    evaluate_rules,
    format_number,
    window_title,
)
from mlprod.monitor.coverage import band_coverage
from mlprod.monitor.results import MULTIVARIATE, Check, MonitorResult, PerformancePoint, WindowResult
from mlprod.monitor.svg_plots import Cell, heatmap, heatmap_legend, line_chart

DEFAULT_METRICS = ("accuracy", "roc_auc")
_LAST_ROWS = ("prediction", MULTIVARIATE)  # after the features, in this order

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: .2rem 1.2rem; }
dl.summary dt { color: #666; } dl.summary dd { margin: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.alerting td.alerts { color: #b71c1c; font-weight: 600; }
.band-text { color: #777; font-size: .85em; }
.empty { color: #777; font-style: italic; }
figure { margin: 1rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
svg { max-width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #333; }
svg .cell rect { stroke: #fff; } svg .cell.alert rect { stroke: #111; stroke-width: 2; }
svg .alert-mark { fill: #111; }
svg .grid { stroke: #eee; }
svg .band { fill: #90caf9; fill-opacity: .45; stroke: none; }
svg .estimated { stroke: #1565c0; stroke-width: 2; fill: none; }
svg .estimated-point { fill: #1565c0; }
svg .realized { stroke: #e65100; stroke-width: 2; fill: none; }
svg .realized-point { fill: #e65100; }
svg .reference { stroke: #555; stroke-dasharray: 6 4; }
svg .alert-level { stroke: #b71c1c; stroke-dasharray: 2 3; }
ul.alerts { margin: .2rem 0 .6rem; } ul.alerts li { margin: .15rem 0; }
details summary { cursor: pointer; } .note { color: #555; }
"""


def render_html(
    result: MonitorResult,
    *,
    title: str | None = None,
    reference: str | None = None,
    rules: Sequence[AlertRule] = DEFAULT_RULES,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> str:
    """The report of ``result`` as one HTML document.

    ``reference`` describes the data the model is compared with (e.g. "evaluation data, Apr-Jun").
    ``rules`` decide which checks count as alerts (as ``evaluate_rules``); ``metrics`` are the
    performance metrics tabulated and plotted, those without any value are left out.
    """
    title = title or f"Monitoring report: {result.model} v{result.version}"
    alerts = evaluate_rules(result, rules)
    shown = [m for m in metrics if any(_point(w, m) for w in result.windows)]
    body = [
        f"<h1>{escape(title)}</h1>",
        _summary(result, alerts, reference, shown),
        '<section id="windows"><h2>Windows</h2>',
        _window_table(result, alerts, shown),
        "</section>",
        '<section id="drift"><h2>Drift per feature over time</h2>',
        _drift_plot(result),
        "</section>",
        '<section id="performance"><h2>Estimated vs realized performance</h2>',
        _performance_plots(result, shown, rules),
        "</section>",
        '<section id="alerts"><h2>Alerts</h2>',
        _alert_list(result, alerts),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_html(
    result: MonitorResult,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    reference: str | None = None,
    rules: Sequence[AlertRule] = DEFAULT_RULES,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Path:
    """Write ``render_html(result, ...)`` to ``path`` (UTF-8) and return the path."""
    target = Path(path)
    page = render_html(result, title=title, reference=reference, rules=rules, metrics=metrics)
    target.write_text(page, encoding="utf-8")
    return target


def _summary(
    result: MonitorResult, alerts: list[Alert], reference: str | None, metrics: Sequence[str] = ()
) -> str:
    windows = result.windows
    span = (
        f"{len(windows)} ({_label(windows[0], result.by)} to {_label(windows[-1], result.by)})"
        if windows
        else "0"
    )
    items = [
        ("Model", result.model),
        ("Version", str(result.version)),
        ("Reference", reference or "not described"),
        ("Windows by", result.by),
        ("Windows", span),
        ("Rows", f"{sum(w.rows for w in windows):,}"),
        ("Alerts", str(len(alerts))),
    ]
    coverage = band_coverage(windows)
    measured = [coverage[m].describe() for m in metrics if m in coverage and coverage[m].windows]
    if measured:
        items.append(("Band coverage (nominal 95 %)", "; ".join(measured)))
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2><dl class="summary">{rows}</dl></section>'


def _window_table(result: MonitorResult, alerts: list[Alert], metrics: Sequence[str]) -> str:
    if not result.windows:
        return '<p class="empty">No windows: nothing was predicted in the monitored period.</p>'
    head = ["Window", "Rows", "Alerts"]
    for metric in metrics:
        head += [f"{metric} estimated", f"{metric} realized"]
    head.append("Labelled rows")
    lines = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for window in result.windows:
        count = sum(a.window_start == window.start for a in alerts)
        name = window_title(window, result.by) + (" (partial)" if window.partial else "")
        cells = [escape(name), f"{window.rows:,}"]
        cells.append(str(count))
        for metric in metrics:
            point = _point(window, metric)
            cells += [_estimate_text(point), _value_text(None if point is None else point.realized)]
        cells.append(f"{max((p.labelled_rows for p in window.performance), default=0):,}")
        css = ' class="alerting"' if count else ""
        tds = "".join(
            f'<td class="alerts">{c}</td>' if i == 2 else f"<td>{c}</td>" for i, c in enumerate(cells)
        )
        lines.append(f"<tr{css}>{tds}</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


def _drift_plot(result: MonitorResult) -> str:
    rows = _drift_rows(result.windows)
    if not rows:
        return '<p class="empty">No drift statistics were computed in these windows.</p>'
    labels = [("all features" if c == MULTIVARIATE else c) + f" \u00b7 {m}" for c, m in rows]
    cells = [[_drift_cell(w, column, method, result.by) for w in result.windows] for column, method in rows]
    columns = [_label(w, result.by) for w in result.windows]
    caption = (
        "Each feature's primary drift statistic per window, divided by its threshold: 1 is the threshold, "
        "outlined cells alerted. Hover a cell for its value."
    )
    plot = heatmap(labels, columns, cells)
    return f"<figure><figcaption>{caption}</figcaption>{plot}{heatmap_legend()}</figure>"


def _drift_rows(windows: Sequence[WindowResult]) -> list[tuple[str, str]]:
    """One (column, method) per drifting column: its primary method, else the first one reported."""
    methods: dict[str, list[str]] = {}
    for window in windows:
        for check in window.checks:
            if check.kind == "drift" and check.method not in methods.setdefault(check.column, []):
                methods[check.column].append(check.method)
    order = [c for c in methods if c not in _LAST_ROWS] + [c for c in _LAST_ROWS if c in methods]
    primary = {c: next((m for m in PRIMARY_DRIFT_METHODS if m in methods[c]), methods[c][0]) for c in order}
    return [(c, primary[c]) for c in order]


def _drift_cell(window: WindowResult, column: str, method: str, by: str) -> Cell:
    check = next(
        (c for c in window.checks if c.kind == "drift" and c.column == column and c.method == method), None
    )
    where = window_title(window, by)
    if check is None:
        return Cell(None, False, f"{column}, {where}: not computed")
    verdict = "ALERT" if check.alert else "ok"
    tooltip = (
        f"{column}, {where}: {method} {_value_text(check.statistic)} "
        f"(threshold {_value_text(check.threshold)}) {verdict}"
    )
    return Cell(_severity(check), check.alert, tooltip)


def _severity(check: Check) -> float | None:
    """The statistic relative to its threshold, oriented so that above 1 is on the alerting side."""
    stat, threshold = check.statistic, check.threshold
    if not (math.isfinite(stat) and math.isfinite(threshold)):
        return 2.0 if check.alert and not math.isnan(stat) else None
    bad, good = (stat, threshold) if check.higher_is_worse else (threshold, stat)
    if good <= 0:
        return 2.0 if check.alert else 0.0
    return bad / good


def _performance_plots(result: MonitorResult, metrics: Sequence[str], rules: Sequence[AlertRule]) -> str:
    if not metrics:
        return '<p class="empty">No performance was estimated or realized in these windows.</p>'
    note = (
        '<p class="note">The estimate needs no labels; its band is the confidence interval. The realized '
        "value appears once labels have been joined; windows still without labels have no realized point.</p>"
    )
    labels = [_label(w, result.by) for w in result.windows]
    figures = []
    for metric in metrics:
        points = [_point(w, metric) for w in result.windows]
        reference = next((p.reference for p in points if p is not None and math.isfinite(p.reference)), None)
        drop = next((r.max_drop for r in rules if r.kind == "performance" and r.metric == metric), None)
        chart = line_chart(
            labels,
            estimated=[None if p is None else p.estimated for p in points],
            lower=[None if p is None else p.lower for p in points],
            upper=[None if p is None else p.upper for p in points],
            realized=[None if p is None else p.realized for p in points],
            reference=reference,
            alert_level=None if reference is None or drop is None else reference - drop,
            label=f"{metric}: estimated vs realized",
        )
        figures.append(
            f'<figure class="performance" data-metric="{escape(metric)}">'
            f"<figcaption>{escape(metric)}</figcaption>{chart}</figure>"
        )
    return note + "".join(figures)


def _alert_list(result: MonitorResult, alerts: list[Alert]) -> str:
    """The alert messages, folded per window so that a long run stays readable."""
    if not alerts:
        return '<p class="empty">No alert fired.</p>'
    parts = []
    for window in result.windows:
        messages = [a.message for a in alerts if a.window_start == window.start]
        if messages:
            where = window_title(window, result.by)
            items = "".join(f"<li>{escape(m)}</li>" for m in messages)
            parts.append(
                f"<details><summary>{escape(where)}: {len(messages)} alert{'s' if len(messages) > 1 else ''}"
                f'</summary><ul class="alerts">{items}</ul></details>'
            )
    return "".join(parts)


def _point(window: WindowResult, metric: str) -> PerformancePoint | None:
    point = next((p for p in window.performance if p.metric == metric), None)
    if point is None or not any(_is_number(v) for v in (point.estimated, point.realized)):
        return None
    return point


def _estimate_text(point: PerformancePoint | None) -> str:
    if point is None or not _is_number(point.estimated):
        return "\u2014"
    text = _value_text(point.estimated)
    if _is_number(point.lower) and _is_number(point.upper):
        band = f"{_value_text(point.lower)}\u2013{_value_text(point.upper)}"
        text += f' <span class="band-text">({band})</span>'
    return text


def _value_text(value: float | None) -> str:
    return format_number(value) if value is not None and _is_number(value) else "\u2014"


def _is_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _label(window: WindowResult, by: str) -> str:
    """A window's short axis label: its name (rows, chunk, value) or its start."""
    return window.name or _short(window.start, by)


def _short(start: datetime, by: str) -> str:
    if by in ("quarter", "year"):
        return f"{start.year}" + (f"-Q{(start.month - 1) // 3 + 1}" if by == "quarter" else "")
    if by == "month":
        return f"{start:%Y-%m}"
    if by in ("week", "day"):
        return f"{start:%Y-%m-%d}"
    return f"{start:%m-%d %H:%M}"
