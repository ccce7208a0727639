from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlprod.monitor.html_report import render_html, write_html
from mlprod.monitor.results import Check, MonitorResult, PerformancePoint, WindowResult
from mlprod.monitor.svg_plots import line_chart

CHROMIUM = Path("/usr/bin/chromium")
START = datetime(2013, 7, 1, tzinfo=UTC)
NAN = float("nan")


def weekly(checks: list[list[Check]], performance: list[list[PerformancePoint]]) -> MonitorResult:
    windows = [
        WindowResult(START + timedelta(weeks=k), START + timedelta(weeks=k + 1), 1000 + k, c, p)
        for k, (c, p) in enumerate(zip(checks, performance, strict=True))
    ]
    return MonitorResult("flights", 3, "week", windows)


def monitored() -> MonitorResult:
    """Six weeks: drift grows on dep_hour, labels stop after week 4, week 3 has no performance at all."""
    checks, performance = [], []
    for k in range(6):
        shift = 0.04 * k
        checks.append(
            [
                Check("dep_hour", "drift", "psi", 2 * shift, 0.2, alert=2 * shift > 0.2),
                Check("dep_hour", "drift", "wasserstein", shift, 0.1, alert=shift > 0.1),
                Check("carrier", "drift", "jensen_shannon", 0.01, 0.1, alert=False),
                Check("*", "drift", "pca_reconstruction", 1 + 1.5 * shift, 1.2, alert=1 + 1.5 * shift > 1.2),
                Check("prediction", "drift", "wasserstein", 0.02, 0.1, alert=False),
            ]
        )
        estimate = 0.8 - shift
        points = [
            PerformancePoint(
                "accuracy",
                0.8,
                estimated=estimate,
                lower=estimate - 0.03,
                upper=estimate + 0.03,
                realized=estimate - 0.02 if k < 4 else None,
                labelled_rows=900 if k < 4 else 0,
            ),
            PerformancePoint("roc_auc", 0.9, estimated=0.9 - shift, lower=0.85 - shift, upper=0.95 - shift),
        ]
        performance.append([] if k == 3 else points)
    return weekly(checks, performance)


