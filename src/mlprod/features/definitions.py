"""Feature definitions in Python: entities, feature views, windowed aggregations, feature sets.

A definition is plain data. Its canonical JSON form is hashed, so a feature set's version is the hash
of exactly what it computes (sources, columns, times, TTLs, windows), and a training run records it.

Examples:
    >>> flight = Entity("flight_route", ["origin", "dest"])
    >>> late = AggregationView(
    ...     "route_late", flight, "flights.parquet", timestamp="arrived_at",
    ...     aggregations=[Aggregation("mean", "late", "7d"), Aggregation("count", None, "7d")],
    ... )
    >>> late.feature_names
    ['late_mean_7d', 'rows_count_7d']
    >>> delays = FeatureSet("delays", [late["late_mean_7d"]])
    >>> delays.feature_names, len(delays.version)
    (['late_mean_7d'], 64)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from mlprod.errors import InvalidInputError
from mlprod.features.durations import format_duration, parse_duration
from mlprod.lazy import lazy_module
from mlprod.names import check_name

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")

AggregateFunction = Literal["count", "sum", "mean", "min", "max"]
AGGREGATE_FUNCTIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max")


@dataclass(frozen=True)
class TableSource:
    """Rows of a versioned table (``mlprod.data``) at a branch, tag or commit."""

    table: str
    ref: str = "main"

    def describe(self) -> str:
        return f"table {self.table}@{self.ref}"


Source: TypeAlias = "str | Path | TableSource | pa.Table | pd.DataFrame"


@dataclass(frozen=True)
class Entity:
    """What features are about, named by the key columns of the entity rows (``["origin"]``)."""

    name: str
    keys: Sequence[str]

    def __post_init__(self) -> None:
        check_name(self.name, "entity")
        keys = tuple(self.keys) if not isinstance(self.keys, str) else (self.keys,)
        if not keys:
            raise InvalidInputError(f"entity {self.name!r} needs at least one key column")
        object.__setattr__(self, "keys", keys)


@dataclass(frozen=True, eq=False)
class _View:
    name: str
    entity: Entity
    source: Source
    source_keys: Mapping[str, str] | None
    derive: Mapping[str, str] | None

    def _init_view(
        self,
        name: str,
        entity: Entity,
        source: Source,
        source_keys: Mapping[str, str] | None,
        derive: Mapping[str, str] | None,
        **kind_specific: Any,
    ) -> None:
        """Set the fields every view has (and the kind's own), then check them."""
        common = {
            "name": name,
            "entity": entity,
            "source": source,
            "source_keys": source_keys,
            "derive": derive,
        }
        for attribute, value in (common | kind_specific).items():
            object.__setattr__(self, attribute, value)
        self._check_view()

    def _check_view(self) -> None:
        check_name(self.name, "feature view")
        object.__setattr__(self, "derive", dict(self.derive or {}))
        mapping = dict(self.source_keys or {})
        unknown = [key for key in mapping if key not in self.entity.keys]
        if unknown:
            raise InvalidInputError(
                f"feature view {self.name!r}: source_keys names {unknown}, which are not keys of entity "
                f"{self.entity.name!r} {list(self.entity.keys)}"
            )
        object.__setattr__(self, "source_keys", {key: mapping.get(key, key) for key in self.entity.keys})

    @property
    def key_columns(self) -> dict[str, str]:
        """Entity key column -> source column."""
        return dict(self.source_keys or {})

    @property
    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def __getitem__(self, feature: str) -> FeatureRef:
        if feature not in self.feature_names:
            raise InvalidInputError(
                f"unknown feature {feature!r} in view {self.name!r}; it has {', '.join(self.feature_names)}"
            )
        return FeatureRef(self, feature)  # type: ignore[arg-type]

    def select(self, *features: str) -> list[FeatureRef]:
        return [self[name] for name in features]

    def source_description(self) -> str:
        return describe_source(self.source)

    @property
    def derived_columns(self) -> dict[str, str]:
        """Column -> DuckDB SQL expression over the source's columns, computed before anything else."""
        return dict(self.derive or {})


@dataclass(frozen=True, eq=False)
class FeatureView(_View):
    """Values of an entity over time: for each entity row, the latest one known at its event time.

    ``features`` maps output names to source columns (a list keeps the names). ``timestamp`` is the
    feature time; ``None`` makes a static view (one row per key). ``created`` is when a row was
    written: with ``created_time_filter`` a row is only seen once written, so backfilled or late
    rows do not leak into the past; without it the created time only breaks ties (Feast's rule).
    """

    features: Sequence[str] | Mapping[str, str] = ()
    timestamp: str | None = None
    created: str | None = None
    ttl: str | timedelta | None = None
    created_time_filter: bool = True

    def __init__(
        self,
        name: str,
        entity: Entity,
        source: Source,
        features: Sequence[str] | Mapping[str, str],
        *,
        timestamp: str | None,
        created: str | None = None,
        ttl: str | timedelta | None = None,
        created_time_filter: bool = True,
        source_keys: Mapping[str, str] | None = None,
        derive: Mapping[str, str] | None = None,
    ) -> None:
        self._init_view(name, entity, source, source_keys, derive, timestamp=timestamp, created=created,
                        created_time_filter=created_time_filter)  # fmt: skip
        set_ = object.__setattr__
        mapping = dict(features) if isinstance(features, Mapping) else {str(f): str(f) for f in features}
        if not mapping:
            raise InvalidInputError(f"feature view {name!r} declares no features")
        set_(self, "features", mapping)
        set_(self, "ttl", None if ttl is None else parse_duration(ttl, what=f"ttl of feature view {name!r}"))
        if created is not None and timestamp is None:
            raise InvalidInputError(f"feature view {name!r}: a created column needs a timestamp column")

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    @property
    def feature_columns(self) -> dict[str, str]:
        """Output name -> source column."""
        return dict(self.features)  # type: ignore[arg-type]

    @property
    def ttl_delta(self) -> timedelta | None:
        return self.ttl  # type: ignore[return-value]

    def definition(self) -> dict[str, Any]:
        return {
            "kind": "feature_view",
            "name": self.name,
            "entity": {"name": self.entity.name, "keys": list(self.entity.keys)},
            "source": self.source_description(),
            "source_keys": self.key_columns,
            "derive": dict(self.derive or {}),
            "features": self.feature_columns,
            "timestamp": self.timestamp,
            "created": self.created,
            "created_time_filter": self.created_time_filter,
            "ttl": None if self.ttl_delta is None else format_duration(self.ttl_delta),
        }


@dataclass(frozen=True)
class Aggregation:
    """``function`` of ``column`` over the trailing ``window`` before each event time (``count`` of rows
    when ``column`` is ``None``)."""

    function: AggregateFunction
    column: str | None
    window: str | timedelta
    name: str | None = None

    def __post_init__(self) -> None:
        if self.function not in AGGREGATE_FUNCTIONS:
            raise InvalidInputError(
                f"unknown aggregation {self.function!r}; expected one of {', '.join(AGGREGATE_FUNCTIONS)}"
            )
        if self.column is None and self.function != "count":
            raise InvalidInputError(f"aggregation {self.function!r} needs a column (only count may omit it)")
        window = parse_duration(self.window, what="window")
        object.__setattr__(self, "window", window)
        if self.name is None:
            default = f"{self.column or 'rows'}_{self.function}_{format_duration(window)}"
            object.__setattr__(self, "name", default)

    @property
    def window_delta(self) -> timedelta:
        return self.window  # type: ignore[return-value]

    @property
    def output(self) -> str:
        return str(self.name)


@dataclass(frozen=True, eq=False)
class AggregationView(_View):
    """Trailing-window aggregates of an entity's rows as of each event time: rows with
    ``event - window < timestamp <= event`` count. ``timestamp`` must be when the value became known."""

    timestamp: str = ""
    aggregations: Sequence[Aggregation] = ()

    def __init__(
        self,
        name: str,
        entity: Entity,
        source: Source,
        *,
        timestamp: str,
        aggregations: Sequence[Aggregation],
        source_keys: Mapping[str, str] | None = None,
        derive: Mapping[str, str] | None = None,
    ) -> None:
        self._init_view(name, entity, source, source_keys, derive, timestamp=timestamp)
        set_ = object.__setattr__
        if not aggregations:
            raise InvalidInputError(f"aggregation view {name!r} declares no aggregations")
        set_(self, "aggregations", tuple(aggregations))
        _refuse_duplicates([a.output for a in self.aggregations], f"aggregation view {name!r}")

    @property
    def feature_names(self) -> list[str]:
        return [a.output for a in self.aggregations]

    def definition(self) -> dict[str, Any]:
        return {
            "kind": "aggregation_view",
            "name": self.name,
            "entity": {"name": self.entity.name, "keys": list(self.entity.keys)},
            "source": self.source_description(),
            "source_keys": self.key_columns,
            "derive": dict(self.derive or {}),
            "timestamp": self.timestamp,
            "aggregations": [
                {
                    "name": a.output,
                    "function": a.function,
                    "column": a.column,
                    "window": format_duration(a.window_delta),
                }
                for a in self.aggregations
            ],
        }


View = FeatureView | AggregationView


@dataclass(frozen=True, eq=False)
class FeatureRef:
    """One feature of one view (``view["temp"]``)."""

    view: View
    feature: str

    def __str__(self) -> str:
        return f"{self.view.name}:{self.feature}"


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """A named list of features; its version is the hash of their definitions."""

    name: str
    features: Sequence[View | FeatureRef] = field(default_factory=tuple)
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "feature set")
        if not self.features:
            raise InvalidInputError(f"feature set {self.name!r} lists no features")
        object.__setattr__(self, "features", tuple(self.features))

    def selection(self) -> dict[str, tuple[View, list[str]]]:
        """View name -> (view, selected feature names), in first-mention order."""
        return select_features(self.features)

    @property
    def feature_names(self) -> list[str]:
        return [name for _, names in self.selection().values() for name in names]

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "views": [view.definition() | {"selected": names} for view, names in self.selection().values()],
        }

    @property
    def version(self) -> str:
        """sha256 of the canonical definition: the same features computed the same way hash the same."""
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def select_features(features: Sequence[View | FeatureRef]) -> dict[str, tuple[View, list[str]]]:
    """Group views and feature references by view, refusing two views of one name or a repeated output."""
    selection: dict[str, tuple[View, list[str]]] = {}
    for item in features:
        view, names = (
            (item.view, [item.feature]) if isinstance(item, FeatureRef) else (item, item.feature_names)
        )
        if not isinstance(view, FeatureView | AggregationView):
            raise InvalidInputError(f"{item!r} is not a feature view, aggregation view or feature reference")
        known = selection.get(view.name)
        if known is not None and known[0] is not view:
            raise InvalidInputError(f"two different feature views are named {view.name!r}")
        chosen = known[1] if known else []
        chosen.extend(name for name in names if name not in chosen)
        selection[view.name] = (view, chosen)
    owners: dict[str, str] = {}
    for view_name, (_, names) in selection.items():
        for name in names:
            if name in owners:
                raise InvalidInputError(
                    f"feature {name!r} is produced by both views {owners[name]!r} and {view_name!r}; "
                    "rename one (a mapping in `features=` or `name=` on the aggregation)"
                )
            owners[name] = view_name
    return selection


def describe_source(source: Source) -> str:
    """A stable, human-readable identity of a source (used in definitions and their hash)."""
    if isinstance(source, TableSource):
        return source.describe()
    if isinstance(source, str | Path):
        return f"file {source}"
    if isinstance(source, pa.Table | pd.DataFrame):
        return "in-memory rows"
    raise InvalidInputError(
        f"a feature source is a Parquet/CSV path, a TableSource or in-memory rows, not {type(source)}"
    )


def _refuse_duplicates(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInputError(f"{where}: two aggregations produce {name!r}; give one a `name=`")
        seen.add(name)
