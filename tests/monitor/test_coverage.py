from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from mlprod.errors import InvalidInputError
from mlprod.monitor.coverage import band_coverage
from mlprod.monitor.html_report import render_html
from mlprod.monitor.results import MonitorResult, PerformancePoint, WindowResult

START = datetime(2013, 7, 1, tzinfo=UTC)


def window(k: int, realized: float | None, labelled: int, rows: int = 1_000) -> WindowResult:
    point = PerformancePoint(
        "accuracy", 0.8, estimated=0.8, lower=0.77, upper=0.83, realized=realized, labelled_rows=labelled
    )
    auc = PerformancePoint("roc_auc", 0.9, estimated=0.9, lower=0.88, upper=0.92)  # no labels: no realized
    return WindowResult(START + timedelta(weeks=k), START + timedelta(weeks=k + 1), rows, [], [point, auc])


def test_coverage_counts_labelled_windows_with_a_band() -> None:
    windows = [window(0, 0.78, 1_000), window(1, 0.85, 1_000), window(2, 0.80, 990), window(3, 0.5, 100)]
    coverage = band_coverage(windows)
    accuracy = coverage["accuracy"]
    # the last window has 10 % of its rows labelled: its realized value is not the band's quantity
    assert (accuracy.windows, accuracy.covered) == (3, 2)
    assert accuracy.share == pytest.approx(2 / 3)
    assert accuracy.mean_width == pytest.approx(0.06)
    assert coverage["roc_auc"].windows == 0 and math.isnan(coverage["roc_auc"].share)
    assert band_coverage(windows, min_labelled_share=0.0)["accuracy"].windows == 4
    assert accuracy.describe() == "accuracy: 2/3 windows (67%) inside the band, mean width 0.06"
    assert coverage["roc_auc"].describe() == "roc_auc: no labelled window with a band yet"


def test_a_bad_share_is_named() -> None:
    with pytest.raises(InvalidInputError, match=r"min_labelled_share: expected a share in \[0, 1\], got 2"):
        band_coverage([], min_labelled_share=2)


def test_the_html_summary_reports_measured_coverage() -> None:
    result = MonitorResult("flights", 3, "week", [window(0, 0.78, 1_000), window(1, 0.9, 1_000)])
    page = render_html(result)
    assert "Band coverage (nominal 95 %)" in page
    assert "accuracy: 1/2 windows (50%) inside the band, mean width 0.06" in page
    unlabelled = MonitorResult("flights", 3, "week", [window(0, None, 0)])
    assert "Band coverage" not in render_html(unlabelled)
