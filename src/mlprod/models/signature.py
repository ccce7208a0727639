"""A model version's input and output schema, and the one encoder from inputs to a feature matrix.

Training, batch prediction and online serving all go through ``FeatureEncoder``, so a category is
mapped to the same code everywhere. Online requests take the row path (plain Python and numpy, no
pandas); batch work takes the vectorised frame path. A test checks the two agree.

Examples:
    >>> sig = Signature(inputs=(InputField("distance", "number"),
    ...                         InputField("carrier", "category", ("AA", "UA"))))
    >>> sig.encoder().encode_rows([{"distance": 1400, "carrier": "UA"}]).tolist()
    [[1400.0, 1.0]]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

FieldKind = Literal["number", "category"]
_INT_LIMIT = 2**1023  # larger integers do not fit a float64
_FLOAT_RANGE = (1 - _INT_LIMIT, _INT_LIMIT - 1)
UnknownCategories = Literal["error", "missing"]


@dataclass(frozen=True)
class InputField:
    """One model input: a number, or a category from a known list (others encode as missing).

    ``dtype`` is the training column's type; an ``int*`` number refuses values with a fraction or
    outside the type's range. ``nullable`` says the training column had missing values (or a type
    that can hold them), so a typed client must be able to send one; every input still takes null.
    """

    name: str
    kind: FieldKind
    categories: tuple[str, ...] = ()
    dtype: str = "float64"
    nullable: bool = False

    @property
    def integral(self) -> bool:
        return self.kind == "number" and self.dtype.lower().lstrip("u").startswith("int")

    @property
    def integer_range(self) -> tuple[int, int]:
        """The smallest and largest value of an integral input's type (int64's for an unknown one)."""
        return _integer_range(self.dtype)


@dataclass(frozen=True)
class Signature:
    """What a model version takes (inputs) and returns (``output``, a float64 per row)."""

    inputs: tuple[InputField, ...]
    output: str = "probability"
    task: str = "binary_classification"
    output_dtype: str = "float64"
    unknown_categories: UnknownCategories = "error"

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def categorical_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.inputs) if f.kind == "category"]

    def encoder(self, *, lenient: bool = False) -> FeatureEncoder:
        """The encoder; ``lenient`` treats unknown categories as missing whatever the policy
        (for scoring held-out data during training, where new categories are expected)."""
        return FeatureEncoder(self, strict=self.unknown_categories == "error" and not lenient)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "output": self.output,
            "output_dtype": self.output_dtype,
            "unknown_categories": self.unknown_categories,
            "inputs": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "dtype": f.dtype,
                    "nullable": f.nullable,
                    **({"categories": list(f.categories)} if f.kind == "category" else {}),
                }
                for f in self.inputs
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        inputs = tuple(
            InputField(
                item["name"],
                item["kind"],
                tuple(item.get("categories", ())),
                item.get("dtype", "float64"),
                item.get("nullable", True),  # not recorded before: a missing value may come
            )
            for item in data["inputs"]
        )
        return cls(
            inputs=inputs,
            output=data["output"],
            task=data["task"],
            output_dtype=data.get("output_dtype", "float64"),
            unknown_categories=data.get("unknown_categories", "error"),
        )

    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        unknown_categories: UnknownCategories = "error",
    ) -> Signature:
        """Build a signature from training data; categories are the sorted values seen.

        ``unknown_categories`` says what serving does with a category not seen in training:
        ``"error"`` refuses the input naming the field, ``"missing"`` encodes it as missing.
        """
        missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"training data lacks input column(s) {missing}; it has {list(frame.columns)}"
            )
        fields = [
            InputField(name, "number", dtype=str(frame[name].dtype), nullable=_nullable(frame[name]))
            for name in numeric
        ]
        for name in categorical:
            values = sorted({str(v) for v in frame[name].dropna().unique()})
            fields.append(
                InputField(
                    name, "category", tuple(values), str(frame[name].dtype), nullable=_nullable(frame[name])
                )
            )
        return cls(inputs=tuple(fields), unknown_categories=unknown_categories)


@functools.lru_cache(maxsize=64)
def _integer_range(dtype: str) -> tuple[int, int]:
    try:
        info = np.iinfo(dtype.lower().split("[", 1)[0])
    except (TypeError, ValueError):
        info = np.iinfo(np.int64)
    return int(info.min), int(info.max)


def _nullable(column: pd.Series) -> bool:
    """Missing values in the column, or a numeric type made to hold them (pandas' ``Int64`` …)."""
    extension = not isinstance(column.dtype, np.dtype)
    return bool(column.isna().any()) or (extension and pd.api.types.is_numeric_dtype(column.dtype))


@dataclass
class FeatureEncoder:
    """Turns rows, columns or a frame into the float64 matrix the model was trained on.

    With ``strict``, a category outside the signature's list is an error naming the field;
    otherwise it is encoded as missing.
    """

    signature: Signature
    strict: bool = False
    _codes: list[dict[str, float] | None] = field(init=False, repr=False)
    _plan: list[tuple[str, dict[str, float] | None, bool, int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._codes = [
            {c: float(i) for i, c in enumerate(f.categories)} if f.kind == "category" else None
            for f in self.signature.inputs
        ]
        self._plan = [
            (f.name, codes, f.integral, *(f.integer_range if f.integral else _FLOAT_RANGE))
            for f, codes in zip(self.signature.inputs, self._codes, strict=True)
        ]

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode a list of JSON-like objects, one per prediction; extra keys are ignored."""
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
            raise InvalidInputError(f"expected a list of rows (objects), got {type(rows).__name__}")
        values: list[float] = []
        append = values.append
        nan = math.nan
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"row {r}: expected an object of fields, got {row!r}")
            for j, (name, codes, integral, low, high) in enumerate(self._plan):
                try:
                    value = row[name]
                except KeyError:
                    raise InvalidInputError(
                        f"row {r}: missing field {name!r} (expected {self.signature.input_names})"
                    ) from None
                # Fast path for the usual JSON types; anything else takes the checked path below.
                kind = type(value)
                if value is None:
                    append(nan)
                elif codes is None and (
                    (
                        kind is float
                        and value - value == 0.0
                        and (not integral or (value.is_integer() and low <= value <= high))
                    )
                    or (kind is int and low <= value <= high)
                ):
                    append(float(value))
                elif codes is not None and kind is str and value in codes:
                    append(codes[value])
                else:
                    spec = self.signature.inputs[j]
                    append(_encode_value(value, spec, codes, self.strict, where=f"row {r}"))
        return np.array(values, dtype=np.float64).reshape(len(rows), len(self._plan))

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Encode a mapping of column name to equally long lists of values."""
        if not isinstance(columns, Mapping):
            raise InvalidInputError(f"expected an object of columns, got {type(columns).__name__}")
        missing = [name for name in self.signature.input_names if name not in columns]
        for name in self.signature.input_names:
            values = columns.get(name)
            if name in columns and (not isinstance(values, Sequence) or isinstance(values, str | bytes)):
                raise InvalidInputError(
                    f"column {name!r} must be a list of values, got {type(values).__name__}"
                )
        lengths = {name: len(columns[name]) for name in self.signature.input_names if name in columns}
        if missing:
            raise InvalidInputError(f"missing column(s) {missing} (expected {self.signature.input_names})")
        if len(set(lengths.values())) > 1:
            raise InvalidInputError(f"columns have different lengths: {lengths}")
        n = next(iter(lengths.values()), 0)
        matrix = np.empty((n, len(self.signature.inputs)), dtype=np.float64)
        for j, (spec, codes) in enumerate(zip(self.signature.inputs, self._codes, strict=True)):
            values = columns[spec.name]
            for r in range(n):
                where = f"column {spec.name!r} index {r}"
                matrix[r, j] = _encode_value(values[r], spec, codes, self.strict, where=where)
        return matrix

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Vectorised encoding of a pandas frame (training and batch prediction)."""
        missing = [name for name in self.signature.input_names if name not in frame.columns]
        if missing:
            raise InvalidInputError(f"missing column(s) {missing} (expected {self.signature.input_names})")
        matrix = np.empty((len(frame), len(self.signature.inputs)), dtype=np.float64)
        for j, spec in enumerate(self.signature.inputs):
            column = frame[spec.name]
            if spec.kind == "category":
                as_text = column.astype("string").to_numpy(dtype=object, na_value=None)
                codes = pd.Index(spec.categories, dtype=object).get_indexer(as_text)
                unknown = (codes < 0) & pd.notna(as_text)
                if self.strict and unknown.any():
                    examples = sorted({str(v) for v in as_text[unknown]})[:5]
                    raise InvalidInputError(
                        f"column {spec.name!r}: {int(unknown.sum())} value(s) are not allowed categories, "
                        f"e.g. {examples} ({len(spec.categories)} known)"
                    )
                matrix[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                try:
                    values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"column {spec.name!r} expects numbers: {exc}") from exc
                if spec.integral and np.any(values[~np.isnan(values)] % 1):
                    raise InvalidInputError(
                        f"column {spec.name!r} expects integers ({spec.dtype}), got fractions"
                    )
                matrix[:, j] = values
        return matrix


def _encode_value(
    value: Any, spec: InputField, codes: dict[str, float] | None, strict: bool, *, where: str
) -> float:
    if value is None:
        return math.nan
    if codes is not None:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInputError(
                f"{where}: field {spec.name!r} expects a category (string), got {value!r}"
            )
        code = codes.get(str(value))
        if code is None:
            if strict:
                raise InvalidInputError(
                    f"{where}: field {spec.name!r}: {value!r} is not an allowed category "
                    f"({len(spec.categories)} known, e.g. {list(spec.categories[:3])})"
                )
            return math.nan
        return code
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{where}: field {spec.name!r} expects a number, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        return math.nan  # missing, as null is
    if isinstance(value, float) and math.isinf(value):
        raise InvalidInputError(f"{where}: field {spec.name!r} expects a finite number, got {value!r}")
    if spec.integral:
        if isinstance(value, float) and not value.is_integer():
            raise InvalidInputError(
                f"{where}: field {spec.name!r} expects an integer ({spec.dtype}), got {value!r}"
            )
        low, high = spec.integer_range
        if not low <= value <= high:
            raise InvalidInputError(
                f"{where}: field {spec.name!r} expects an integer ({spec.dtype}) in [{low}, {high}], "
                f"got {value!r}"
            )
    if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
        raise InvalidInputError(
            f"{where}: field {spec.name!r} expects a finite number, got an integer beyond ±1.8e308"
        )
    return float(value)
