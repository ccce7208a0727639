"""Monitoring a model mlprod does not run: reference and analysis data that carry the model's outputs.

The data is what an Evidently or NannyML user has: a reference (data the model is known to do well
on, with labels) and analysis data (what it met in production), each with feature columns, the
model's score (probability of class 1) and/or predicted class (0/1), the label where known (null
until it arrives) and, for calendar windows, a timestamp. No registered model and no prediction log
are needed. ``monitor_frames`` checks the columns and types before reading a row, then streams both
through the machinery ``monitor_version`` uses (``reference_of_rows``, ``monitor_batches``), so the
result is the same ``MonitorRun``: windows with drift, data quality, the multivariate detector,
realized and estimated performance, and the alerts the rules raise. ``write_html`` renders it.

Conventions: a row is predicted positive when its score is >= 0.5 (given both, the predicted class
must agree). The analysis data is taken as complete: calendar windows at its edges are whole, only a
last ``rows:N`` window short of N rows is partial. Rows are windowed in file order; times are UTC
(naive timestamps are read as UTC).

Examples:
    >>> import numpy as np, pyarrow as pa
    >>> rng = np.random.default_rng(0)
    >>> def frame(shift):
    ...     x = rng.normal(shift, 1, 600)
    ...     y = (rng.uniform(size=600) < 0.5).astype(int)
    ...     return pa.table({"x": x, "p": 1 / (1 + np.exp(-x)), "y": y})
    >>> run = monitor_frames(frame(0), frame(2), FrameColumns(score="p", label="y"), window="chunks:2")
    >>> [w.rows for w in run.result.windows], run.features
    ([300, 300], ('x',))
    >>> any(c.column == "x" and c.alert for c in run.result.windows[0].checks)
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlprod.errors import MonitorColumnError, MonitorDataError, WindowSpecError
from mlprod.evaluate.fairness import FairnessReport
from mlprod.monitor.alerts import AlertRule, evaluate_rules
from mlprod.monitor.monitoring import MonitorSettings, monitor_batches
from mlprod.monitor.profile import ProfileSpec
from mlprod.monitor.reference import LABEL, PREDICTION, Reference, reference_of_rows
from mlprod.monitor.sources import Source, batches, open_source
from mlprod.monitor.version_monitor import MonitorRun, rules_of
from mlprod.monitor.window_fairness import WindowFairness
from mlprod.monitor.windows import TIME, Windowing
from mlprod.suggest import did_you_mean

THRESHOLD = 0.5
_END = datetime(9999, 1, 1, tzinfo=UTC)
_RESERVED = (PREDICTION, LABEL, TIME)


@dataclass(frozen=True)
class FrameColumns:
    """Which column plays which part; name at least ``score`` or ``prediction``.

    ``features`` None: every column of the reference that no other part names, that ``ignore``
    does not list (ids, free text) and that a sketch can count (numbers, booleans, text).
    ``groups``: columns (features or not) to measure group fairness by, per window.
    """

    score: str | None = None
    prediction: str | None = None
    label: str | None = None
    timestamp: str | None = None
    features: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "groups", tuple(self.groups))
        if self.groups and not self.label:
            raise MonitorColumnError(
                "monitor: fairness per group compares decisions with labels; name the label column too"
            )
        if not self.score and not self.prediction:
            raise MonitorColumnError(
                "monitor: name the model's output: a score column (probability of class 1, e.g. "
                "--score proba) or a predicted class column (0/1, e.g. --prediction predicted)"
            )
        named = [n for n in (self.score, self.prediction, self.label, self.timestamp) if n]
        twice = sorted({n for n in named if named.count(n) > 1})
        if twice:
            raise MonitorColumnError(f"monitor: column {twice[0]!r} is named for two parts; name each once")
        if self.features is not None:
            clash = sorted(set(self.features) & set(named))
            if clash:
                raise MonitorColumnError(
                    f"monitor: column {clash[0]!r} is both a feature and the model's score, prediction, "
                    "label or timestamp; leave it out of the features"
                )

    def roles(self) -> dict[str, str]:
        """The named parts: ``{"score": column, ...}``."""
        parts = {"score": self.score, "prediction": self.prediction, "label": self.label}
        return {role: name for role, name in {**parts, "timestamp": self.timestamp}.items() if name}


@dataclass(frozen=True)
class FramesRun(MonitorRun):
    """A ``MonitorRun`` of reference and analysis data, with the reference built and the features used."""

    reference: Reference
    features: tuple[str, ...]
    skipped: tuple[str, ...]  # columns left out of the default features: types no sketch counts
    fairness: dict[str, list[FairnessReport | None]]  # per group column, per window (None: see notes)
    fairness_notes: dict[tuple[str, int], str]  # (column, window index): why a window has no report


def monitor_frames(
    reference: Source,
    analysis: Source,
    columns: FrameColumns,
    *,
    window: str | Windowing | None = None,
    settings: MonitorSettings | None = None,
    rules: tuple[AlertRule, ...] | None = None,
    model: str = "model",
) -> FramesRun:
    """Monitor ``analysis`` against ``reference`` (each a Parquet/CSV/JSON-lines path, glob or list of
    them, a directory, a ``pyarrow.Table`` or a ``pandas.DataFrame``), window by window.

    ``window`` (default: ``settings.windowing``, a week) is a ``Windowing`` spec: ``day``, ``month``,
    ``1000`` rows, ``chunks:10``, ``by:batch_id`` … Reads each source once (and the windowing column
    or the row count first, for ``by:`` and ``chunks:``); writes nothing.
    """
    settings = settings or MonitorSettings()
    if window is not None:
        settings = replace(settings, windowing=Windowing.parse(window) if isinstance(window, str) else window)
    ref_data, analysis_data = open_source(reference, "reference"), open_source(analysis, "analysis")
    plan = _plan(ref_data.schema, analysis_data.schema, columns, settings.windowing)
    for data, what in ((ref_data, "reference"), (analysis_data, "analysis")):
        if data.count_rows() == 0:
            raise MonitorDataError(f"{what}: the data has no rows; give a file with at least one row")
    windowing = _resolved(settings.windowing, analysis_data)
    built = reference_of_rows(plan.rows(ref_data, "reference"), plan.spec, options=settings.reference)
    fairness = WindowFairness(columns.groups, windowing, threshold=THRESHOLD)
    result = monitor_batches(
        _watched(plan.rows(analysis_data, "analysis"), fairness), built, model=model, version=0,
        settings=replace(settings, windowing=windowing), until=_END,
    )  # fmt: skip
    rules = rules if rules is not None else rules_of(settings)
    alerts = evaluate_rules(result, rules)
    reports = fairness.reports() if columns.groups else {}
    skipped = plan.skipped
    return FramesRun(result, rules, alerts, built, plan.spec.features, skipped, reports, fairness.notes)


def _watched(rows: Iterator[pa.Table], fairness: WindowFairness) -> Iterator[pa.Table]:
    """``rows``, shown to ``fairness`` (when it watches group columns) on their way to the windows."""
    seen = 0
    for table in rows:
        if fairness.columns:
            fairness.update(table, seen)
        seen += table.num_rows
        yield table


def _resolved(windowing: Windowing, analysis: ds.Dataset) -> Windowing:
    """The windowing with what it needs from the data first: the row count, the column's values."""
    if windowing.by == "chunks":
        return windowing.resolved(total=analysis.count_rows())
    if windowing.by == "column":
        return windowing.resolved(
            values=analysis.to_table(columns=[windowing.column]).column(windowing.column)
        )
    return windowing