def svgs(page: str) -> list[ET.Element]:
    """Every inline SVG of ``page``, parsed: fails on markup that is not well-formed."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def by_class(svg: ET.Element, css_class: str) -> list[ET.Element]:
    return [e for e in svg.iter() if css_class in (e.get("class") or "").split()]


def test_the_report_has_a_summary_a_window_table_and_both_plots() -> None:
    page = render_html(monitored(), reference="evaluation data, Apr-Jun 2013")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Monitoring report: flights v3</title>" in page
    assert "<dt>Windows</dt><dd>6 (2013-07-01 to 2013-08-05)</dd>" in page
    assert "<dt>Reference</dt><dd>evaluation data, Apr-Jun 2013</dd>" in page
    assert "<dt>Rows</dt><dd>6,015</dd>" in page
    heatmap, legend, accuracy, auc = svgs(page)
    assert [heatmap.get("class"), legend.get("class"), accuracy.get("class"), auc.get("class")] == [
        "drift-heatmap",
        "heatmap-legend",
        "metric-chart",
        "metric-chart",
    ]


def test_the_heatmap_shows_each_features_primary_statistic_with_alerts_marked() -> None:
    heatmap = svgs(render_html(monitored()))[0]
    labels = [t.text for t in by_class(heatmap, "row-label")]
    assert labels == [
        "dep_hour \u00b7 wasserstein",
        "carrier \u00b7 jensen_shannon",
        "prediction \u00b7 wasserstein",
        "all features \u00b7 pca_reconstruction",
    ]
    assert len(by_class(heatmap, "cell")) == 4 * 6
    alerting = [g.find("title").text for g in by_class(heatmap, "alert")]
    assert alerting == [
        "dep_hour, week 2013-07-22: wasserstein 0.12 (threshold 0.1) ALERT",
        "dep_hour, week 2013-07-29: wasserstein 0.16 (threshold 0.1) ALERT",
        "dep_hour, week 2013-08-05: wasserstein 0.2 (threshold 0.1) ALERT",
        "*, week 2013-07-29: pca_reconstruction 1.24 (threshold 1.2) ALERT",
        "*, week 2013-08-05: pca_reconstruction 1.3 (threshold 1.2) ALERT",
    ]
    assert len(by_class(heatmap, "alert-mark")) == 5


def test_the_performance_plot_has_band_estimate_realized_and_reference() -> None:
    accuracy, auc = svgs(render_html(monitored()))[2:]
    # Week 3 has no performance: the band and the estimated line break there.
    assert len(by_class(accuracy, "band")) == 1 + 2  # legend swatch + two stretches
    assert len([e for e in by_class(accuracy, "estimated") if e.tag == "polyline"]) == 2
    assert len(by_class(accuracy, "estimated-point")) == 5
    realized = by_class(accuracy, "realized-point")
    assert [e.find("title").text for e in realized] == [
        "2013-07-01: realized 0.78",
        "2013-07-08: realized 0.74",
        "2013-07-15: realized 0.7",
    ]
    assert [e.tag for e in by_class(accuracy, "reference")] == ["line", "line"]  # legend + level
    assert len(by_class(accuracy, "alert-level")) == 2
    assert by_class(auc, "realized-point") == []
    assert len(by_class(auc, "alert-level")) == 1  # no rule on auc: only the legend entry


def test_the_window_table_puts_estimate_and_realized_side_by_side() -> None:
    page = render_html(monitored())
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page)
    cells = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in rows]
    assert cells[0] == [
        "Window",
        "Rows",
        "Alerts",
        "accuracy estimated",
        "accuracy realized",
        "roc_auc estimated",
        "roc_auc realized",
        "Labelled rows",
    ]
    assert cells[1] == [
        "week 2013-07-01",
        "1,000",
        "0",
        '0.8 <span class="band-text">(0.77\u20130.83)</span>',
        "0.78",
        '0.9 <span class="band-text">(0.85\u20130.95)</span>',
        "\u2014",
        "900",
    ]
    assert cells[4][:5] == ["week 2013-07-22", "1,003", "1", "\u2014", "\u2014"]
    assert cells[6][2] == "3"  # drift, multivariate drift and the accuracy drop
    assert '<tr class="alerting">' in page


def test_a_partial_window_is_marked_and_counts_no_alert() -> None:
    result = monitored()
    last = result.windows[-1]
    assert any(c.alert for c in last.checks)  # week 6 alarms on dep_hour and the PCA detector
    whole_page = render_html(result)
    result.windows[-1] = replace(last, partial=True)
    page = render_html(result)
    assert '<td>week 2013-08-05 (partial)</td><td>1,005</td><td class="alerts">0</td>' in page
    assert "week 2013-08-05 (partial)" not in whole_page
    alerts = re.search(r"<dt>Alerts</dt><dd>(\d+)</dd>", page)
    whole = re.search(r"<dt>Alerts</dt><dd>(\d+)</dd>", whole_page)
    assert alerts and whole and int(alerts[1]) < int(whole[1])


def test_every_user_string_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    result = weekly(
        [[Check('"><img onerror=x>', "drift", "wasserstein", 0.5, 0.1, alert=True)]],
        [[PerformancePoint("<b>acc</b>", 0.8, estimated=0.7)]],
    )
    result = MonitorResult(hostile, 1, "week", result.windows)
    page = render_html(result, title="A & B", reference=hostile, metrics=["<b>acc</b>"])
    assert "<script" not in page
    assert "<img" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>A &amp; B</title>" in page
    assert "&lt;b&gt;acc&lt;/b&gt;" in page
    svgs(page)  # escaped labels keep the SVG well-formed


def test_the_report_references_nothing_outside_itself() -> None:
    page = render_html(monitored())
    for needle in ("<script", "http:", "https:", "//", "src=", "href=", "url(", "@import", "<link", "<img"):
        assert needle not in page


def test_no_windows_gives_a_report_that_says_so() -> None:
    page = render_html(MonitorResult("flights", 3, "week", []))
    assert "<dt>Windows</dt><dd>0</dd>" in page
    assert "<dt>Alerts</dt><dd>0</dd>" in page
    assert "No windows: nothing was predicted in the monitored period." in page
    assert "No drift statistics were computed in these windows." in page
    assert "No performance was estimated or realized in these windows." in page
    assert "No alert fired." in page
    assert "<svg" not in page


def test_windows_without_performance_get_the_drift_plot_only() -> None:
    result = weekly([[Check("x", "drift", "psi", 0.1, 0.2, alert=False)]] * 2, [[], []])
    page = render_html(result)
    assert [svg.get("class") for svg in svgs(page)] == ["drift-heatmap", "heatmap-legend"]
    assert "No performance was estimated or realized in these windows." in page
    assert "accuracy estimated" not in page
    assert "x \u00b7 psi" in page  # no primary method: the first one reported


def test_undefined_numbers_are_gaps_not_zeros() -> None:
    result = weekly(
        [
            [Check("x", "drift", "wasserstein", NAN, 0.1, alert=False)],
            [Check("x", "drift", "wasserstein", math.inf, 0.1, alert=True)],
            [],
        ],
        [
            [PerformancePoint("accuracy", NAN, estimated=NAN, realized=0.7, lower=NAN, upper=0.8)],
            [PerformancePoint("accuracy", 0.8, estimated=0.75, realized=None)],
            [PerformancePoint("roc_auc", 0.8)],
        ],
    )
    page = render_html(result)
    assert not re.search(r"\bnan\b", page, flags=re.I)
    heatmap, _, accuracy = svgs(page)
    cells = by_class(heatmap, "cell")
    assert [c.find("rect").get("fill") for c in cells] == ["#d9d9d9", "#c62828", "#d9d9d9"]
    assert by_class(heatmap, "missing")[1].find("title").text == "x, week 2013-07-15: not computed"
    assert [e.tag for e in by_class(accuracy, "band")] == ["rect"]  # the legend swatch only
    assert len(by_class(accuracy, "realized-point")) == 1
    assert len(by_class(accuracy, "estimated-point")) == 1
    assert "roc_auc" not in re.sub(r"<svg\b.*?</svg>", "", page)  # a metric without any value is left out


def test_a_single_window_band_is_drawn_with_a_width() -> None:
    chart = ET.fromstring(line_chart(["w"], estimated=[0.5], lower=[0.4], upper=[0.6], reference=0.55))
    (band,) = [e for e in by_class(chart, "band") if e.tag == "polygon"]
    xs = {float(p.split(",")[0]) for p in band.get("points", "").split()}
    assert len(xs) == 2


def test_write_html_writes_the_rendered_page(tmp_path: Path) -> None:
    path = write_html(monitored(), tmp_path / "report.html", title="Weekly")
    assert path == tmp_path / "report.html"
    assert path.read_text(encoding="utf-8") == render_html(monitored(), title="Weekly")


# --- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium from the OS driven by Playwright; skipped without them locally, required in CI."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright; never `playwright install`)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run must provide it")
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


def test_the_report_opens_offline_in_a_browser_and_shows_its_plots(browser: Any, tmp_path: Path) -> None:
    path = write_html(monitored(), tmp_path / "report.html")
    url = path.as_uri()
    context = browser.new_context(offline=True)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")

    assert page.title() == "Monitoring report: flights v3"
    assert requests == [url]  # the page itself, nothing else
    assert errors == []
    for svg in page.locator("svg").all():
        box = svg.bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 20
    assert page.locator("svg.drift-heatmap .cell").count() == 24
    assert page.locator("svg.drift-heatmap .cell.alert").count() == 5
    for selector in (
        "svg.metric-chart polygon.band",
        "svg.metric-chart polyline.estimated",
        "svg.metric-chart polyline.realized",
        "svg.metric-chart line.reference",
    ):
        box = page.locator(selector).first.bounding_box()
        assert box is not None, selector
        assert box["width"] > 10, selector
    accuracy = page.locator('figure.performance[data-metric="accuracy"]')
    assert accuracy.locator("circle.realized-point").count() == 3
    assert accuracy.locator("polygon.band").count() == 2
    context.close()
