"""The HTML report of a run over files: the monitoring report plus, with group columns, fairness per window.

``render_html`` draws what every monitoring run has; a ``FramesRun`` may also carry group fairness
per window (``--groups``), added here as one more section with a table per group column: the groups
compared with their labelled rows, and the demographic-parity and equalized-odds differences with
their 95 % intervals. Same rules as the report: inline, no script, every user string escaped.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from mlprod.evaluate.bootstrap import Interval
from mlprod.evaluate.fairness import FairnessReport
from mlprod.monitor.alerts import window_title
from mlprod.monitor.frames import FramesRun
from mlprod.monitor.html_report import render_html
from mlprod.monitor.results import MonitorResult


def write_frames_html(
    run: FramesRun, path: str | os.PathLike[str], *, title: str | None = None, reference: str | None = None
) -> Path:
    """Write the report of ``run`` (with its fairness section, when it has group columns) to ``path``."""
    page = render_html(run.result, title=title, reference=reference, rules=run.rules)
    if run.fairness:
        section = fairness_section(run.result, run.fairness, run.fairness_notes)
        page = page.replace("\n</body></html>", "\n" + section + "\n</body></html>")
    target = Path(path)
    target.write_text(page, encoding="utf-8")
    return target


def fairness_section(
    result: MonitorResult,
    fairness: dict[str, list[FairnessReport | None]],
    notes: dict[tuple[str, int], str],
) -> str:
    """One table per group column: per window the groups, the DP and EO differences [95 %]."""
    parts = ['<section id="fairness"><h2>Fairness per group</h2>']
    for column, reports in fairness.items():
        lines = [
            f"<figure><figcaption>by {escape(column)}</figcaption><table><thead><tr><th>Window</th>"
            "<th>Labelled rows per group</th><th>Demographic parity difference</th>"
            "<th>Equalized odds difference</th></tr></thead><tbody>"
        ]
        for index, (window, report) in enumerate(zip(result.windows, reports, strict=True)):
            name = escape(window_title(window, result.by))
            if report is None:
                note = escape(notes.get((column, index), "not computed"))
                lines.append(f'<tr><td>{name}</td><td colspan="3" class="empty">{note}</td></tr>')
                continue
            groups = ", ".join(f"{escape(g.group)} ({g.rows:,})" for g in report.groups)
            dp, eo = _gap(report.demographic_parity_difference), _gap(report.equalized_odds_difference)
            lines.append(f"<tr><td>{name}</td><td>{groups}</td><td>{dp}</td><td>{eo}</td></tr>")
        lines.append("</tbody></table></figure>")
        parts.append("".join(lines))
    parts.append("</section>")
    return "".join(parts)


def _gap(interval: Interval) -> str:
    return f'{interval.value:.3f} <span class="band-text">[{interval.low:.3f}, {interval.high:.3f}]</span>'
