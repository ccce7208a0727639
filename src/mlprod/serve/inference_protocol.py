"""The Open Inference Protocol (KServe v2) REST endpoints, so Triton and KServe clients work unchanged.

Endpoints (``{name}`` is a model name, which follows its routing plan, or ``name@alias``)::

    GET  /v2                                              server metadata                  read
    GET  /v2/models/{name}[/versions/{v}]                 model metadata                   read
    GET  /v2/models/{name}[/versions/{v}]/ready           200 when loadable, 404 unknown   read
    POST /v2/models/{name}[/versions/{v}]/infer           inference                        predict

Model metadata lists one input tensor per signature input, shape ``[-1]``: ``FP64`` for a number
(``INT64`` for an integral one), ``BYTES`` for a category; and one ``FP64`` output, the probability.

An inference request gives one tensor per input, named as in the metadata, of shape ``[n]`` or
``[n, 1]``. Any numeric datatype is taken for a number (an integral input refuses fractions); a
category takes ``BYTES`` (or an integer type when it was trained on integers). ``NaN`` or ``null`` in
a floating-point tensor is a missing value, as ``null`` is in the native API; infinities are refused.
A model served with online features also takes its entity keys (``BYTES`` or integers) in place of
the feature inputs. ``parameters`` may carry ``as_of`` and ``route_key`` as in the native API.

Tensors travel as JSON, or with the binary tensor data extension (``Inference-Header-Content-Length``
header, ``parameters.binary_data_size`` per input, ``binary_data_output`` or per-output
``binary_data`` for the answer), which tritonclient uses by default.

Errors answer ``{"error": message, "code": code}`` as the protocol asks (plus the stable ``code`` of
the native API); the message names the tensor and what was expected.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlprod import __version__
from mlprod.errors import InvalidInputError, MlprodError
from mlprod.models import parse_ref
from mlprod.models.signature import InputField
from mlprod.serve.http_errors import status_for
from mlprod.serve.metrics import ServingMetrics
from mlprod.serve.model_pool import Served
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_body import too_large
from mlprod.serve.routing import CHAMPION
from mlprod.serve.service import Prediction, PredictionService

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]
_MAX_VERSION = 2**63 - 1
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
_INTEGERS = frozenset(d for d in _NUMPY_DTYPES if "INT" in d)
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_PLATFORMS = {"onnx": "onnxruntime_onnx"}

_NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
# Patterns are documented, not enforced by FastAPI, so a bad name still gets a protocol error body.
_Name = Annotated[
    str,
    Path(
        description="Model name (follows its routing plan) or NAME@ALIAS.",
        json_schema_extra={"pattern": f"^{_NAME_PATTERN}(@{_NAME_PATTERN})?$"},
    ),
]
_BareName = Annotated[
    str, Path(description="Model name.", json_schema_extra={"pattern": f"^{_NAME_PATTERN}$"})
]
_Version = Annotated[
    str,
    Path(
        description="Model version, a positive integer.", json_schema_extra={"pattern": "^[1-9][0-9]{0,17}$"}
    ),
]


@dataclass(frozen=True)
class _Tensor:
    """One decoded input tensor: its values in row order, ``None`` for a missing value."""

    name: str
    datatype: str
    rows: int
    values: list[Any]


def register_inference_protocol(
    app: FastAPI, service: PredictionService, metrics: ServingMetrics, authorize: Authorize, max_body: int
) -> None:
    """Add the Open Inference Protocol routes (see the module docstring) to ``app``."""

    @app.get("/v2", openapi_extra=_responses(SERVER_METADATA_SCHEMA))
    async def server_metadata(request: Request) -> Response:
        try:
            authorize(request, "read")
        except MlprodError as exc:
            return _error(exc)
        return JSONResponse({"name": "mlprod", "version": __version__, "extensions": EXTENSIONS})

    async def model_metadata(request: Request, target: str) -> Response:
        try:
            authorize(request, "read")
            served = await service.served(_answering_ref(service, target))
            versions = await run_in_threadpool(service.registry.versions, served.version.model)
        except MlprodError as exc:
            return _error(exc)
        return JSONResponse(_metadata(served, [v.version for v in versions]))

    async def model_ready(request: Request, target: str) -> Response:
        try:
            authorize(request, "read")
            served = await service.served(_answering_ref(service, target))
        except MlprodError as exc:
            return _error(exc)
        return JSONResponse({"name": served.version.model, "ready": True})

    async def infer(request: Request, target: str) -> Response:
        started = time.perf_counter()
        try:
            authorize(request, "predict")
            body, binary = await _read_body(request, max_body)
            parameters = _object(body.get("parameters", {}), '"parameters"')
            tensors = _decode_inputs(body.get("inputs"), binary)
            route_key = request.headers.get("x-route-key") or _text(
                parameters.get("route_key"), '"parameters.route_key"'
            )
            routing_view = {"columns": {t.name: t.values for t in tensors}}
            routed = service.route(target, routing_view, route_key)  # checked against who answers
            served = await service.served(routed.ref)
            binary_output = _binary_output(body, parameters, served.version.signature.output)
            payload: dict[str, Any] = {"columns": _columns(tensors, served)}
            if "as_of" in parameters:
                payload["as_of"] = parameters["as_of"]
            answer = await service.predict(
                target, payload, request_id=_text(body.get("id"), '"id"'), routed=routed
            )
        except MlprodError as exc:
            metrics.observe(
                model=_name_of(target), version=None, route="", status=status_for(exc)[0],
                seconds=time.perf_counter() - started,
            )  # fmt: skip
            return _error(exc)
        except Exception:
            metrics.observe(
                model=_name_of(target), version=None, route="", status=500,
                seconds=time.perf_counter() - started,
            )  # fmt: skip
            raise
        metrics.observe(
            model=answer.model, version=answer.version, route=answer.route, status=200,
            seconds=time.perf_counter() - started,
        )  # fmt: skip
        metrics.observe_prediction_rows(answer.model, answer.version, len(answer.predictions))
        return _infer_response(answer, served.version.signature.output, binary_output)

    @app.get("/v2/models/{name}", openapi_extra=_responses(MODEL_METADATA_SCHEMA))
    async def get_model(request: Request, name: _Name) -> Response:
        return await model_metadata(request, name)

    @app.get("/v2/models/{name}/versions/{version}", openapi_extra=_responses(MODEL_METADATA_SCHEMA))
    async def get_model_version(request: Request, name: _BareName, version: _Version) -> Response:
        return await _with_version(model_metadata, request, name, version)

    @app.get("/v2/models/{name}/ready", openapi_extra=_responses(MODEL_READY_SCHEMA))
    async def get_model_ready(request: Request, name: _Name) -> Response:
        return await model_ready(request, name)

    @app.get("/v2/models/{name}/versions/{version}/ready", openapi_extra=_responses(MODEL_READY_SCHEMA))
    async def get_model_version_ready(request: Request, name: _BareName, version: _Version) -> Response:
        return await _with_version(model_ready, request, name, version)

    @app.post("/v2/models/{name}/infer", openapi_extra=INFER_OPENAPI)
    async def post_infer(request: Request, name: _Name) -> Response:
        return await infer(request, name)

    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=INFER_OPENAPI)
    async def post_infer_version(request: Request, name: _BareName, version: _Version) -> Response:
        return await _with_version(infer, request, name, version)


# -- models -----------------------------------------------------------------------------------------


async def _with_version(
    handler: Callable[[Request, str], Awaitable[Response]], request: Request, name: str, version: str
) -> Response:
    """``handler`` for ``name/version``, or the protocol's error when the pair is not a reference."""
    try:
        target = _versioned(name, version)
    except MlprodError as exc:
        return _error(exc)
    return await handler(request, target)


