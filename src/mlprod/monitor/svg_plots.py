"""Inline SVG plots for reports that must open offline: a heatmap and a line chart with a band.

Plain SVG markup, no script and no external reference, sized in pixels with a ``viewBox`` so the
browser can scale it down. Every label is escaped here; callers pass plain text. Values that are
missing or not finite are gaps, never zeros.

Examples:
    >>> svg = line_chart(["w1", "w2"], estimated=[0.8, 0.7], realized=[None, 0.75], reference=0.82)
    >>> svg.startswith("<svg") and 'class="estimated"' in svg and svg.count('class="realized-point"')
    1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

ROW_HEIGHT = 22
MAX_LABEL_CHARS = 40
# Cell colours from "far below the threshold" through "at the threshold" to "twice the threshold".
_SCALE = ((0.0, (237, 247, 237)), (1.0, (255, 213, 79)), (2.0, (198, 40, 40)))
_MISSING = "#d9d9d9"


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: ``severity`` is the statistic over its threshold (1 at the threshold)."""

    severity: float | None
    alert: bool
    tooltip: str


def heatmap(row_labels: Sequence[str], column_labels: Sequence[str], cells: Sequence[Sequence[Cell]]) -> str:
    """A grid of ``cells`` (one row per label in ``row_labels``), alert cells outlined and dotted."""
    label_width = 8 + 7 * min(MAX_LABEL_CHARS, max((len(r) for r in row_labels), default=0))
    cell_width = max(12, min(44, 860 // max(1, len(column_labels))))
    top, bottom = 8, 84
    width = label_width + cell_width * len(column_labels) + 16
    height = top + ROW_HEIGHT * len(row_labels) + bottom
    parts = [
        _open_svg("drift-heatmap", width, height, "drift statistic over threshold per feature and window")
    ]
    for i, (label, row) in enumerate(zip(row_labels, cells, strict=True)):
        y = top + i * ROW_HEIGHT
        parts.append(
            f'<text class="row-label" x="{label_width - 6}" y="{y + ROW_HEIGHT / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(_shorten(label))}<title>{escape(label)}</title></text>'
        )
        for j, cell in enumerate(row):
            parts.append(_cell(label_width + j * cell_width, y, cell_width, cell))
    step = _label_step(len(column_labels), cell_width, 14)
    base = top + ROW_HEIGHT * len(row_labels) + 6
    for j in range(0, len(column_labels), step):
        x = label_width + (j + 0.5) * cell_width
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{base}" text-anchor="end" '
            f'transform="rotate(-45 {x:.1f} {base})">{escape(column_labels[j])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heatmap_legend() -> str:
    """The colour key of ``heatmap``: severities 0 to 2, the alert mark and a missing cell."""
    entries = [(Cell(s, False, ""), f"{s:g}\u00d7 threshold") for s in (0.0, 0.5, 1.0, 1.5, 2.0)]
    entries += [(Cell(1.2, True, ""), "alert"), (Cell(None, False, ""), "no value")]
    parts = [_open_svg("heatmap-legend", 120 * len(entries), 26, "colour key")]
    for i, (cell, text) in enumerate(entries):
        parts.append(_cell(i * 120, 2, 22, cell))
        parts.append(f'<text class="tick" x="{i * 120 + 28}" y="17">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    x_labels: Sequence[str],
    *,
    estimated: Sequence[float | None],
    lower: Sequence[float | None] = (),
    upper: Sequence[float | None] = (),
    realized: Sequence[float | None] = (),
    reference: float | None = None,
    alert_level: float | None = None,
    label: str = "",
) -> str:
    """An estimated line in its band, realized points and line, and reference and alert levels.

    ``lower``, ``upper`` and ``realized`` may be shorter than ``x_labels`` (missing at the end).
    """
    n = len(x_labels)
    left, right, top, bottom = 52, 16, 28, 72
    width = max(360, min(900, 120 + 60 * n))
    height = 300
    plot_w, plot_h = width - left - right, height - top - bottom
    series = {name: _padded(values, n) for name, values in (("lo", lower), ("hi", upper))}
    est, real = _padded(estimated, n), _padded(realized, n)
    levels = [v for v in (reference, alert_level) if _finite(v)]
    y_min, y_max = _y_range([*est, *real, *series["lo"], *series["hi"], *levels])

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else i * plot_w / (n - 1))

    def y(value: float) -> float:
        return top + plot_h * (y_max - value) / (y_max - y_min)

    parts = [_open_svg("metric-chart", width, height, label)]
    for tick in _ticks(y_min, y_max):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.3g}</text>'
        )
    for run in _runs(
        [_finite(lo) and _finite(hi) for lo, hi in zip(series["lo"], series["hi"], strict=True)]
    ):
        half = 4.0 if len(run) == 1 else 0.0
        upper_edge = [(x(i) + dx, y(_num(series["hi"][i]))) for i in run for dx in _spread(half)]
        lower_edge = [(x(i) + dx, y(_num(series["lo"][i]))) for i in reversed(run) for dx in _spread(-half)]
        parts.append(f'<polygon class="band" points="{_points(upper_edge + lower_edge)}"/>')
    for name, value in (("reference", reference), ("alert-level", alert_level)):
        if value is not None and _finite(value):
            level = f"{y(value):.1f}"
            parts.append(
                f'<line class="{name}" x1="{left}" x2="{width - right}" y1="{level}" y2="{level}">'
                f"<title>{name.replace('-', ' ')} {value:.3g}</title></line>"
            )
    for name, values in (("estimated", est), ("realized", real)):
        for run in _runs([_finite(v) for v in values]):
            if len(run) > 1:
                parts.append(
                    f'<polyline class="{name}" points="{_points((x(i), y(_num(values[i]))) for i in run)}"/>'
                )
            for i in run:
                parts.append(
                    f'<circle class="{name}-point" cx="{x(i):.1f}" cy="{y(_num(values[i])):.1f}" r="3.5">'
                    f"<title>{escape(x_labels[i])}: {name} {_num(values[i]):.3g}</title></circle>"
                )
    step = _label_step(n, plot_w / max(1, n), 16)
    for i in range(0, n, step):
        base = top + plot_h + 14
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{base}" text-anchor="end" '
            f'transform="rotate(-45 {x(i):.1f} {base})">{escape(x_labels[i])}</text>'
        )
    parts.append(_chart_legend(left, 16))
    parts.append("</svg>")
    return "".join(parts)


