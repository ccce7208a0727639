"""Slices: per time window and per column value, the worst one named only when large enough to judge."""

from __future__ import annotations

import numpy as np
import pytest

from mlprod.errors import InvalidInputError
from mlprod.evaluate import SliceReport, slice_report


def test_weekly_slices_start_on_monday_and_show_degradation() -> None:
    rng = np.random.default_rng(1)
    days = np.arange(np.datetime64("2026-03-02"), np.datetime64("2026-03-30"))  # four weeks from a Monday
    times = rng.choice(days, size=4000).astype("datetime64[ns]")
    week = (times.astype("datetime64[D]") - np.datetime64("2026-03-02")).astype(int) // 7
    x = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(3 - week) * x))).astype(int)  # the signal fades weekly
    p = 1 / (1 + np.exp(-x))
    report = slice_report(y, p, times=times, period="week", min_rows=100)
    assert [s.value for s in report.by_time] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"]
    aucs = [s.metric for s in report.by_time]
    assert aucs == sorted(aucs, reverse=True) and aucs[-1] < 0.6 < aucs[0]
    assert report.worst is not None and report.worst.value == "2026-03-23"
    monthly = slice_report(y, p, times=times, period="month", min_rows=100)
    assert [s.value for s in monthly.by_time] == ["2026-03"]


def test_a_small_or_one_class_slice_is_reported_but_never_worst() -> None:
    y = np.array([0, 1] * 100 + [1, 0, 0])
    p = np.array([0.1, 0.9] * 100 + [0.0, 1.0, 1.0])  # the tiny slice is perfectly wrong
    group = np.array(["big"] * 200 + ["tiny"] * 3, dtype=object)
    report = slice_report(y, p, columns={"g": group}, min_rows=50)
    tiny = report.by_column["g"][1]
    assert tiny.rows == 3 and np.isnan(tiny.metric) and tiny.accuracy == 0.0
    assert report.worst is not None and report.worst.value == "big"


def test_missing_values_are_their_own_slice_and_round_trip() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.2, 0.7, 0.4, 0.6])
    report = slice_report(y, p, columns={"c": np.array(["a", None, "a", None], dtype=object)}, min_rows=1)
    assert [s.value for s in report.by_column["c"]] == ["(missing)", "a"]
    assert SliceReport.from_dict(report.to_dict()).to_dict() == report.to_dict()


def test_bad_inputs_are_named() -> None:
    with pytest.raises(InvalidInputError, match="slice period 'quarter'"):
        slice_report(np.array([0, 1]), np.array([0.1, 0.9]), period="quarter")
    with pytest.raises(InvalidInputError, match="slice column 'c' has 1 values for 2 rows"):
        slice_report(np.array([0, 1]), np.array([0.1, 0.9]), columns={"c": np.array(["a"])})
