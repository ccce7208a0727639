"""Data expectations: inferred from a reference table, checked on incoming batches before a commit.

``infer_expectations`` learns, per column, the type, whether nulls occur, a widened numeric range and
(for low-cardinality text and boolean columns) the allowed values, plus a band for the row count of a
batch. ``validate`` checks a batch against them and ``split`` separates the rows that passed from
those that failed, so good rows can be committed and bad ones quarantined.

Checks come in two levels:

* batch-level (``missing_column``, ``type``, ``row_count``): the batch as a whole does not fit and
  cannot be split into good and bad rows;
* row-level (``null``, ``below_minimum``, ``above_maximum``, ``unknown_category``, ``missing_key``,
  ``duplicate_key``): each failing row is marked in ``ValidationReport.bad_rows``.

Key columns are only checked for missing (null) and duplicated keys: new batches bring new keys, so
neither a range nor a set of allowed values is inferred for them.

Examples:
    >>> import pyarrow as pa
    >>> reference = pa.table({"id": [1, 2, 3, 4], "delay": [0.0, 5.0, 10.0, 20.0]})
    >>> expectations = infer_expectations(reference, ["id"])
    >>> report = validate(pa.table({"id": [5, 6, 6], "delay": [3.0, 99.0, 1.0]}), expectations)
    >>> print(report.format())
    2 violation(s) in 3 row(s), 2 bad row(s):
      delay  above_maximum  1  1 value above 22.0 (largest 99.0)
      id  duplicate_key  2  1 key appearing more than once (2 rows)
    >>> good, bad = split(pa.table({"id": [5, 6, 6], "delay": [3.0, 99.0, 1.0]}), report)
    >>> bad.column("_violations").to_pylist()
    ['delay:above_maximum;id:duplicate_key', 'id:duplicate_key']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlprod.errors import InvalidInputError
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

CHECKS = (
    "missing_column",
    "type",
    "null",
    "below_minimum",
    "above_maximum",
    "unknown_category",
    "missing_key",
    "duplicate_key",
    "row_count",
)
BATCH_CHECKS = frozenset({"missing_column", "type", "row_count"})
VIOLATIONS_COLUMN = "_violations"
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ColumnExpectation:
    """What one column of an incoming batch should look like.

    ``minimum``/``maximum`` are set for integer and floating columns only; ``categories`` (the allowed
    values, as text) for text, dictionary and boolean columns with few distinct values.
    """

    name: str
    type: str
    nullable: bool
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; ``from_dict`` reads it back."""
        return {
            "name": self.name,
            "type": self.type,
            "nullable": self.nullable,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": None if self.categories is None else list(self.categories),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnExpectation:
        """Read the form written by ``to_dict``."""
        try:
            categories = data.get("categories")
            return cls(
                name=str(data["name"]),
                type=str(data["type"]),
                nullable=bool(data["nullable"]),
                minimum=None if data.get("minimum") is None else float(data["minimum"]),
                maximum=None if data.get("maximum") is None else float(data["maximum"]),
                categories=None if categories is None else tuple(str(c) for c in categories),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"column expectation {dict(data)!r} does not validate ({exc!r}); "
                "expected keys name, type, nullable, minimum, maximum, categories"
            ) from exc


@dataclass(frozen=True)
class Expectations:
    """Expectations for every column of a table, its key, and a band for a batch's row count."""

    key: tuple[str, ...]
    columns: tuple[ColumnExpectation, ...]
    min_rows: int
    max_rows: int

    def column(self, name: str) -> ColumnExpectation:
        """The expectation for column ``name``.

        Examples:
            >>> import pyarrow as pa
            >>> infer_expectations(pa.table({"id": [1, 2]}), ["id"]).column("id").type
            'int64'
        """
        for expectation in self.columns:
            if expectation.name == name:
                return expectation
        known = ", ".join(c.name for c in self.columns)
        raise InvalidInputError(f"no expectation for column {name!r}; expectations cover: {known}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form; ``from_dict(to_dict())`` gives back an equal object.

        Examples:
            >>> import pyarrow as pa
            >>> e = infer_expectations(pa.table({"id": [1, 2], "x": ["a", "b"]}), ["id"])
            >>> Expectations.from_dict(e.to_dict()) == e
            True
        """
        return {
            "key": list(self.key),
            "columns": [c.to_dict() for c in self.columns],
            "min_rows": self.min_rows,
            "max_rows": self.max_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expectations:
        """Read the form written by ``to_dict``; raise ``InvalidInputError`` when it does not fit."""
        try:
            return cls(
                key=tuple(str(k) for k in data["key"]),
                columns=tuple(ColumnExpectation.from_dict(c) for c in data["columns"]),
                min_rows=int(data["min_rows"]),
                max_rows=int(data["max_rows"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(
                f"expectations do not validate ({exc!r}); expected keys key, columns, min_rows, max_rows"
            ) from exc


@dataclass(frozen=True)
class Violation:
    """One failed check: on which column, how many rows, a few examples and a readable detail.

    ``column`` is ``"*"`` for the row count and the key columns joined by ``","`` for duplicate
    keys. ``rows`` holds the positions of the offending rows (empty for batch-level checks).
    """

    column: str
    check: str
    count: int
    examples: tuple[dict[str, Any], ...]
    detail: str
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False)

    @property
    def batch_level(self) -> bool:
        """True for checks that reject the whole batch rather than single rows."""
        return self.check in BATCH_CHECKS

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (example values that JSON cannot hold become text)."""
        return {
            "column": self.column,
            "check": self.check,
            "count": self.count,
            "examples": [{k: _jsonable(v) for k, v in e.items()} for e in self.examples],
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of ``validate``: the violations and a mask of the rows that failed a row check."""

    violations: tuple[Violation, ...]
    num_rows: int
    bad_rows: np.ndarray = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the batch passed every check."""
        return not self.violations

    @property
    def batch_level(self) -> bool:
        """True when a column is missing or mistyped or the row count is off: the batch cannot be split."""
        return any(v.batch_level for v in self.violations)

    @property
    def num_bad_rows(self) -> int:
        """How many rows failed at least one row-level check."""
        return int(np.count_nonzero(self.bad_rows))

    def format(self) -> str:
        """Readable text: a summary line, then one line per violation (column, check, count, detail)."""
        if self.ok:
            return f"ok: {self.num_rows:,} row(s) passed every check"
        counts = f"{self.num_rows:,} row(s), {self.num_bad_rows:,} bad row(s)"
        lines = [f"{len(self.violations)} violation(s) in {counts}:"]
        lines += [f"  {v.column}  {v.check}  {v.count:,}  {v.detail}" for v in self.violations]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (without the row mask)."""
        return {
            "ok": self.ok,
            "batch_level": self.batch_level,
            "num_rows": self.num_rows,
            "num_bad_rows": self.num_bad_rows,
            "violations": [v.to_dict() for v in self.violations],
        }


def infer_expectations(
    table: pa.Table,
    key: Sequence[str],
    *,
    margin: float = 0.1,
    max_categories: int = 50,
    row_band: tuple[float, float] = (0.5, 2.0),
) -> Expectations:
    """Learn expectations from a reference ``table`` whose rows are identified by ``key``.

    Numeric ranges are the observed ``[min, max]`` widened by ``margin * (max - min)`` on each side;
    text, dictionary and boolean columns with at most ``max_categories`` distinct values get them as
    their allowed categories; a batch should have between ``floor(row_band[0] * rows)`` and
    ``ceil(row_band[1] * rows)`` rows.

    Examples:
        >>> import pyarrow as pa
        >>> table = pa.table({"id": [1, 2, 3], "x": [0, 5, 10], "c": ["a", None, "b"]})
        >>> e = infer_expectations(table, ["id"])
        >>> e.column("x").minimum, e.column("x").maximum, e.column("c").categories, e.column("c").nullable
        (-1.0, 11.0, ('a', 'b'), True)
        >>> e.min_rows, e.max_rows
        (1, 6)
    """
    key = tuple(key)
    if not key:
        raise InvalidInputError("infer_expectations: key is empty; name the column(s) that identify a row")
    missing = [name for name in key if name not in table.column_names]
    if missing:
        raise InvalidInputError(
            f"infer_expectations: key column(s) {', '.join(missing)} missing "
            f"(columns: {', '.join(table.column_names)})"
        )
    if not margin >= 0:
        raise InvalidInputError(f"infer_expectations: margin must be >= 0, got {margin}")
    if max_categories < 0:
        raise InvalidInputError(f"infer_expectations: max_categories must be >= 0, got {max_categories}")
    low, high = row_band
    if not 0 <= low <= high:
        raise InvalidInputError(f"infer_expectations: row_band must satisfy 0 <= low <= high, got {row_band}")
    columns = tuple(
        _infer_column(
            name, table.column(name), is_key=name in key, margin=margin, max_categories=max_categories
        )
        for name in table.column_names
    )
    rows = table.num_rows
    return Expectations(
        key=key, columns=columns, min_rows=math.floor(low * rows), max_rows=math.ceil(high * rows)
    )


def validate(batch: pa.Table, expectations: Expectations) -> ValidationReport:
    """Check ``batch`` against ``expectations``; never raises for bad data, reports it instead.

    Columns of the batch that the expectations do not name are ignored (schema evolution is handled
    elsewhere). A column's type must equal the expected one, except that a batch type whose values
    always fit the expected type is accepted: a narrower integer of compatible signedness
    (``int32`` or ``uint16`` for ``int64``), any integer for a floating type, a narrower float for a
    wider one; a column of nulls only (type ``null``) fits any type. Row-level checks are skipped
    for columns that are missing or mistyped.

    Examples:
        >>> import pyarrow as pa
        >>> e = infer_expectations(pa.table({"id": [1, 2], "x": [1, 2]}), ["id"])
        >>> validate(pa.table({"id": [3, 4], "x": pa.array([1, 2], pa.int8())}), e).ok
        True
        >>> [v.check for v in validate(pa.table({"id": [3, 4], "x": ["1", "2"]}), e).violations]
        ['type']
    """
    rows = batch.num_rows
    key = expectations.key
    violations: list[Violation] = []
    if not expectations.min_rows <= rows <= expectations.max_rows:
        detail = f"{rows:,} rows, expected {expectations.min_rows:,} to {expectations.max_rows:,}"
        violations.append(Violation("*", "row_count", rows, (), detail))
    failed: list[tuple[str, str, np.ndarray, str]] = []
    for expectation in expectations.columns:
        name = expectation.name
        if name not in batch.column_names:
            detail = f"column missing, expected {expectation.type}"
            violations.append(Violation(name, "missing_column", rows, (), detail))
        elif str(batch.column(name).type) != expectation.type and not _widens(
            batch.column(name).type, expectation.type
        ):
            detail = f"type {batch.column(name).type}, expected {expectation.type}"
            violations.append(Violation(name, "type", rows, (), detail))
        else:
            failed += [(name, *found) for found in _row_checks(batch.column(name), expectation, name in key)]
    comparable = [name for name in key if name in batch.column_names]
    if key and comparable == list(key) and not any(v.column in key for v in violations):
        mask, repeated = _duplicated(batch, key)
        if repeated:
            detail = f"{_plural(repeated, 'key')} appearing more than once ({np.count_nonzero(mask):,} rows)"
            failed.append((",".join(key), "duplicate_key", mask, detail))
    bad = np.zeros(rows, dtype=bool)
    for name, check, mask, detail in failed:
        positions = np.flatnonzero(mask)
        shown = list(dict.fromkeys([*comparable, *([name] if name in batch.column_names else [])]))
        examples = tuple(batch.select(shown).take(pa.array(positions[:_MAX_EXAMPLES])).to_pylist())
        violations.append(Violation(name, check, int(positions.size), examples, detail, positions))
        bad |= mask
    return ValidationReport(tuple(violations), rows, bad)


def split(batch: pa.Table, report: ValidationReport) -> tuple[pa.Table, pa.Table]:
    """Split ``batch`` into the rows that passed and those that failed ``report``'s row checks.

    The bad rows carry an extra text column ``_violations`` naming every check the row failed, as
    ``column:check`` joined by ``;``.

    Examples:
        >>> import pyarrow as pa
        >>> e = infer_expectations(pa.table({"id": [1, 2], "c": ["a", "b"]}), ["id"])
        >>> batch = pa.table({"id": [3, 4], "c": ["a", "z"]})
        >>> good, bad = split(batch, validate(batch, e))
        >>> good.column("id").to_pylist(), bad.to_pylist()
        ([3], [{'id': 4, 'c': 'z', '_violations': 'c:unknown_category'}])
    """
    if batch.num_rows != report.num_rows:
        raise InvalidInputError(
            f"split: the batch has {batch.num_rows:,} rows but the report was made for {report.num_rows:,}; "
            "pass the batch that was validated"
        )
    if report.batch_level:
        checks = sorted({f"{v.column}:{v.check}" for v in report.violations if v.batch_level})
        raise InvalidInputError(
            f"split: the batch as a whole failed ({', '.join(checks)}), so it cannot be split into good "
            "and bad rows; fix the batch or the expectations"
        )
    if VIOLATIONS_COLUMN in batch.column_names:
        raise InvalidInputError(f"split: the batch already has a column named {VIOLATIONS_COLUMN!r}")
    mask = report.bad_rows
    good = batch.filter(pa.array(~mask))
    bad_positions = np.flatnonzero(mask)
    bad = batch.take(pa.array(bad_positions))
    if not bad_positions.size:
        return good, bad.append_column(VIOLATIONS_COLUMN, pa.array([], pa.string()))
    none = pa.scalar(None, pa.string())
    labels = []
    for violation in report.violations:
        hit = np.zeros(batch.num_rows, dtype=bool)
        hit[violation.rows] = True
        labels.append(pc.if_else(pa.array(hit[bad_positions]), f"{violation.column}:{violation.check}", none))
    joined = pc.binary_join_element_wise(*labels, ";", null_handling="skip")
    return good, bad.append_column(VIOLATIONS_COLUMN, joined)


def _row_checks(
    column: pa.ChunkedArray, expectation: ColumnExpectation, is_key: bool
) -> list[tuple[str, np.ndarray, str]]:
    """The row-level checks ``column`` fails: (check, row mask, detail) for each."""
    found: list[tuple[str, np.ndarray, str]] = []
    if is_key:
        if column.null_count:
            found.append(
                ("missing_key", _nulls(column), f"{_plural(column.null_count, 'row')} without a key")
            )
        return found
    if column.null_count and not expectation.nullable:
        found.append(("null", _nulls(column), f"{_plural(column.null_count, 'null value')}, expected none"))
    if pa.types.is_null(column.type):
        return found
    if expectation.minimum is not None:
        mask = _true(pc.less(column, expectation.minimum))
        if mask.any():
            detail = f"below {expectation.minimum} (smallest {pc.min(column).as_py()})"
            found.append(("below_minimum", mask, f"{_plural(int(mask.sum()), 'value')} {detail}"))
    if expectation.maximum is not None:
        mask = _true(pc.greater(column, expectation.maximum))
        if mask.any():
            detail = f"above {expectation.maximum} (largest {pc.max(column).as_py()})"
            found.append(("above_maximum", mask, f"{_plural(int(mask.sum()), 'value')} {detail}"))
    if expectation.categories is not None:
        values = _as_text(column)
        known = pa.array(expectation.categories, pa.string())
        mask = _true(pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known))))
        if mask.any():
            unknown = sorted(pc.unique(pc.filter(values, pa.array(mask))).to_pylist())
            listed = ", ".join(repr(u) for u in unknown[:_MAX_EXAMPLES]) + (
                ", ..." if len(unknown) > 5 else ""
            )
            detail = f"not among the {len(known)} known ({listed})"
            found.append(("unknown_category", mask, f"{_plural(int(mask.sum()), 'value')} {detail}"))
    return found


def _infer_column(
    name: str, column: pa.ChunkedArray, *, is_key: bool, margin: float, max_categories: int
) -> ColumnExpectation:
    kind = column.type
    nullable = column.null_count > 0
    if is_key:
        return ColumnExpectation(name, str(kind), nullable)
    if _is_numeric(kind):
        low, high = (pc.min_max(column)[part].as_py() for part in ("min", "max"))
        if low is None or high is None:
            return ColumnExpectation(name, str(kind), nullable)
        spread = margin * (float(high) - float(low))
        minimum, maximum = float(low) - spread, float(high) + spread
        if not (math.isfinite(minimum) and math.isfinite(maximum)):
            return ColumnExpectation(name, str(kind), nullable)
        return ColumnExpectation(name, str(kind), nullable, minimum, maximum)
    if _is_categorical(kind):
        distinct = pc.unique(_as_text(column)).drop_null()
        if len(distinct) <= max_categories:
            categories = tuple(sorted(str(v) for v in distinct.to_pylist()))
            return ColumnExpectation(name, str(kind), nullable, categories=categories)
    return ColumnExpectation(name, str(kind), nullable)


def _is_numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _is_categorical(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or (pa.types.is_dictionary(kind) and not _is_numeric(kind.value_type))
    )


def _widens(actual: pa.DataType, expected_name: str) -> bool:
    """True when every value of type ``actual`` fits the type named ``expected_name``."""
    if pa.types.is_null(actual):
        return True
    try:
        expected = pa.type_for_alias(expected_name)
    except (ValueError, KeyError):
        return False
    if pa.types.is_integer(actual) and pa.types.is_integer(expected):
        if pa.types.is_signed_integer(actual) and pa.types.is_unsigned_integer(expected):
            return False
        if pa.types.is_unsigned_integer(actual) and pa.types.is_signed_integer(expected):
            return bool(actual.bit_width < expected.bit_width)
        return bool(actual.bit_width <= expected.bit_width)
    if pa.types.is_integer(actual) and pa.types.is_floating(expected):
        return True
    if pa.types.is_floating(actual) and pa.types.is_floating(expected):
        return bool(actual.bit_width <= expected.bit_width)
    return False


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _true(condition: pa.ChunkedArray) -> np.ndarray:
    """A numpy mask from a boolean column, nulls counting as False."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(), dtype=bool)


def _nulls(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.is_null(column).to_numpy(), dtype=bool)


def _duplicated(batch: pa.Table, key: Sequence[str]) -> tuple[np.ndarray, int]:
    """A mask of every row whose complete key appears more than once, and how many keys do."""
    rows = batch.num_rows
    mask = np.zeros(rows, dtype=bool)
    if rows < 2:
        return mask, 0
    position = "__mlprod_row__"
    keys = [_plain(batch.column(name)) for name in key]
    keyed = pa.table(dict(zip(key, keys, strict=True))).append_column(
        position, pa.array(np.arange(rows, dtype=np.int64))
    )
    keyed = keyed.drop_null()
    counts = keyed.group_by(list(key)).aggregate([([], "count_all")])
    if counts.num_rows == keyed.num_rows:
        return mask, 0
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    positions = keyed.join(repeated, keys=list(key), join_type="inner").column(position)
    mask[np.asarray(positions.to_numpy(), dtype=np.int64)] = True
    return mask, repeated.num_rows


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded columns decoded, so that they can be grouped and joined on."""
    kind = column.type
    return column.cast(kind.value_type) if pa.types.is_dictionary(kind) else column


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
