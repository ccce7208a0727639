"""Serving features: materialize the latest values into an online store, push updates, look them up.

``materialize`` runs the same point-in-time query as the training frame, for every key of a view at
one time, so an online lookup returns what a training row at that time would have seen. A lookup is
a few key reads (one per view); it never queries a source, a registry or the metadata database.
An unknown key, or a value older than the view's TTL, comes back as nulls with the view named in
``missing``: a serving path decides what to do with it, no exception is raised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError
from mlprod.features.definitions import (
    AggregationView,
    FeatureRef,
    FeatureSet,
    FeatureView,
    View,
    select_features,
)
from mlprod.features.offline import CREATED, TIME, values_with_times
from mlprod.features.online_store import OnlineRecord, OnlineStore, encode_keys
from mlprod.features.sources import connect, derive_columns, quote, register_rows
from mlprod.workspace import Workspace

Features = FeatureSet | Sequence[View | FeatureRef]
AT = "materialized_at"


@dataclass(frozen=True)
class FeatureVector:
    """One entity's online features: name -> value, and the views that had no value for it (their
    features are None, or 0 for a count, as the offline join gives)."""

    values: dict[str, Any]
    missing: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return not self.missing


def materialize(
    store: OnlineStore,
    features: Features,
    *,
    at: datetime | None = None,
    workspace: Workspace | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Write every key's values as of ``at`` (default: now) into ``store``; return keys written per view.

    A key's stored value only moves forward: a value pushed since with a later time is kept.
    """
    moment = _aware(at or datetime.now(UTC), "at")
    written = {}
    for view, _ in _views(features).values():
        keys = _source_keys(view, workspace)
        entity_rows = keys.append_column(
            AT, pa.array([moment] * keys.num_rows, type=pa.timestamp("us", "UTC"))
        )
        table = values_with_times(entity_rows, view, event_time=AT, workspace=workspace)
        records = _records(table, view)
        written[view.name] = store.write(view.name, records, only_newer=isinstance(view, FeatureView))
        if progress is not None:
            progress(view.name, len(records))
    return written


def push(store: OnlineStore, view: FeatureView, rows: pa.Table | pd.DataFrame) -> int:
    """Stream source rows of ``view`` (its key, time and feature columns) into ``store``.

    A row replaces a key's value only when its (feature time, created time) is later; returns how many did.
    """
    if isinstance(view, AggregationView):
        raise InvalidInputError(
            f"{view.name!r} is an aggregation view: push its source rows to its table and materialize it"
        )
    frame = rows.to_pandas() if isinstance(rows, pa.Table) else rows
    frame = frame.dropna(subset=[c for c in view.key_columns.values() if c in frame.columns])  # no entity
    needed = [*view.key_columns.values(), *view.feature_columns.values()]
    needed += [c for c in (view.timestamp, view.created) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"rows pushed to view {view.name!r} lack column(s) {missing}")
    now_us = _microseconds(datetime.now(UTC))
    times = _column_us(frame, view.timestamp, view.name) if view.timestamp else [now_us] * len(frame)
    created = _column_us(frame, view.created, view.name) if view.created else times
    keys = encode_keys([frame[column].tolist() for column in view.key_columns.values()])
    features = frame[list(view.feature_columns.values())]
    features.columns = list(view.feature_columns)
    records = [
        OnlineRecord(key, time, made if made is not None else time, values)
        for key, time, made, values in zip(keys, times, created, features.to_dict("records"), strict=True)
        if time is not None
    ]
    return store.write(view.name, records, only_newer=view.timestamp is not None)