@dataclass(frozen=True)
class _Plan:
    """What to read from each data set and how to turn it into monitoring's rows."""

    spec: ProfileSpec
    columns: FrameColumns
    window_column: str | None
    calendar: bool
    skipped: tuple[str, ...]

    def rows(self, data: ds.Dataset, what: str) -> Iterator[pa.Table]:
        """Batches of the features, ``prediction`` (the score), ``label``, ``time``, the windowing column."""
        present = set(data.schema.names)
        c = self.columns
        roles = [n for n in (c.score, c.prediction, c.label, c.timestamp) if n and n in present]
        wanted = (self.window_column, *(c.groups if what == "analysis" else ()))
        extra = list(dict.fromkeys(n for n in wanted if n and n in present and n not in self.spec.features))
        read = list(dict.fromkeys([*self.spec.features, *roles, *extra]))
        scored = 0
        for batch in batches(data, read, what):
            table: dict[str, Any] = {name: batch.column(name) for name in self.spec.features}
            scores = _outputs(batch, c, what)
            scored += int(np.count_nonzero(~np.isnan(scores)))
            table[PREDICTION] = pa.array(scores)
            if self.spec.label is not None:
                table[LABEL] = (
                    pa.array(_zero_one(batch, c.label, what, "label"))
                    if c.label in present
                    else pa.nulls(batch.num_rows, pa.float64())
                )
            if c.timestamp and c.timestamp in present and what == "analysis":
                table[TIME] = _times(batch, c.timestamp, what, required=self.calendar)
            for name in extra:
                table[name] = batch.column(name)
            yield pa.table(table)
        if scored == 0:
            role = "score" if c.score else "prediction"
            raise MonitorColumnError(
                f"{what}: column {c.score or c.prediction!r} (the model's {role}) has no value in any "
                "row; give the model's outputs for at least some rows"
            )


