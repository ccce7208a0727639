"""Monitoring of served models: references, windows, drift, data quality, performance, alerts, reports."""

from typing import TYPE_CHECKING

from mlprod.lazy import lazy_exports

if TYPE_CHECKING:
    from mlprod.monitor.alerts import (
        Alert,
        AlertRule,
        AlertStore,
        StoredAlert,
        deliver_pending,
        evaluate_rules,
        post_webhook,
    )
    from mlprod.monitor.coverage import BandCoverage, band_coverage
    from mlprod.monitor.drift import DriftThresholds, drift_checks, drifted_columns
    from mlprod.monitor.frames import FrameColumns, FramesRun, monitor_frames
    from mlprod.monitor.frames_report import write_frames_html
    from mlprod.monitor.html_report import render_html, write_html
    from mlprod.monitor.log_import import ImportReport, LogColumns, import_log
    from mlprod.monitor.log_source import LabelSource, logged_rows
    from mlprod.monitor.monitoring import MonitorSettings, monitor_batches
    from mlprod.monitor.multivariate import PcaDetector
    from mlprod.monitor.parallel_profile import reference_from_parquet
    from mlprod.monitor.performance import PerformanceEstimator, ScoreSketch
    from mlprod.monitor.prediction_summary import PredictionSummary, summarize_predictions
    from mlprod.monitor.profile import Profile, ProfileSpec, ReferenceBuilder
    from mlprod.monitor.quality import QualityThresholds, quality_checks
    from mlprod.monitor.reference import Reference, ReferenceStore, build_reference, reference_of_rows
    from mlprod.monitor.results import Check, MonitorResult, PerformancePoint, WindowResult
    from mlprod.monitor.version_monitor import (
        MonitorRun,
        VersionCheck,
        check_version,
        monitor_version,
        profile_version,
        settings_of,
    )
    from mlprod.monitor.windows import Windowing

__all__ = [
    "Alert",
    "AlertRule",
    "AlertStore",
    "BandCoverage",
    "Check",
    "DriftThresholds",
    "FrameColumns",
    "FramesRun",
    "ImportReport",
    "LabelSource",
    "LogColumns",
    "MonitorResult",
    "MonitorRun",
    "MonitorSettings",
    "PcaDetector",
    "PerformanceEstimator",
    "PerformancePoint",
    "PredictionSummary",
    "Profile",
    "ProfileSpec",
    "QualityThresholds",
    "Reference",
    "ReferenceBuilder",
    "ReferenceStore",
    "ScoreSketch",
    "StoredAlert",
    "VersionCheck",
    "WindowResult",
    "Windowing",
    "band_coverage",
    "build_reference",
    "check_version",
    "deliver_pending",
    "drift_checks",
    "drifted_columns",
    "evaluate_rules",
    "import_log",
    "logged_rows",
    "monitor_batches",
    "monitor_frames",
    "monitor_version",
    "post_webhook",
    "profile_version",
    "quality_checks",
    "reference_from_parquet",
    "reference_of_rows",
    "render_html",
    "settings_of",
    "summarize_predictions",
    "write_frames_html",
    "write_html",
]

__getattr__ = lazy_exports(__name__, __file__)