def _open_svg(css_class: str, width: float, height: float, label: str) -> str:
    # Inline SVG in HTML needs no xmlns; leaving it out keeps the report free of any URL.
    return (
        f'<svg class="{css_class}" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}">'
    )


def _cell(x: float, y: float, width: float, cell: Cell) -> str:
    fill = _MISSING if cell.severity is None else _colour(cell.severity)
    css = "cell alert" if cell.alert else ("cell missing" if cell.severity is None else "cell")
    tooltip = f"<title>{escape(cell.tooltip)}</title>" if cell.tooltip else ""
    mark = (
        f'<circle class="alert-mark" cx="{x + width / 2:.1f}" cy="{y + ROW_HEIGHT / 2:.1f}" r="3"/>'
        if cell.alert
        else ""
    )
    return (
        f'<g class="{css}"><rect x="{x + 1:.1f}" y="{y + 1}" width="{width - 2:.1f}" '
        f'height="{ROW_HEIGHT - 2}" fill="{fill}"/>{mark}{tooltip}</g>'
    )


def _colour(severity: float) -> str:
    s = min(max(severity, 0.0), 2.0)
    (s0, c0), (s1, c1) = (_SCALE[0], _SCALE[1]) if s <= 1.0 else (_SCALE[1], _SCALE[2])
    t = (s - s0) / (s1 - s0)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1, strict=True))


def _chart_legend(x: float, y: float) -> str:
    items = [
        ('<rect class="band" width="14" height="10" y="-9"/>', "estimate band"),
        ('<line class="estimated" x2="14" y1="-4" y2="-4"/>', "estimated"),
        ('<line class="realized" x2="14" y1="-4" y2="-4"/>', "realized"),
        ('<line class="reference" x2="14" y1="-4" y2="-4"/>', "reference"),
        ('<line class="alert-level" x2="14" y1="-4" y2="-4"/>', "alert level"),
    ]
    return "".join(
        f'<g class="legend" transform="translate({x + i * 104:.0f} {y})">{mark}'
        f'<text class="tick" x="18">{text}</text></g>'
        for i, (mark, text) in enumerate(items)
    )


def _y_range(values: Sequence[float | None]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and _finite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.08 or 0.05
    return low - pad, high + pad


def _ticks(low: float, high: float) -> list[float]:
    """About five round values from ``low`` to ``high``, 1, 2, 2.5 or 5 times 10^k apart."""
    magnitude = 10 ** math.floor(math.log10((high - low) / 5))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10)), key=lambda s: abs((high - low) / s - 5))
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(math.floor((high - first) / step + 1e-9) + 1)]


def _runs(present: Sequence[bool]) -> list[list[int]]:
    """Maximal stretches of consecutive indices where ``present`` holds."""
    runs: list[list[int]] = []
    for i, here in enumerate(present):
        if not here:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _label_step(count: int, spacing: float, minimum: float) -> int:
    return max(1, math.ceil(minimum / spacing)) if count else 1


def _spread(half: float) -> tuple[float, ...]:
    return (-half, half) if half else (0.0,)


def _padded(values: Sequence[float | None], n: int) -> list[float | None]:
    return [*values[:n], *([None] * (n - len(values)))]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _num(value: float | None) -> float:
    assert value is not None
    return value


def _points(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def _shorten(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