def _versioned(name: str, version: str) -> str:
    if "@" in name:
        raise InvalidInputError(
            f"model {name!r}: address an alias as /v2/models/NAME@ALIAS, without /versions"
        )
    if not (version.isascii() and version.isdigit()) or not 1 <= int(version) <= _MAX_VERSION:
        raise InvalidInputError(f"model version must be a positive integer, got {version!r}")
    return f"{name}/{int(version)}"


def _answering_ref(service: PredictionService, target: str) -> str:
    """The reference whose version a bare name's metadata describes: its plan's champion."""
    parsed = parse_ref(target)
    if parsed.alias is not None or parsed.version is not None:
        return target
    plan = service.plan(parsed.name)
    return f"{parsed.name}{plan.champion if plan is not None else '@' + CHAMPION}"


def _metadata(served: Served, versions: list[int]) -> dict[str, Any]:
    signature = served.version.signature
    fmt = served.model.format
    return {
        "name": served.version.model,
        "versions": [str(v) for v in versions],
        "platform": _PLATFORMS.get(fmt, f"mlprod_{fmt.split('-', 1)[0]}"),
        "inputs": [{"name": f.name, "datatype": _advertised(f), "shape": [-1]} for f in signature.inputs],
        "outputs": [{"name": signature.output, "datatype": "FP64", "shape": [-1]}],
    }


