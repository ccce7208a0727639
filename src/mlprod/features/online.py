"""Serving features: materialize the latest values into an online store, push updates, look them up.

``materialize`` runs the same point-in-time query as the training frame, for every key of a view at
one time, so an online lookup returns what a training row at that time would have seen. A lookup is
a few key reads (one per view); it never queries a source, a registry or the metadata database.
An unknown key, or a value older than the view's TTL, comes back as nulls with the view named in
``missing``: a serving path decides what to do with it, no exception is raised.
"""

from __future__ import annotations

import time
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


_REMEMBERED_ENTITIES = 8_192  # per FeatureLookup (per served model version): then they start over
_PLAIN_KEYS = (str, int, float, bool)


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
        # per view: (name, features, TTL, what it gives when it has no fresh value)
        self._plan = [
            (name, tuple(names), ttl_us, {n: self._empty[n] for n in names})
            for name, _, names, ttl_us in self._views
        ]
        self._entries: dict[tuple[Any, ...], tuple[tuple[tuple[str, str], ...], tuple[int, ...]]] = {}

    def get(self, keys: Mapping[str, Any], *, at: datetime | None = None) -> FeatureVector:
        """The features of the entity named by ``keys`` (every entity key column -> value)."""
        now_us = time.time_ns() // 1000 if at is None else _microseconds(_aware(at, "at"))
        wanted, where = self._store_entries(keys)
        records = self.store.read_entries_shared(wanted) if wanted else []
        values: dict[str, Any] = {}
        missing = []
        for (view, names, ttl_us, empty), index in zip(self._plan, where, strict=True):
            record = records[index] if index >= 0 else None
            if record is not None and (ttl_us is None or record.event_time_us >= now_us - ttl_us):
                values.update(zip(names, map(record.values.get, names), strict=True))
            else:
                missing.append(view)
                values.update(empty)
        return FeatureVector(values, tuple(missing))

    def _store_entries(self, keys: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], tuple[int, ...]]:
        """The (view, store key) pairs to read for ``keys``, and per view its position in them (-1:
        the entity has a null key there, so that view has no value); remembered per key values."""
        try:  # the types are part of the cache key: True == 1 == 1.0 but they encode differently
            key_values = tuple([keys[column] for column in self.entity_keys])
            types = tuple(map(type, key_values))
            # only plain values that equal themselves: every NaN is a new key, and two datetimes
            # equal across a DST fold encode differently
            plain = all(kind in _PLAIN_KEYS for kind in types) and all(v == v for v in key_values)
            remembered = (key_values, types) if plain else None
            found = self._entries.get(remembered) if remembered is not None else None
        except (KeyError, TypeError):  # a key not given, or an unhashable value: _key says which
            remembered, found = None, None
        if found is not None:
            return found
        wanted: list[tuple[str, str]] = []
        where = []
        for view, key_columns, _, _ in self._views:
            key = self._key(view, key_columns, keys)
            where.append(-1 if key is None else len(wanted))
            if key is not None:
                wanted.append((view, key))
        planned = tuple(wanted), tuple(where)  # tuples: shared by every request for this entity
        if remembered is not None:
            if len(self._entries) >= _REMEMBERED_ENTITIES:
                self._entries.clear()
            self._entries[remembered] = planned
        return planned

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
    # The online store keeps µs: a nanosecond time (from a nanosecond source) is truncated to its µs.
    micros = pc.cast(column, pa.timestamp("us", "UTC"), safe=False)
    return pc.cast(micros, pa.int64()).to_pylist()  # type: ignore[no-any-return]


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND
