"""Profiles: one sketch per monitored column, for a reference data set or for a window of predictions.

A ``ReferenceBuilder`` reads the reference (training or evaluation data) in one streaming pass,
batch by batch, and ``finish`` turns it into a ``Profile``: numeric columns get bin edges at the
reference quantiles, categorical columns a vocabulary of their most frequent values. A window is
``reference.window()`` fed with batches: same bins, same vocabulary, so the two compare bin by bin.
Profiles merge (two windows, two workers) and serialize to JSON, never pickle.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Self, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError
from mlprod.monitor.sketches import (
    DEFAULT_BINS,
    DEFAULT_K,
    DEFAULT_MAX_CATEGORIES,
    DEFAULT_MAX_KNOWN,
    CategoricalSketch,
    CategoryCounter,
    ColumnSketch,
    NumericSketch,
    NumericStats,
    sketch_from_dict,
)

Batch: TypeAlias = pa.Table | pa.RecordBatch | pd.DataFrame
ColumnKind = Literal["numeric", "categorical"]
_FORMAT = "mlprod.monitor.profile"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProfileSpec:
    """Which columns a profile watches: numeric and categorical features, prediction and label.

    The prediction (a score) is profiled as numeric, the label as categorical; set either to None
    when the data has no such column.

    Examples:
        >>> spec = ProfileSpec(numeric=("distance",), categorical=("carrier",))
        >>> spec.kinds()
        {'distance': 'numeric', 'prediction': 'numeric', 'carrier': 'categorical', 'label': 'categorical'}
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    prediction: str | None = "prediction"
    label: str | None = "label"

    def __post_init__(self) -> None:
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "categorical", tuple(self.categorical))
        repeated = [name for name, times in Counter(name for name, _ in self._columns()).items() if times > 1]
        if repeated:
            raise InvalidInputError(
                f"column {repeated[0]!r} appears twice in the profile spec; name each column once"
            )

    def _columns(self) -> list[tuple[str, ColumnKind]]:
        numeric = [*self.numeric, *([self.prediction] if self.prediction else [])]
        categorical = [*self.categorical, *([self.label] if self.label else [])]
        return [(name, "numeric") for name in numeric] + [(name, "categorical") for name in categorical]

    def kinds(self) -> dict[str, ColumnKind]:
        """Every watched column and how it is profiled."""
        return dict(self._columns())

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @property
    def compared(self) -> tuple[str, ...]:
        """The columns drift and data-quality checks look at: the features and the prediction.

        The label is left out: in a window it is mostly missing until labels arrive, which is
        performance monitoring's business, not a data-quality breach.
        """
        return (*self.features, *([self.prediction] if self.prediction else []))


def _as_table(batch: Batch) -> pa.Table | pa.RecordBatch:
    if isinstance(batch, pa.Table | pa.RecordBatch):
        return batch
    if isinstance(batch, pd.DataFrame):
        try:
            return pa.Table.from_pandas(batch, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(f"batch DataFrame does not convert to Arrow: {exc}") from exc
    raise InvalidInputError(
        f"batch must be a pyarrow Table or RecordBatch or a pandas DataFrame, got {type(batch).__name__}"
    )


_NUMERIC_TYPES = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)
_CATEGORICAL_TYPES = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_string_view,
    pa.types.is_integer,
    pa.types.is_boolean,
    pa.types.is_floating,
)


def read_column(table: pa.Table | pa.RecordBatch, name: str, kind: ColumnKind) -> Any:
    """A watched column of a batch as its sketch counts it: numeric as a float64 NumPy array.

    The column is checked to exist and to have a type its kind of sketch can count.
    """
    if name not in table.schema.names:
        raise InvalidInputError(
            f"batch has no column {name!r} ({kind} in the profile spec); "
            f"columns present: {table.schema.names}"
        )
    column = table.column(name)
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    accepted = _NUMERIC_TYPES if kind == "numeric" else _CATEGORICAL_TYPES
    if not (pa.types.is_null(value_type) or any(test(value_type) for test in accepted)):
        expected = (
            "integer, float or boolean" if kind == "numeric" else "string, integer, boolean or dictionary"
        )
        raise InvalidInputError(f"column {name!r} must be {kind} ({expected}), got {column.type}")
    if kind == "numeric":
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return column