def _advertised(spec: InputField) -> str:
    if spec.kind == "category":
        return "BYTES"
    return "INT64" if spec.integral else "FP64"


def _accepted_datatypes(spec: InputField | None) -> tuple[frozenset[str], str]:
    """The datatypes an input takes, and how to say so in an error."""
    if spec is None:  # an entity key, looked up in the online store
        return _INTEGERS | {"BYTES"}, "an entity key: BYTES or an integer datatype"
    if spec.kind == "category":
        if spec.dtype.lower().lstrip("u").startswith("int"):
            return _INTEGERS | {"BYTES"}, "a category: BYTES (or an integer datatype)"
        return frozenset({"BYTES"}), "a category: BYTES (strings)"
    expected = "INT64 or another numeric datatype" if spec.integral else "FP64 or another numeric datatype"
    return _INTEGERS | _FLOATS, f"a number: {expected}"


def _columns(tensors: list[_Tensor], served: Served) -> dict[str, list[Any]]:
    """The native API's ``columns`` for the tensors, after checking them against the signature."""
    signature = served.version.signature
    fields = {f.name: f for f in signature.inputs}
    accepted: frozenset[str] = served.extras.get("accepted_fields", frozenset(fields))
    takes = f"model {served.version.ref} takes {signature.input_names}"
    entity_keys = sorted(accepted - set(fields))
    if entity_keys:
        takes += f" (or the entity key(s) {entity_keys} in place of its online features)"
    unknown = [t.name for t in tensors if t.name not in accepted]
    if unknown:
        raise InvalidInputError(f"unknown input tensor(s) {unknown}: {takes}")
    if "online" not in served.extras:
        missing = [name for name in signature.input_names if name not in {t.name for t in tensors}]
        if missing:
            raise InvalidInputError(f"missing input tensor(s) {missing}: {takes}")
    rows = {t.name: t.rows for t in tensors}
    if len(set(rows.values())) > 1:
        raise InvalidInputError(f"input tensors hold different numbers of rows: {rows}")
    for t in tensors:
        allowed, expected = _accepted_datatypes(fields.get(t.name))
        if t.datatype not in allowed:
            raise InvalidInputError(
                f"input tensor {t.name!r} has datatype {t.datatype}, but {t.name!r} is {expected} "
                f"(see GET /v2/models/{served.version.model})"
            )
    return {t.name: t.values for t in tensors}


# -- requests ---------------------------------------------------------------------------------------


async def _read_body(request: Request, max_body: int) -> tuple[dict[str, Any], bytes | None]:
    """The JSON header of the request and, with the binary extension, the bytes after it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise too_large(max_body)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise too_large(max_body)
        chunks.append(chunk)
    raw = b"".join(chunks)
    header_length = request.headers.get(HEADER_LENGTH)
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
    if not isinstance(body, dict):
        raise InvalidInputError('request body must be a JSON object {"inputs": [...]}')
    return body, binary


def _decode_inputs(inputs: Any, binary: bytes | None) -> list[_Tensor]:
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError(
            '"inputs" must be a non-empty list of tensors {"name", "shape", "datatype", "data"}, '
            f"got {_kind(inputs)}"
        )
    tensors: list[_Tensor] = []
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


def _decode_input(i: int, item: Any, binary: bytes | None, offset: int) -> tuple[_Tensor, int]:
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
    size_param = _object(item.get("parameters", {}), f"{where}: parameters").get("binary_data_size")
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
    return _Tensor(name, datatype, size, _checked(values, datatype, where)), used


def _flatten(data: Any, where: str) -> list[Any]:
    """Row-major elements of ``data``, which may be nested lists."""
    if not isinstance(data, list):
        raise InvalidInputError(f"{where}: data must be a list, got {_kind(data)}")
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
    if datatype in _INTEGERS:
        info = np.iinfo(_NUMPY_DTYPES[datatype])
        for k, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int):
                hint = (
                    "; NaN and null (missing values) are only allowed in FP tensors" if _is_missing(v) else ""
                )
                raise InvalidInputError(
                    f"{where}, element {k}: {datatype} elements are integers, got {v!r}{hint}"
                )
            if not info.min <= v <= info.max:
                raise InvalidInputError(
                    f"{where}, element {k}: {v} is outside the {datatype} range [{info.min}, {info.max}]"
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


def _binary_output(body: Mapping[str, Any], parameters: Mapping[str, Any], output: str) -> bool:
    """Whether the answer's tensor travels as binary data; checks the requested outputs."""
    binary = _flag(parameters.get("binary_data_output", False), '"parameters.binary_data_output"')
    requested = body.get("outputs")
    if requested is None:
        return binary
    if not isinstance(requested, list):
        raise InvalidInputError(f'"outputs" must be a list of {{"name": ...}}, got {_kind(requested)}')
    for i, item in enumerate(requested):
        if not isinstance(item, dict) or item.get("name") != output:
            got = item.get("name") if isinstance(item, dict) else item
            raise InvalidInputError(f"outputs[{i}]: unknown output {got!r}; the model returns {output!r}")
        params = _object(item.get("parameters", {}), f"outputs[{i}].parameters")
        binary = _flag(params.get("binary_data", binary), f"outputs[{i}].parameters.binary_data")
    return binary


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be an object, got {_kind(value)}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"{what} must be true or false, got {value!r}")
    return value


def _text(value: Any, what: str) -> str | None:
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


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _name_of(target: str) -> str:
    return target.split("@", 1)[0].split("/", 1)[0]


# -- answers ----------------------------------------------------------------------------------------


def _infer_response(answer: Prediction, output: str, binary: bool) -> Response:
    parameters: dict[str, Any] = {"route": answer.route}
    if answer.feature_misses is not None:
        parameters["feature_misses"] = json.dumps(answer.feature_misses)
    tensor: dict[str, Any] = {"name": output, "datatype": "FP64", "shape": [len(answer.predictions)]}
    header = {
        "model_name": answer.model,
        "model_version": str(answer.version),
        "id": answer.request_id,
        "parameters": parameters,
        "outputs": [tensor],
    }
    if not binary:
        tensor["data"] = answer.predictions
        return Response(json.dumps(header), media_type="application/json")
    raw = np.asarray(answer.predictions, dtype="<f8").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(header).encode()
    return Response(
        head + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(head))}
    )


def _error(exc: MlprodError) -> JSONResponse:
    status, code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": str(exc), "code": code}, status_code=status, headers=headers)


# -- OpenAPI ----------------------------------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong; names the tensor or field."},
        "code": {"type": "string", "description": "Stable error code, as in the native API."},
    },
}
_PARAMETERS = {"type": "object", "description": "Free-form parameters."}
_METADATA_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
SERVER_METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
MODEL_METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _METADATA_TENSOR},
        "outputs": {"type": "array", "items": _METADATA_TENSOR},
    },
}
MODEL_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "ready"],
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
}
INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string", "description": "Request id, echoed in the answer (default: a new UUID)."},
        "parameters": {
            "type": "object",
            "description": "binary_data_output (bool), as_of (ISO-8601 time), route_key (sticky canary).",
        },
        "inputs": {
            "type": "array",
            "minItems": 1,
            "description": "One tensor per model input (see the model metadata).",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "shape": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 0},
                        "minItems": 1,
                        "maxItems": 2,
                        "description": "[n] or [n, 1]: one value per row.",
                    },
                    "datatype": {"type": "string", "enum": list(DATATYPES)},
                    "parameters": _PARAMETERS,
                    "data": {"type": "array", "description": "Row-major values, flat or nested."},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS},
            },
        },
    },
}
INFER_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": _PARAMETERS,
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "parameters": _PARAMETERS,
                    "data": {"type": "array", "items": {"type": "number"}},
                },
            },
        },
    },
}


def _responses(ok: dict[str, Any], **more: str) -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}

    return {
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            "401": error("No valid API token."),
            "403": error("The token lacks the scope."),
            "404": error("Unknown model, alias or version."),
            "422": error("Invalid model reference, or (infer) tensors that do not fit the model."),
            **{status: error(text) for status, text in more.items()},
        }
    }


INFER_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": INFER_REQUEST_SCHEMA}},
    },
    **_responses(INFER_RESPONSE_SCHEMA, **{"413": "Body larger than serve.max_body_bytes."}),
}
