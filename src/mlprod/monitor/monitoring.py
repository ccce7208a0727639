"""Monitoring a model version: windows of its served predictions against its reference.

Each window accumulates mergeable state only — a column profile, a score histogram split by label,
a reconstruction-error sum, and for density-ratio estimation a bounded feature sample — so a window
fed batch by batch ends up exactly where one fed all at once does, and the stream can be any size.
Each finished window is then checked: drift and data quality per column, the multivariate detector,
and performance (realized where labels have arrived, estimated without them). A window the rows read
do not cover from end to end (the week still going on, a month cut by ``--until``) is marked partial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from mlprod.config import MonitorSection
from mlprod.monitor.drift import DriftThresholds, drift_checks
from mlprod.monitor.multivariate import ReconstructionWindow
from mlprod.monitor.performance import ScoreSketch, realized_points
from mlprod.monitor.profile import Profile
from mlprod.monitor.quality import QualityThresholds, quality_checks
from mlprod.monitor.reference import (
    LABEL,
    Reference,
    ReferenceOptions,
    numeric_matrix,
    update_scores,
)
from mlprod.monitor.results import MonitorResult, WindowResult
from mlprod.monitor.windows import TIME, Windowing, split

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class MonitorSettings:
    """Windows, thresholds and how references are built; ``from_config`` reads ``[monitor]``."""

    windowing: Windowing = field(default_factory=lambda: Windowing("week"))
    drift: DriftThresholds = field(default_factory=DriftThresholds)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    reference: ReferenceOptions = field(default_factory=ReferenceOptions)
    accuracy_drop: float = 0.05
    webhook_url: str = ""
    importance: Mapping[str, float] | None = None  # feature -> weight in the window's drift share

    @classmethod
    def from_config(cls, section: MonitorSection) -> MonitorSettings:
        return cls(
            windowing=Windowing.parse(section.window),
            drift=DriftThresholds(
                psi=section.psi, ks=section.ks, wasserstein=section.wasserstein,
                chi2_p_value=section.chi2_p_value, jensen_shannon=section.jensen_shannon,
                alpha=section.drift_alpha, drift_share=section.drift_share,
            ),
            quality=QualityThresholds(
                missing_rate_increase=section.missing_rate_increase,
                out_of_range_rate=section.out_of_range_rate, unseen_rate=section.unseen_rate,
            ),
            reference=ReferenceOptions(
                bins=section.bins, max_categories=section.max_categories,
                sample_rows=section.reference_sample_rows,
            ),
            accuracy_drop=section.accuracy_drop,
            webhook_url=section.webhook_url,
        )  # fmt: skip


@dataclass
class WindowState:
    """What one window has accumulated so far; every part merges."""

    profile: Profile
    scores: ScoreSketch
    reconstruction: ReconstructionWindow | None
    first: datetime | None = None
    last: datetime | None = None
    rows: int = 0

    @classmethod
    def empty(cls, reference: Reference) -> WindowState:
        return cls(
            reference.profile.window(),
            reference.estimator.window() if reference.estimator else ScoreSketch(),
            reference.multivariate.window() if reference.multivariate else None,
        )

    def update(self, rows: pa.Table, reference: Reference) -> None:
        self.profile.update(rows)
        update_scores(self.scores, rows)
        if self.reconstruction is not None and reference.multivariate is not None:
            self.reconstruction.update(numeric_matrix(rows, reference.multivariate.columns))
        if TIME in rows.column_names:  # rows without times (row, chunk or value windows) have no span
            times = rows.column(TIME)
            first, last = pc.min(times).as_py(), pc.max(times).as_py()
            if first is not None:
                self.first = first if self.first is None else min(self.first, first)
                self.last = last if self.last is None else max(self.last, last)
        self.rows += rows.num_rows


def monitor_batches(
    batches: Iterable[pa.Table],
    reference: Reference,
    *,
    model: str,
    version: int,
    settings: MonitorSettings | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> MonitorResult:
    """Window ``batches`` (time, features, prediction, label; in time order) and check every window.

    The time column may be left out for windows that are not calendar spans (rows, chunks, values of
    a column, which the batches then carry); ``settings.windowing`` must be ``resolved`` for those
    that need the data first (chunks, values).

    The batches hold every row from ``since`` (default: the beginning) to ``until`` (exclusive;
    default: just after their last row, so the newest window is whole only once a later row came):
    a calendar window reaching outside that range is partial.
    """
    settings = settings or MonitorSettings()
    windowing = settings.windowing
    states: dict[int, WindowState] = {}
    seen = 0
    for batch in batches:
        if LABEL not in batch.column_names:
            batch = batch.append_column(LABEL, pa.nulls(batch.num_rows, pa.float64()))
        keys = windowing.keys_of(batch, seen)
        for key, rows in split(batch, keys):
            if key not in states:
                states[key] = WindowState.empty(reference)
            states[key].update(rows, reference)
        seen += batch.num_rows
        if progress:
            progress(batch.num_rows)
    if until is None:
        last = [s.last for s in states.values() if s.last is not None]
        until = max(last) + timedelta(microseconds=1) if last else None
    windows = [_checked(key, states[key], reference, settings, since, until) for key in sorted(states)]
    return MonitorResult(model, version, windowing.description, windows)


def _checked(
    key: int,
    state: WindowState,
    reference: Reference,
    settings: MonitorSettings,
    since: datetime | None,
    until: datetime | None,
) -> WindowResult:
    span = settings.windowing.span(key)
    if span is not None:
        start, end = span
    elif state.first is not None and state.last is not None:
        start, end = state.first, state.last + _TICK
    else:  # rows without times: a placeholder span per window keeps the windows (and their alerts) apart
        start = _EPOCH + timedelta(microseconds=key)
        end = start + _TICK
    expected = settings.windowing.expected_rows(key)
    if expected is not None:
        partial = state.rows < expected
    elif span is None:  # one window per value of a column: whole by definition
        partial = False
    else:
        partial = (since is not None and start < since) or (until is not None and end > until)
    checks = drift_checks(reference.profile, state.profile, settings.drift, importance=settings.importance)
    checks += quality_checks(reference.profile, state.profile, settings.quality)
    if reference.multivariate is not None and state.reconstruction is not None:
        checks.append(reference.multivariate.check(state.reconstruction))
    if reference.estimator is not None:
        performance = reference.estimator.evaluate(state.scores)
    else:  # no labelled reference: nothing to estimate with, but labels that came can still be counted
        performance = realized_points(state.scores)
    name = settings.windowing.name(key)
    return WindowResult(start, end, state.rows, checks, performance, partial=partial, name=name)
