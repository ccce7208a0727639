"""A brute-force reference for ``mlprod.features.training_frame``: plain loops, no joins, no DuckDB.

Every rule below is a line of the point-in-time semantics of the features contract, applied to one
entity row and one source row at a time, so that it can be read and checked by eye. It is slow
(entity rows x source rows per view) and only meant for the small frames the property tests draw.

The views are described by the small dataclasses of this module (``RefView``, ``RefAggView``) rather
than by ``mlprod.features`` objects, so that the reference does not depend on the implementation it
checks; windows and TTLs are already ``timedelta``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd


class AmbiguousReferenceError(AssertionError):
    """Tied winners (same key, ts and created) carry different values: the contract leaves it open."""


@dataclass(eq=False)
class RefView:
    """A ``FeatureView``: ``features`` maps output name -> source column; ``timestamp`` None = static."""

    name: str
    keys: Sequence[str]
    source: pd.DataFrame
    features: Mapping[str, str]
    timestamp: str | None
    created: str | None = None
    ttl: timedelta | None = None
    created_time_filter: bool = True
    source_keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class RefAgg:
    """One aggregation: ``function`` in count/sum/mean/min/max; ``column`` None counts rows."""

    name: str
    function: str
    column: str | None
    window: timedelta


@dataclass(eq=False)
class RefAggView:
    """An ``AggregationView`` over ``source`` keyed like ``keys`` (entity key names)."""

    name: str
    keys: Sequence[str]
    source: pd.DataFrame
    timestamp: str
    aggregations: Sequence[RefAgg]
    source_keys: Mapping[str, str] = field(default_factory=dict)


def is_null(value: Any) -> bool:
    """None, NaN, NaT and pd.NA are all "null" (pandas' several spellings of a missing value)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    if isinstance(value, Decimal):
        return value.is_nan()
    return isinstance(value, np.datetime64) and bool(np.isnat(value))


def py(value: Any) -> Any:
    """A plain Python value (None for any null, numpy scalars unwrapped)."""
    if is_null(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def utc(value: Any) -> pd.Timestamp | None:
    """A UTC-aware timestamp; naive timestamps are taken as UTC (contract: all-naive inputs are UTC)."""
    if is_null(value):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def is_aware(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.DatetimeTZDtype)


def _source_key_columns(view: RefView | RefAggView) -> list[str]:
    return [view.source_keys.get(key, key) for key in view.keys]


def _keys_match(entity_key: tuple[Any, ...], source_row: Mapping[str, Any], columns: Sequence[str]) -> bool:
    """Key columns equal K; null keys never match (on either side)."""
    for wanted, column in zip(entity_key, columns, strict=True):
        have = py(source_row[column])
        if wanted is None or have is None or wanted != have:
            return False
    return True


def _same(left: Sequence[Any], right: Sequence[Any]) -> bool:
    """Equal value by value, null equal to null."""
    return all(
        (a is None and b is None) or (a is not None and b is not None and a == b)
        for a, b in zip(left, right, strict=True)
    )


def _check_time_kinds(entity_rows: pd.DataFrame, event_time: str, view: RefView | RefAggView) -> None:
    """Naive and tz-aware timestamps may not be mixed between entity rows and a source."""
    if view.timestamp is None:
        return
    if is_aware(entity_rows[event_time]) != is_aware(view.source[view.timestamp]):
        raise ValueError(f"{event_time!r} and {view.name}.{view.timestamp!r} mix naive and tz-aware times")


def feature_view_values(
    view: RefView, key: tuple[Any, ...], t: pd.Timestamp | None, source_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The features of ``view`` for one entity row with key values ``key`` and event time ``t``."""
    nulls: dict[str, Any] = {name: None for name in view.features}
    # No candidate (or null entity key, or null event time) -> every feature of V is null.
    if t is None or any(part is None for part in key):
        return nulls
    assert view.timestamp is not None
    key_columns = _source_key_columns(view)
    candidates: list[tuple[pd.Timestamp, pd.Timestamp, Mapping[str, Any]]] = []
    for row in source_rows:
        # Candidate: key columns equal K (null keys never match) ...
        if not _keys_match(key, row, key_columns):
            continue
        # ... source timestamp not null, ts <= t ...
        ts = utc(row[view.timestamp])
        if ts is None or not ts <= t:
            continue
        # ... and, with a created column and created_time_filter, coalesce(created, ts) <= t.
        created = utc(row[view.created]) if view.created is not None else None
        effective = created if created is not None else ts
        if view.created is not None and view.created_time_filter and not effective <= t:
            continue
        candidates.append((ts, effective, row))
    if not candidates:
        return nulls
    # Winner: greatest ts; ties on ts broken by the greatest coalesce(created, ts).
    best = max((ts, effective) for ts, effective, _ in candidates)
    winners = [row for ts, effective, row in candidates if (ts, effective) == best]
    values = [tuple(py(row[column]) for column in view.features.values()) for row in winners]
    if not all(_same(values[0], other) for other in values[1:]):
        raise AmbiguousReferenceError(f"{view.name}: full tie on key {key}, ts and created: {values}")
    # TTL: a winner with ts < t - ttl is expired (ts == t - ttl is kept); expired -> all features null.
    if view.ttl is not None and best[0] < t - view.ttl:
        return nulls
    # A null feature value in the winning row stays null (no fallback to older rows).
    return dict(zip(view.features, values[0], strict=True))


def static_lookup(view: RefView) -> dict[tuple[Any, ...], Mapping[str, Any]]:
    """Static view: one row per key, a duplicate key is an error; a key with a null part never matches."""
    table: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in view.source.to_dict("records"):
        key = tuple(py(row[column]) for column in _source_key_columns(view))
        if any(part is None for part in key):
            continue
        if key in table:
            raise ValueError(f"{view.name}: duplicate key {key} in a static source")
        table[key] = row
    return table


def aggregate(function: str, column: str | None, rows: Sequence[Mapping[str, Any]]) -> Any:
    """count(None): rows; count(col): non-null values (0 if none); sum/mean/min/max of non-null, else null."""
    if function == "count" and column is None:
        return len(rows)
    assert column is not None, f"{function} needs a column"
    values = [py(row[column]) for row in rows]
    values = [value for value in values if value is not None]
    if function == "count":
        return len(values)
    if not values:
        return None
    if function == "sum":
        return math.fsum(values) if any(isinstance(v, float) for v in values) else sum(values)
    if function == "mean":
        return math.fsum(values) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    raise ValueError(f"unknown aggregation {function!r}")


def aggregation_values(
    view: RefAggView, key: tuple[Any, ...], t: pd.Timestamp | None, source_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Rows with key K and t - window < ts <= t (open on the left, closed on the right), aggregated."""
    key_columns = _source_key_columns(view)
    out: dict[str, Any] = {}
    for agg in view.aggregations:
        in_window: list[Mapping[str, Any]] = []
        if t is not None:
            for row in source_rows:
                if not _keys_match(key, row, key_columns):
                    continue
                ts = utc(row[view.timestamp])
                if ts is not None and t - agg.window < ts <= t:
                    in_window.append(row)
        out[agg.name] = aggregate(agg.function, agg.column, in_window)
    return out


def output_names(view: RefView | RefAggView) -> list[str]:
    if isinstance(view, RefAggView):
        return [agg.name for agg in view.aggregations]
    return list(view.features)


def reference_training_frame(
    entity_rows: pd.DataFrame, views: Sequence[RefView | RefAggView], *, event_time: str = "event_time"
) -> pd.DataFrame:
    """Every entity-row column in input order (timestamps made UTC-aware), then each view's features.

    Rows keep their input order and are never dropped or repeated. Feature columns are ``object``
    columns of plain Python values (None for null); compare through a normaliser.
    """
    names = [name for view in views for name in output_names(view)]
    assert len(names) == len(set(names)), f"duplicate output names {names}"
    assert not set(names) & set(entity_rows.columns), "feature names collide with entity columns"
    out = entity_rows.copy().reset_index(drop=True)
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]) and not is_aware(out[column]):
            out[column] = out[column].dt.tz_localize("UTC")
    records = entity_rows.to_dict("records")
    for view in views:
        _check_time_kinds(entity_rows, event_time, view)
        for column in [*_source_key_columns(view), *([view.timestamp] if view.timestamp else [])]:
            assert column in view.source.columns, f"{view.name}: source lacks {column!r}"
        source_rows = view.source.to_dict("records")
        static = static_lookup(view) if isinstance(view, RefView) and view.timestamp is None else None
        columns: dict[str, list[Any]] = {name: [] for name in output_names(view)}
        for record in records:
            key = tuple(py(record[column]) for column in view.keys)
            t = utc(record[event_time])
            if isinstance(view, RefAggView):
                values = aggregation_values(view, key, t, source_rows)
            elif static is not None:
                # Static view: plain left join on the key (the event time plays no part).
                row = static.get(key)
                values = {
                    name: (py(row[column]) if row is not None else None)
                    for name, column in view.features.items()
                }
            else:
                values = feature_view_values(view, key, t, source_rows)
            for name, value in values.items():
                columns[name].append(value)
        for name, values_ in columns.items():
            out[name] = pd.Series(values_, dtype=object, index=out.index)
    return out