class FeatureLookup:
    """Reads a feature list for one entity at a time from an online store, with TTLs applied."""

    def __init__(self, store: OnlineStore, features: Features) -> None:
        self.store = store
        selection = _views(features).values()
        self._views = [(view.name, view.entity.keys, names, _ttl_us(view)) for view, names in selection]
        # Without a value, a count is 0 (no rows in its window), as in the offline join; the rest null.
        self._empty = {name: _empty_value(view, name) for view, names in selection for name in names}
        self.feature_names = list(self._empty)
        self.entity_keys = list(dict.fromkeys(key for _, keys, _, _ in self._views for key in keys))

    def get(self, keys: Mapping[str, Any], *, at: datetime | None = None) -> FeatureVector:
        """The features of the entity named by ``keys`` (every entity key column -> value)."""
        now_us = _microseconds(_aware(at, "at") if at is not None else datetime.now(UTC))
        store_keys = [self._key(view, key_columns, keys) for view, key_columns, _, _ in self._views]
        wanted = [
            (view[0], key) for view, key in zip(self._views, store_keys, strict=True) if key is not None
        ]
        found = dict(zip(wanted, self.store.read_entries(wanted), strict=True))
        values: dict[str, Any] = {}
        missing = []
        for (view, _, names, ttl_us), key in zip(self._views, store_keys, strict=True):
            record = None if key is None else found[(view, key)]
            fresh = record is not None and (ttl_us is None or record.event_time_us >= now_us - ttl_us)
            if not fresh:
                missing.append(view)
            for name in names:
                values[name] = record.values.get(name) if fresh and record is not None else self._empty[name]
        return FeatureVector(values, tuple(missing))

    @staticmethod
    def _key(view: str, key_columns: Sequence[str], keys: Mapping[str, Any]) -> str | None:
        """The store key of the entity in ``view``; None when a key value is null (no entity)."""
        try:
            key_values = [keys[column] for column in key_columns]
        except KeyError as exc:
            raise InvalidInputError(
                f"lookup of view {view!r} needs key {exc.args[0]!r}; it was given {sorted(keys)}"
            ) from None
        if any(v is None or v != v for v in key_values):  # v != v: NaN
            return None
        try:  # the types are part of the cache key: True == 1 == 1.0 but they encode differently
            return _store_key(tuple(key_values), tuple(map(type, key_values)))
        except TypeError:  # an unhashable value: encode_keys names the problem
            return encode_keys([[v] for v in key_values])[0]


@functools.lru_cache(maxsize=65_536)
def _store_key(key_values: tuple[Any, ...], _types: tuple[type, ...]) -> str:
    """``encode_keys`` of one entity, remembered: serving looks up the same entities over and over."""
    return encode_keys([[v] for v in key_values])[0]


def online_features(
    store: OnlineStore, features: Features, keys: Mapping[str, Any], *, at: datetime | None = None
) -> FeatureVector:
    """One lookup (build a ``FeatureLookup`` once to serve many)."""
    return FeatureLookup(store, features).get(keys, at=at)


def _views(features: Features) -> dict[str, tuple[View, list[str]]]:
    return select_features(features.features if isinstance(features, FeatureSet) else features)


def _source_keys(view: View, workspace: Workspace | None) -> pa.Table:
    """Every distinct non-null key of the view's source, under the entity's key names."""
    conn = connect()
    try:
        source = register_rows(conn, view.source, "source", f"source of view {view.name!r}", workspace)
        source = derive_columns(conn, source, view.derived_columns)
        source.require(view.key_columns.values(), "key")
        columns = ", ".join(f"{quote(c)} AS {quote(k)}" for k, c in view.key_columns.items())
        not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in view.key_columns.values())
        return conn.sql(
            f"SELECT DISTINCT {columns} FROM {quote(source.relation)} WHERE {not_null}"
        ).to_arrow_table()
    finally:
        conn.close()


def _records(table: pa.Table, view: View) -> list[OnlineRecord]:
    times = _us_list(table.column(f"{TIME}0"))
    created = _us_list(table.column(f"{CREATED}0"))
    keys = encode_keys([table.column(k).to_pylist() for k in view.entity.keys])
    values = table.select(view.feature_names).to_pylist()
    return [
        OnlineRecord(key, time, made if made is not None else time, row)
        for key, time, made, row in zip(keys, times, created, values, strict=True)
        if time is not None
    ]


def _us_list(column: pa.ChunkedArray) -> list[int | None]:
    return pc.cast(column.cast(pa.timestamp("us", "UTC")), pa.int64()).to_pylist()  # type: ignore[no-any-return]


def _column_us(frame: pd.DataFrame, column: str, view: str) -> list[int | None]:
    times = frame[column]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise InvalidInputError(
            f"column {column!r} pushed to view {view!r} must hold time-zone-aware times, not {times.dtype}"
        )
    as_us = times.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return [None if pd.isna(t) else int(t.value // 1000) for t in as_us]


def _empty_value(view: View, name: str) -> int | None:
    if isinstance(view, AggregationView):
        function = next(a.function for a in view.aggregations if a.output == name)
        return 0 if function == "count" else None
    return None


def _ttl_us(view: View) -> int | None:
    if isinstance(view, FeatureView) and view.ttl_delta is not None:
        return view.ttl_delta // timedelta(microseconds=1)
    return None


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise InvalidInputError(f"{what} {moment.isoformat()} has no time zone; give an aware time (UTC)")
    return moment.astimezone(UTC)


def _microseconds(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