def _plan(reference: pa.Schema, analysis: pa.Schema, columns: FrameColumns, windowing: Windowing) -> _Plan:
    """Check every named column against both schemas (before any row is read) and decide the features."""
    for role, name in columns.roles().items():
        wanted = {"score": ("reference", "analysis"), "prediction": ("reference", "analysis"),
                  "label": ("reference",), "timestamp": ("analysis",)}[role]  # fmt: skip
        for what, schema in (("reference", reference), ("analysis", analysis)):
            if name in schema.names:
                _check_type(schema.field(name).type, name, role, what)
            elif what in wanted:
                raise MonitorColumnError(
                    f"{what}: no {role} column {name!r}{did_you_mean(name, schema.names)}; "
                    f"columns: {', '.join(schema.names)}"
                )
    if windowing.calendar and not columns.timestamp:
        raise WindowSpecError(
            f"window {windowing.by}: calendar windows need each row's time; name the timestamp column "
            "(--timestamp COL), or window by rows (rows:N), chunks (chunks:N) or a column (by:COL)"
        )
    window_column = windowing.column if windowing.by == "column" else None
    if window_column is not None and window_column not in analysis.names:
        raise WindowSpecError(
            f"window by:{window_column}: the analysis data has no column {window_column!r}"
            f"{did_you_mean(window_column, analysis.names)}; columns: {', '.join(analysis.names)}"
        )
    for name in columns.groups:
        if name not in analysis.names:
            raise MonitorColumnError(
                f"analysis: no group column {name!r}{did_you_mean(name, analysis.names)}; "
                f"columns: {', '.join(analysis.names)}"
            )
        if name in columns.roles().values() or name in _RESERVED:
            raise MonitorColumnError(
                f"group column {name!r} is the score, prediction, label or timestamp (or named like "
                "one); group by a column that holds groups"
            )
    for name in columns.ignore:
        if name not in reference.names and name not in analysis.names:
            raise MonitorColumnError(
                f"ignore: no column {name!r} in the reference or analysis data"
                f"{did_you_mean(name, [*reference.names, *analysis.names])}"
            )
    features, skipped = _features(reference, columns, window_column)
    kinds = {name: _kind(reference.field(name).type) for name in features}
    _compare(features, kinds, reference, analysis, columns, window_column)
    spec = ProfileSpec(
        numeric=tuple(n for n in features if kinds[n] == "numeric"),
        categorical=tuple(n for n in features if kinds[n] == "categorical"),
        prediction=PREDICTION,
        label=LABEL if columns.label else None,
    )
    return _Plan(spec, columns, window_column, windowing.calendar, skipped)


