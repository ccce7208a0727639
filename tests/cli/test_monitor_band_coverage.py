from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlprod.cli.monitor_commands import print_windows
from mlprod.monitor.results import MonitorResult, PerformancePoint, WindowResult

START = datetime(2013, 7, 1, tzinfo=UTC)


def week(k: int, realized: float | None) -> WindowResult:
    labelled = 0 if realized is None else 1_000
    point = PerformancePoint(
        "accuracy", 0.8, estimated=0.8, lower=0.77, upper=0.83, realized=realized, labelled_rows=labelled
    )
    return WindowResult(START + timedelta(weeks=k), START + timedelta(weeks=k + 1), 1_000, [], [point])


def test_the_window_listing_ends_with_the_measured_band_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    print_windows(MonitorResult("m", 1, "week", [week(0, 0.78), week(1, 0.9), week(2, 0.8)]))
    printed = capsys.readouterr().out
    assert "band coverage (nominal 95 %) of estimated accuracy: 2/3 windows (67%) inside the band" in printed
    print_windows(MonitorResult("m", 1, "week", [week(0, None)]))
    assert "band coverage" not in capsys.readouterr().out
