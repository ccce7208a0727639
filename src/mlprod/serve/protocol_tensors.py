"""Open Inference Protocol request bodies: the JSON header, the binary tensor data, the input tensors.

Everything a request says is checked here with a message naming the tensor and what was expected;
what the tensors must be for a given model is checked in ``protocol_infer``. The usual body (flat
``[n]`` tensors of valid values, no binary data) is checked in a few passes that run in C
(``_decode_plain``); any other is decoded tensor by tensor (``_decode_checked``), which also gives
every error. The two agree on whatever the first accepts (a property test checks).
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import is_, itemgetter, ne
from typing import Any

import numpy as np

from mlprod.errors import InvalidInputError, MlprodError

HEADER_LENGTH = "Inference-Header-Content-Length"
_NUMPY_DTYPES = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*_NUMPY_DTYPES, "BYTES")
_DATATYPE_SET = frozenset(DATATYPES)
INTEGERS = frozenset(d for d in _NUMPY_DTYPES if "INT" in d)
FLOATS = frozenset({"FP16", "FP32", "FP64"})
INTEGER_RANGES = {
    d: (int(np.iinfo(_NUMPY_DTYPES[d]).min), int(np.iinfo(_NUMPY_DTYPES[d]).max)) for d in INTEGERS
}


_ABSENT: Any = object()


class Tensors:
    """The decoded input tensors, column by column: values in row order, ``None`` for a missing one.

    ``plain``: decoded by the plain path (see ``plain_data``). ``row``: when one row was decoded as
    such, its values (one per tensor); the columns are then made from it only if asked for.
    """

    __slots__ = ("_values", "datatypes", "names", "plain", "row", "rows")

    def __init__(
        self,
        names: list[str],
        datatypes: list[str],
        rows: list[int],
        values: list[list[Any]] | None = None,
        *,
        plain: bool = False,
        row: list[Any] | None = None,
    ) -> None:
        self.names = names
        self.datatypes = datatypes
        self.rows = rows
        self._values = values
        self.plain = plain
        self.row = row

    @property
    def values(self) -> list[list[Any]]:
        if self._values is None:
            assert self.row is not None, "Tensors needs values (columns) or row (one row)"
            self._values = [[value] for value in self.row]
        return self._values


def parse_body(
    raw: bytes, header_length: str | None, loads: Callable[[bytes], Any] = json.loads
) -> tuple[dict[str, Any], bytes | None]:
    """The JSON header of the request and, with the binary extension, the bytes after it.

    ``loads`` parses the JSON (a large body's parser, see ``large_body``, may refuse it as too large).
    """
    binary: bytes | None = None
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(raw):
            raise InvalidInputError(
                f"header {HEADER_LENGTH} must be the byte length of the JSON part of the body "
                f"(at most {len(raw)}), got {header_length!r}"
            )
        raw, binary = raw[: int(header_length)], raw[int(header_length) :]
    try:
        body = loads(raw)
    except MlprodError:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if type(body) is not dict:
        raise InvalidInputError('request body must be a JSON object {"inputs": [...]}')
    return body, binary


def decode_inputs(inputs: Any, binary: bytes | None) -> Tensors:
    """The request's ``inputs``, each checked; the binary data must be used up exactly."""
    if binary is None:
        plain = _decode_plain(inputs)
        if plain is not None:
            return plain
    return _decode_checked(inputs, binary)


_FIELDS = itemgetter("name", "shape", "datatype", "data")
_FIRST = itemgetter(0)
_IS_FLOAT = functools.partial(is_, float)
_IS_STR = functools.partial(is_, str)
# (datatype, Python type of an element) pairs that stand as they are once ranges are checked
_PLAIN_PAIRS = frozenset(
    {(d, t) for d in FLOATS for t in (float, int, type(None))}
    | {("BYTES", str)}
    | {(d, int) for d in INTEGERS}
)


@functools.lru_cache(maxsize=256)  # a client sends the same tensors request after request
def skeleton(names: tuple[Any, ...], datatypes: tuple[Any, ...]) -> tuple[str, ...] | None:
    """The integer datatypes among ``datatypes`` when the names (unique, non-empty strings) and the
    datatypes are valid; None when they are not."""
    if set(map(type, names)) != {str} or "" in names or len(set(names)) != len(names):
        return None
    if set(map(type, datatypes)) != {str} or not _DATATYPE_SET.issuperset(datatypes):
        return None
    return tuple(INTEGERS.intersection(datatypes))


def _decode_plain(inputs: Any) -> Tensors | None:
    """The usual body (every tensor exactly ``{"name", "shape": [n], "datatype", "data": [flat]}`` with
    valid values) checked in a few passes that run in C, not tensor by tensor in Python; None for
    anything else, which ``_decode_checked`` then decodes or refuses with its message. Whatever this
    accepts, ``_decode_checked`` accepts with the same result (a property test checks)."""
    if type(inputs) is not list or not inputs:
        return None
    try:  # JSON gives dicts, lists, strings and scalars: only a dict of exactly these 4 keys gets by
        if set(map(len, inputs)) != {4}:
            return None
        names, shapes, datatypes, data = zip(*map(_FIELDS, inputs), strict=True)
        integers = skeleton(names, datatypes)
    except (KeyError, TypeError):  # TypeError: also an unhashable name or datatype
        return None
    if integers is None or set(map(type, shapes)) != {list} or set(map(type, data)) != {list}:
        return None
    if set(map(type, chain.from_iterable(shapes))) != {int}:
        return None  # so that no bool or float passes for an int below (True == 1, 1.0 == 1)
    shape = set(map(tuple, shapes))
    if len(shape) != 1:
        return None
    (dims,) = shape
    n = dims[0] if len(dims) == 1 else -1
    if n < 0 or set(map(len, data)) != {n}:
        return None
    if not plain_data(data, datatypes, n, integers):
        return None
    return Tensors(list(names), list(datatypes), [n] * len(names), list(data), plain=True)


def plain_data(data: Sequence[list[Any]], datatypes: Sequence[str], n: int, integers: Sequence[str]) -> bool:
    """Whether the tensors' values (``n`` each, all flat lists) are valid for their datatypes as they
    stand, checked in a few C passes; ``NaN`` in a floating-point tensor is made None in place, as the
    checked path makes it. ``integers``: the integer datatypes among ``datatypes``."""
    if n == 1:
        flat, per_value = list(map(_FIRST, data)), datatypes
    else:
        flat = list(chain.from_iterable(data))
        per_value = tuple(chain.from_iterable(map(repeat, datatypes, repeat(n))))
    kinds = list(map(type, flat))
    if not _PLAIN_PAIRS.issuperset(zip(per_value, kinds, strict=True)):
        return False  # a nested list, a bool, a string in a number tensor, null in an integer one, ...
    try:
        total = math.fsum(compress(flat, map(_IS_FLOAT, kinds)))  # floats are in FP tensors only
    except (OverflowError, ValueError):  # a huge integer; inf - inf
        return False
    if total - total != 0.0:  # NaN or an infinity
        if total == total or any(map(math.isinf, compress(flat, map(_IS_FLOAT, kinds)))):
            return False  # an infinity, refused by the checked path
        for at in compress(range(len(flat)), map(ne, flat, flat)):  # NaN != NaN; floats are in FP tensors
            data[at // n][at % n] = None  # a missing value, as null is (the parsed body is ours)
    try:
        "".join(compress(flat, map(_IS_STR, kinds))).encode()  # no lone surrogate in any string
    except UnicodeEncodeError:
        return False
    for datatype in integers:
        values = list(compress(flat, map(datatype.__eq__, per_value)))
        low, high = INTEGER_RANGES[datatype]
        if values and not low <= min(values) <= max(values) <= high:
            return False
    return True


def _decode_checked(inputs: Any, binary: bytes | None) -> Tensors:
    """Any body, tensor by tensor, with an error naming the first thing that is wrong."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(
            '"inputs" must be a non-empty list of tensors {"name", "shape", "datatype", "data"}, '
            f"got {kind_of(inputs)}"
        )
    tensors = Tensors([], [], [], [])
    names: set[str] = set()
    offset = 0
    for i, item in enumerate(inputs):
        name, datatype, rows, values, used = _decode_input(i, item, binary, offset)
        if name in names:
            raise InvalidInputError(f"input tensor {name!r} is given twice")
        names.add(name)
        tensors.names.append(name)
        tensors.datatypes.append(datatype)
        tensors.rows.append(rows)
        tensors.values.append(values)
        offset += used
    if binary is not None and offset != len(binary):
        raise InvalidInputError(
            f"the body has {len(binary)} bytes of binary tensor data but the inputs' "
            f"parameters.binary_data_size add up to {offset}"
        )
    return tensors


def _decode_input(
    i: int, item: Any, binary: bytes | None, offset: int
) -> tuple[str, str, int, list[Any], int]:
    """One tensor's name, datatype, rows and values, and how many bytes of the binary data it used."""
    if not isinstance(item, dict):
        raise InvalidInputError(f'inputs[{i}] must be an object {{"name", "shape", "datatype", "data"}}')
    name = item.get("name")
    if type(name) is not str or not name:
        raise InvalidInputError(f"inputs[{i}].name must be a non-empty string, got {name!r}")
    datatype = item.get("datatype")
    if type(datatype) is not str or datatype not in _DATATYPE_SET:
        raise InvalidInputError(
            f"{_where(name)}: datatype must be one of {list(DATATYPES)}, got {datatype!r}"
        )
    shape = item.get("shape")
    size = _rows_of(shape)
    if size < 0:
        raise InvalidInputError(
            f"{_where(name)}: shape must be [n] or [n, 1] (one value per row), got {shape!r}"
        )
    parameters = item.get("parameters", _ABSENT)
    size_param = (
        None
        if parameters is _ABSENT
        else as_object(parameters, f"{_where(name)}: parameters").get("binary_data_size")
    )
    used = 0
    if size_param is not None:
        where = _where(name)
        if "data" in item:
            raise InvalidInputError(f"{where}: give either data or parameters.binary_data_size, not both")
        if binary is None:
            raise InvalidInputError(
                f"{where}: parameters.binary_data_size needs the binary tensor extension: "
                f"send the {HEADER_LENGTH} header, or give the values in data"
            )
        if not isinstance(size_param, int) or isinstance(size_param, bool) or size_param < 0:
            raise InvalidInputError(
                f"{where}: parameters.binary_data_size must be a byte count, got {size_param!r}"
            )
        if offset + size_param > len(binary):
            raise InvalidInputError(
                f"{where}: binary_data_size {size_param} runs past the end of the body "
                f"({len(binary) - offset} bytes left)"
            )
        values = _from_binary(binary[offset : offset + size_param], datatype, where)
        used = size_param
    else:
        data = item.get("data", _ABSENT)
        if data is _ABSENT:
            raise InvalidInputError(f"{_where(name)} has no data (give data, or parameters.binary_data_size)")
        values = _flatten(data, name)
    if len(values) != size:
        raise InvalidInputError(
            f"{_where(name)}: shape {shape} holds {size} value(s) but {len(values)} were given"
        )
    return name, datatype, size, _checked(values, datatype, name), used


def _rows_of(shape: Any) -> int:
    """The rows of a shape ``[n]`` or ``[n, 1]``; -1 for any other."""
    if type(shape) is not list or not 1 <= len(shape) <= 2:
        return -1
    if len(shape) == 2 and not (type(shape[1]) is int and shape[1] == 1):
        return -1
    rows = shape[0]
    return rows if type(rows) is int and rows >= 0 else -1


def _where(name: str) -> str:
    return f"input tensor {name!r}"


def _flatten(data: Any, name: str) -> list[Any]:
    """Row-major elements of ``data``, which may be nested lists."""
    if not isinstance(data, list):
        raise InvalidInputError(f"{_where(name)}: data must be a list, got {kind_of(data)}")
    for value in data:
        if type(value) is list:
            break
    else:
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _from_binary(raw: bytes, datatype: str, where: str) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        at = 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise InvalidInputError(f"{where}: BYTES data ends inside a 4-byte length prefix")
            (length,) = struct.unpack_from("<I", raw, at)
            at += 4
            if at + length > len(raw):
                raise InvalidInputError(f"{where}: BYTES element {len(values)} runs past its binary data")
            values.append(raw[at : at + length])
            at += length
        return values
    dtype = np.dtype(_NUMPY_DTYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise InvalidInputError(
            f"{where}: {len(raw)} bytes of binary data is not a whole number of {datatype} values"
        )
    return list(np.frombuffer(raw, dtype=dtype).tolist())


def _checked(values: list[Any], datatype: str, name: str) -> list[Any]:
    """Plain Python values for a datatype, ``None`` for a missing value; refuses what does not fit."""
    if datatype in FLOATS:
        return _checked_numbers(values, datatype, name)
    where = _where(name)
    if datatype == "BYTES":
        return [_text_element(v, where, k) for k, v in enumerate(values)]
    if datatype == "BOOL":
        for k, v in enumerate(values):
            if not isinstance(v, bool):
                raise InvalidInputError(f"{where}, element {k}: BOOL elements are true or false, got {v!r}")
        return values
    low, high = INTEGER_RANGES[datatype]
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            hint = "; NaN and null (missing values) are only allowed in FP tensors" if _is_missing(v) else ""
            raise InvalidInputError(
                f"{where}, element {k}: {datatype} elements are integers, got {v!r}{hint}"
            )
        if not low <= v <= high:
            raise InvalidInputError(
                f"{where}, element {k}: {v} is outside the {datatype} range [{low}, {high}]"
            )
    return values


def _checked_numbers(values: list[Any], datatype: str, name: str) -> list[Any]:
    """A floating-point tensor's values: ``NaN`` and ``null`` are missing (None), infinities refused."""
    checked: list[Any] = []
    append = checked.append
    for k, v in enumerate(values):
        kind = type(v)
        if kind is float:
            if v - v == 0.0:  # finite
                append(v)
            elif v != v:
                append(None)
            else:
                raise InvalidInputError(
                    f"{_where(name)}, element {k}: {v} is not allowed; use NaN or null for a missing value"
                )
        elif kind is int or v is None:
            append(v)
        else:
            raise InvalidInputError(
                f"{_where(name)}, element {k}: {datatype} elements are numbers, got {v!r}"
            )
    return checked


def _text_element(value: Any, where: str, k: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not _is_text(value):
            raise InvalidInputError(f"{where}, element {k}: {value!r} is not valid Unicode text")
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{where}, element {k}: BYTES element is not UTF-8 text") from None
    raise InvalidInputError(f"{where}, element {k}: BYTES elements are strings, got {value!r}")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def binary_output(body: Mapping[str, Any], parameters: Mapping[str, Any], output: str) -> bool:
    """Whether the answer's tensor travels as binary data; checks the requested outputs."""
    binary = _flag(parameters.get("binary_data_output", False), '"parameters.binary_data_output"')
    requested = body.get("outputs")
    if requested is None:
        return binary
    if not isinstance(requested, list):
        raise InvalidInputError(f'"outputs" must be a list of {{"name": ...}}, got {kind_of(requested)}')
    for i, item in enumerate(requested):
        if not isinstance(item, dict) or item.get("name") != output:
            got = item.get("name") if isinstance(item, dict) else item
            raise InvalidInputError(f"outputs[{i}]: unknown output {got!r}; the model returns {output!r}")
        params = as_object(item.get("parameters", {}), f"outputs[{i}].parameters")
        binary = _flag(params.get("binary_data", binary), f"outputs[{i}].parameters.binary_data")
    return binary


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be an object, got {kind_of(value)}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{what} must be true or false, got {value!r}")
    return value


def as_text(value: Any, what: str) -> str | None:
    if value is None or (isinstance(value, str) and _is_text(value)):
        return value
    raise InvalidInputError(f"{what} must be a string of valid Unicode text, got {value!r}")


def _is_text(value: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot (lone surrogates), which the log cannot store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__
