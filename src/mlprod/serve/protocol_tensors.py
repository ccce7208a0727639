"""Open Inference Protocol request bodies: the JSON header, the binary tensor data, the input tensors.

Everything a request says is checked here with a message naming the tensor and what was expected;
what the tensors must be for a given model is checked in ``protocol_infer``. The decoding is plain
Python over ``json.loads``'s output, shared by the ASGI fast path and the FastAPI route.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from mlprod.errors import InvalidInputError

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
INTEGERS = frozenset(d for d in _NUMPY_DTYPES if "INT" in d)
FLOATS = frozenset({"FP16", "FP32", "FP64"})
_RANGES = {d: (int(np.iinfo(_NUMPY_DTYPES[d]).min), int(np.iinfo(_NUMPY_DTYPES[d]).max)) for d in INTEGERS}


class Tensor(NamedTuple):
    """One decoded input tensor: its values in row order, ``None`` for a missing value."""

    name: str
    datatype: str
    rows: int
    values: list[Any]


def parse_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes | None]:
    """The JSON header of the request and, with the binary extension, the bytes after it."""
    binary: bytes | None = None
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(raw):
            raise InvalidInputError(
                f"header {HEADER_LENGTH} must be the byte length of the JSON part of the body "
                f"(at most {len(raw)}), got {header_length!r}"
            )
        raw, binary = raw[: int(header_length)], raw[int(header_length) :]
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if type(body) is not dict:
        raise InvalidInputError('request body must be a JSON object {"inputs": [...]}')
    return body, binary


def decode_inputs(inputs: Any, binary: bytes | None) -> list[Tensor]:
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(
            '"inputs" must be a non-empty list of tensors {"name", "shape", "datatype", "data"}, '
            f"got {kind_of(inputs)}"
        )
    tensors: list[Tensor] = []
    offset = 0
    for i, item in enumerate(inputs):
        tensor, used = _decode_input(i, item, binary, offset)
        if any(t.name == tensor.name for t in tensors):
            raise InvalidInputError(f"input tensor {tensor.name!r} is given twice")
        tensors.append(tensor)
        offset += used
    if binary is not None and offset != len(binary):
        raise InvalidInputError(
            f"the body has {len(binary)} bytes of binary tensor data but the inputs' "
            f"parameters.binary_data_size add up to {offset}"
        )
    return tensors


def _decode_input(i: int, item: Any, binary: bytes | None, offset: int) -> tuple[Tensor, int]:
    """One tensor, and how many bytes of the binary data it used."""
    if not isinstance(item, dict):
        raise InvalidInputError(f'inputs[{i}] must be an object {{"name", "shape", "datatype", "data"}}')
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"inputs[{i}].name must be a non-empty string, got {name!r}")
    where = f"input tensor {name!r}"
    datatype = item.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidInputError(f"{where}: datatype must be one of {list(DATATYPES)}, got {datatype!r}")
    shape = item.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (1, 2)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise InvalidInputError(f"{where}: shape must be [n] or [n, 1] (one value per row), got {shape!r}")
    size = shape[0]
    size_param = as_object(item.get("parameters", {}), f"{where}: parameters").get("binary_data_size")
    used = 0
    if size_param is not None:
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
    elif "data" in item:
        values = _flatten(item["data"], where)
    else:
        raise InvalidInputError(f"{where} has no data (give data, or parameters.binary_data_size)")
    if len(values) != size:
        raise InvalidInputError(f"{where}: shape {shape} holds {size} value(s) but {len(values)} were given")
    return Tensor(name, datatype, size, _checked(values, datatype, where)), used


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major elements of ``data``, which may be nested lists."""
    if not isinstance(data, list):
        raise InvalidInputError(f"{where}: data must be a list, got {kind_of(data)}")
    if not any(isinstance(v, list) for v in data):
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


def _checked(values: list[Any], datatype: str, where: str) -> list[Any]:
    """Plain Python values for a datatype, ``None`` for a missing value; refuses what does not fit."""
    if datatype == "BYTES":
        return [_text_element(v, where, k) for k, v in enumerate(values)]
    if datatype == "BOOL":
        for k, v in enumerate(values):
            if not isinstance(v, bool):
                raise InvalidInputError(f"{where}, element {k}: BOOL elements are true or false, got {v!r}")
        return values
    if datatype in INTEGERS:
        low, high = _RANGES[datatype]
        for k, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int):
                hint = (
                    "; NaN and null (missing values) are only allowed in FP tensors" if _is_missing(v) else ""
                )
                raise InvalidInputError(
                    f"{where}, element {k}: {datatype} elements are integers, got {v!r}{hint}"
                )
            if not low <= v <= high:
                raise InvalidInputError(
                    f"{where}, element {k}: {v} is outside the {datatype} range [{low}, {high}]"
                )
        return values
    checked: list[Any] = []
    for k, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            checked.append(None)
        elif isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidInputError(f"{where}, element {k}: {datatype} elements are numbers, got {v!r}")
        elif isinstance(v, float) and math.isinf(v):
            raise InvalidInputError(
                f"{where}, element {k}: {v} is not allowed; use NaN or null for a missing value"
            )
        else:
            checked.append(v)
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