def _read_batch(batch: Batch, kinds: dict[str, ColumnKind]) -> tuple[dict[str, Any], int]:
    """Every watched column of a batch (numeric ones as float arrays) and its row count.

    All columns are read and checked before any sketch changes, so a bad batch changes nothing.
    """
    table = _as_table(batch)
    return {name: read_column(table, name, kind) for name, kind in kinds.items()}, table.num_rows


def _count(batch: Batch, spec: ProfileSpec, columns: Mapping[str, Any]) -> int:
    """Add a batch to each watched column's sketch or accumulator; the batch's row count."""
    values, rows = _read_batch(batch, spec.kinds())
    for name, column in values.items():
        columns[name].update(column)
    return rows


class Profile:
    """Sketches of the watched columns of one data set: a reference, or a window compared with it.

    Examples:
        >>> spec = ProfileSpec(numeric=("x",), categorical=("c",), label=None)
        >>> batch = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "a"], "prediction": [0.1] * 4})
        >>> reference = ReferenceBuilder(spec, bins=2).update(batch).finish()
        >>> window = reference.window().update(batch.slice(0, 2)).update(batch.slice(2))
        >>> window.rows, window.columns["x"].counts.tolist(), window.columns["c"].counts.tolist()
        (4, [2, 2], [3, 1])
        >>> Profile.from_bytes(window.to_bytes()).columns["x"].counts.tolist()
        [2, 2]
    """

    def __init__(self, spec: ProfileSpec, columns: Mapping[str, ColumnSketch], *, rows: int = 0) -> None:
        for name, kind in spec.kinds().items():
            expected = NumericSketch if kind == "numeric" else CategoricalSketch
            if not isinstance(columns.get(name), expected):
                raise InvalidInputError(f"profile column {name!r} must have a {kind} sketch")
        if set(columns) != set(spec.kinds()):
            raise InvalidInputError(
                f"profile has columns {sorted(set(columns) - set(spec.kinds()))} not in its spec"
            )
        self.spec = spec
        self.columns = dict(columns)
        self.rows = rows

    def window(self) -> Profile:
        """An empty profile with the same bins and vocabularies, to accumulate a window."""
        return Profile(self.spec, {name: sketch.empty() for name, sketch in self.columns.items()})

    def update(self, batch: Batch) -> Self:
        """Count a batch of rows; every watched column must be present with a fitting type."""
        self.rows += _count(batch, self.spec, self.columns)
        return self

    def merge(self, other: Profile) -> Profile:
        """A new profile of both inputs; specs, bins and vocabularies must match."""
        self.require_comparable(other)
        merged = {
            name: sketch.merge(other.columns[name])  # type: ignore[arg-type]  # same kinds, checked above
            for name, sketch in self.columns.items()
        }
        return Profile(self.spec, merged, rows=self.rows + other.rows)

    def require_comparable(self, other: Profile) -> None:
        """Raise unless ``other`` has the same spec, bins and vocabularies (a window of this reference)."""
        if self.spec != other.spec:
            raise InvalidInputError(f"profiles have different specs: {self.spec} and {other.spec}")
        for name, sketch in self.columns.items():
            if not sketch.compatible(other.columns[name]):
                raise InvalidInputError(
                    f"profiles differ in column {name!r}: its bins or categories are not the same; "
                    f"compare a reference with windows made by its window()"
                )

    def to_bytes(self) -> bytes:
        """JSON (UTF-8): the spec, the row count and every column's sketch."""
        document = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "spec": asdict(self.spec),
            "rows": self.rows,
            "columns": {name: sketch.to_dict() for name, sketch in self.columns.items()},
        }
        return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        try:
            document = json.loads(data)
            if document.get("format") != _FORMAT or document.get("version") != _FORMAT_VERSION:
                raise InvalidInputError(
                    f"expected format {_FORMAT!r} version {_FORMAT_VERSION}, "
                    f"got {document.get('format')!r} version {document.get('version')!r}"
                )
            spec = ProfileSpec(**{key: _tuple_or_value(value) for key, value in document["spec"].items()})
            columns = {name: sketch_from_dict(sketch) for name, sketch in document["columns"].items()}
            return cls(spec, columns, rows=int(document["rows"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInputError(f"not a serialized monitoring profile: {exc}") from exc


def _tuple_or_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_Accumulator: TypeAlias = NumericStats | CategoryCounter


class ReferenceBuilder:
    """Builds a reference ``Profile`` in one streaming pass; builders of parts of the data merge.

    During the pass each numeric column keeps ``NumericStats`` (with a KLL sketch of ``k``) and
    each categorical column exact counts of up to ``max_known`` values; ``finish`` derives bin
    edges from the KLL quantiles and the reference bin counts from its CDF, so no second pass.

    Examples:
        >>> spec = ProfileSpec(numeric=("x",), prediction=None, label=None)
        >>> left = ReferenceBuilder(spec, bins=4).update(pa.table({"x": [1.0, 2.0]}))
        >>> right = ReferenceBuilder(spec, bins=4).update(pa.table({"x": [3.0, 4.0, 5.0, None]}))
        >>> profile = left.merge(right).finish()
        >>> profile.rows, profile.columns["x"].edges.tolist(), profile.columns["x"].missing
        (6, [1.0, 2.0, 3.0, 4.0, 5.0], 1)
    """

    def __init__(
        self,
        spec: ProfileSpec,
        *,
        bins: int = DEFAULT_BINS,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
        k: int = DEFAULT_K,
        max_known: int = DEFAULT_MAX_KNOWN,
    ) -> None:
        if bins < 1 or max_categories < 1:
            raise InvalidInputError(
                f"bins and max_categories must be at least 1, got {bins} and {max_categories}"
            )
        self.spec = spec
        self.settings = {"bins": bins, "max_categories": max_categories, "k": k, "max_known": max_known}
        self.rows = 0
        self.columns: dict[str, _Accumulator] = {
            name: NumericStats(k=k) if kind == "numeric" else CategoryCounter(max_known=max_known)
            for name, kind in spec.kinds().items()
        }

    def update(self, batch: Batch) -> Self:
        """Add a batch of reference rows."""
        self.rows += _count(batch, self.spec, self.columns)
        return self

    def merge(self, other: ReferenceBuilder) -> ReferenceBuilder:
        """A new builder holding both builders' rows (same spec and settings)."""
        if (self.spec, self.settings) != (other.spec, other.settings):
            raise InvalidInputError(
                f"cannot merge reference builders with different specs or settings: "
                f"{self.spec} {self.settings} and {other.spec} {other.settings}"
            )
        merged = ReferenceBuilder(self.spec, **self.settings)
        merged.rows = self.rows + other.rows
        merged.columns = {
            name: acc.merge(other.columns[name])  # type: ignore[arg-type]
            for name, acc in self.columns.items()
        }
        return merged

    def finish(self) -> Profile:
        """The reference profile: fixed bins and vocabularies, counts of the rows read."""
        columns: dict[str, ColumnSketch] = {}
        for name, acc in self.columns.items():
            if isinstance(acc, NumericStats):
                columns[name] = NumericSketch.from_stats(acc, bins=self.settings["bins"])
            else:
                columns[name] = CategoricalSketch.from_counter(
                    acc, max_categories=self.settings["max_categories"]
                )
        return Profile(self.spec, columns, rows=self.rows)