def _features(
    reference: pa.Schema, columns: FrameColumns, window_column: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The feature columns (named, or every other reference column that a sketch counts) and those skipped."""
    if columns.features is not None:
        if not columns.features:
            raise MonitorColumnError(
                "features: the list is empty; name at least one, or leave it out for all"
            )
        for name in columns.features:
            if name not in reference.names:
                raise MonitorColumnError(
                    f"reference: no feature column {name!r}{did_you_mean(name, reference.names)}; "
                    f"columns: {', '.join(reference.names)}"
                )
            if _kind(reference.field(name).type) is None:
                raise MonitorColumnError(
                    f"reference: feature column {name!r} is {reference.field(name).type}; features must be "
                    "numbers, booleans or text (cast it, or leave it out of the features)"
                )
        chosen = columns.features
        skipped: tuple[str, ...] = ()
    else:
        taken = {*columns.roles().values(), *columns.ignore, *([window_column] if window_column else [])}
        others = [n for n in reference.names if n not in taken]
        chosen = tuple(n for n in others if _kind(reference.field(n).type) is not None)
        skipped = tuple(n for n in others if n not in chosen)
        if not chosen:
            raise MonitorColumnError(
                "reference: no feature column left: every column is the score, prediction, label, "
                "timestamp or ignored, or of a type no sketch counts (dates, lists); name --features"
            )
    reserved = [n for n in chosen if n in _RESERVED]
    if reserved:
        raise MonitorColumnError(
            f"feature column {reserved[0]!r} has a name monitoring keeps for its own {reserved[0]} column; "
            "rename it in the data, or leave it out (--ignore)"
        )
    return chosen, skipped


def _compare(
    features: tuple[str, ...],
    kinds: Mapping[str, str | None],
    reference: pa.Schema,
    analysis: pa.Schema,
    columns: FrameColumns,
    window_column: str | None,
) -> None:
    """Reference and analysis must have the same features, of the same kinds."""
    missing = [n for n in features if n not in analysis.names]
    taken = {
        *columns.roles().values(),
        *columns.ignore,
        *columns.groups,
        *([window_column] if window_column else []),
    }
    extra = [n for n in analysis.names if n not in reference.names and n not in taken]
    extra = extra if columns.features is None else []
    if missing or extra:
        parts = [f"missing from the analysis: {', '.join(missing)}"] if missing else []
        parts += [f"only in the analysis: {', '.join(extra)}"] if extra else []
        raise MonitorDataError(
            f"reference and analysis have different feature columns ({'; '.join(parts)}); give both the "
            "same features, name the ones to compare (--features), or leave columns out (--ignore)"
        )
    for name in features:
        kind = _kind(analysis.field(name).type)
        if kind is not None and kind != kinds[name] and not pa.types.is_null(analysis.field(name).type):
            raise MonitorColumnError(
                f"feature column {name!r} is {kinds[name]} in the reference but {kind} in the analysis "
                f"({analysis.field(name).type}); give it the same type in both"
            )


def _kind(value_type: pa.DataType) -> str | None:
    """How a column of this type is profiled: "numeric", "categorical", or None (not at all)."""
    if pa.types.is_dictionary(value_type):
        value_type = value_type.value_type
    if pa.types.is_integer(value_type) or pa.types.is_floating(value_type) or pa.types.is_decimal(value_type):
        return "numeric"
    if pa.types.is_boolean(value_type):
        return "numeric"
    if (
        pa.types.is_string(value_type)
        or pa.types.is_large_string(value_type)
        or pa.types.is_string_view(value_type)
    ):
        return "categorical"
    return None


def _type_name(value_type: pa.DataType) -> str:
    """A type as users know it: text for every kind of Arrow string, else Arrow's name."""
    return "text" if _kind(value_type) == "categorical" else str(value_type)


def _check_type(value_type: pa.DataType, name: str, role: str, what: str) -> None:
    if pa.types.is_null(value_type):
        if role in ("score", "prediction"):
            raise MonitorColumnError(
                f"{what}: {role} column {name!r} has no value in any row; give the model's outputs"
            )
        return
    if role == "timestamp":
        if not (
            pa.types.is_timestamp(value_type)
            or pa.types.is_date(value_type)
            or _kind(value_type) == "categorical"
        ):
            raise MonitorColumnError(
                f"{what}: timestamp column {name!r} is {_type_name(value_type)}; give timestamps, dates or "
                "ISO-8601 text (numbers are ambiguous: seconds or milliseconds?)"
            )
        return
    if _kind(value_type) != "numeric":
        expected = "a probability of class 1 in [0, 1]" if role == "score" else "0/1 or booleans"
        raise MonitorColumnError(
            f"{what}: {role} column {name!r} is {_type_name(value_type)}; it must hold {expected}"
            + ("" if role == "score" else " (map the positive class to 1)")
        )


def _floats(batch: pa.Table, name: str) -> np.ndarray:
    return np.asarray(
        pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )


def _outputs(batch: pa.Table, columns: FrameColumns, what: str) -> np.ndarray:
    """The rows' scores (NaN where missing): the score column, else the predicted class as 0.0/1.0."""
    predicted = _zero_one(batch, columns.prediction, what, "prediction") if columns.prediction else None
    if not columns.score:
        assert predicted is not None  # FrameColumns needs one of the two
        return predicted
    scores = _floats(batch, columns.score)
    outside = ~np.isnan(scores) & ~((scores >= 0) & (scores <= 1))
    if outside.any():
        raise MonitorColumnError(
            f"{what}: score column {columns.score!r} has {int(outside.sum()):,} value(s) outside [0, 1], "
            f"e.g. {scores[outside][0]:g}; give the probability of class 1 (predict_proba(X)[:, 1]; a "
            "margin or logit needs a sigmoid first)"
        )
    if predicted is not None:
        both = ~np.isnan(scores) & ~np.isnan(predicted)
        disagree = both & ((scores >= THRESHOLD) != (predicted == 1))
        if disagree.any():
            raise MonitorColumnError(
                f"{what}: prediction column {columns.prediction!r} disagrees with score >= {THRESHOLD} in "
                f"{int(disagree.sum()):,} row(s); monitoring reads a score >= {THRESHOLD} as class 1: give "
                "only the score, or only the predicted class"
            )
    return scores


def _zero_one(batch: pa.Table, name: str | None, what: str, role: str) -> np.ndarray:
    """A 0/1 column as floats, NaN where null; anything else is refused."""
    assert name is not None
    values = _floats(batch, name)
    bad = ~np.isnan(values) & (values != 0) & (values != 1)
    if bad.any():
        sample = sorted({float(v) for v in values[bad][:50]})[:3]
        null = " (null: not known yet)" if role == "label" else ""
        raise MonitorColumnError(
            f"{what}: {role} column {name!r} must hold 0/1 or booleans{null}, got e.g. "
            f"{', '.join(f'{v:g}' for v in sample)} in {int(bad.sum()):,} row(s); map the positive class to 1"
        )
    return values


def _times(batch: pa.Table, name: str, what: str, *, required: bool) -> pa.ChunkedArray:
    """The timestamp column as UTC microseconds; nulls refused when calendar windows need every time."""
    column = batch.column(name)
    try:
        times = pc.cast(column, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MonitorColumnError(
            f"{what}: timestamp column {name!r} does not read as times ({exc}); give ISO-8601 text "
            "such as 2024-05-01T12:00:00Z, dates or timestamps"
        ) from exc
    nulls = times.null_count
    if required and nulls:
        raise MonitorColumnError(
            f"{what}: timestamp column {name!r} has {nulls:,} null(s); calendar windows need each row's "
            "time: fill or drop those rows, or window by rows (rows:N) or chunks (chunks:N)"
        )
    return times
