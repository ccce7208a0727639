"""The Open Inference Protocol (KServe v2) REST endpoints, so Triton and KServe clients work unchanged.

Endpoints (``{name}`` is a model name, which follows its routing plan, or ``name@alias``)::

    GET  /v2                                              server metadata                  read
    GET  /v2/models/{name}[/versions/{v}]                 model metadata                   read
    GET  /v2/models/{name}[/versions/{v}]/ready           200 when loadable, 404 unknown   read
    POST /v2/models/{name}[/versions/{v}]/infer           inference                        predict

Model metadata lists one input tensor per signature input, shape ``[-1]``: ``FP64`` for a number,
``BYTES`` for a category; and one ``FP64`` output, the probability. An integral input is ``INT64``
unless it may be missing (it had missing values in training, or is looked up in the online store):
then it is ``FP64`` too, so a client following the metadata can send ``NaN`` for a missing value and
get exactly the native API's answer for ``null``.

An inference request gives one tensor per input, named as in the metadata, of shape ``[n]`` or
``[n, 1]``. Any numeric datatype is taken for a number (an integral input refuses fractions); a
category takes ``BYTES`` (or an integer type when it was trained on integers). ``NaN`` or ``null`` in
a floating-point tensor is a missing value, as ``null`` is in the native API; infinities are refused.
A model served with online features also takes its entity keys (``BYTES`` or integers) in place of
the feature inputs. ``parameters`` may carry ``as_of`` and ``route_key`` as in the native API.

Tensors travel as JSON, or with the binary tensor data extension (``Inference-Header-Content-Length``
header, ``parameters.binary_data_size`` per input, ``binary_data_output`` or per-output
``binary_data`` for the answer), which tritonclient uses by default.

An infer body must be declared JSON (``Content-Type: application/json``, else 415, as on the native
API), except with the binary extension's header (any type) and, for tritonclient, which sends no
``Content-Type``, a body without one that carries no ``Origin`` (no web page sent it). Bodies over
64 KiB are parsed and checked on a worker thread, in steps: other requests are answered meanwhile.

Errors answer ``{"error": message, "code": code}`` as the protocol asks (plus the stable ``code`` of
the native API); the message names the tensor and what was expected. An unknown ``/v2/...`` path
answers 404 in the same shape. The infer routes are answered by the ASGI fast path
(``fast_path.py``) with ``protocol_infer.ProtocolInfer``; the routes here declare them for the
OpenAPI document and answer the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mlprod import __version__
from mlprod.errors import MlprodError
from mlprod.models import parse_ref
from mlprod.serve.model_pool import Served
from mlprod.serve.protocol_infer import ProtocolInfer, advertised_datatype, protocol_error, versioned_target
from mlprod.serve.protocol_tensors import DATATYPES, HEADER_LENGTH
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_body import too_large
from mlprod.serve.routing import CHAMPION
from mlprod.serve.service import PredictionService

__all__ = ["DATATYPES", "EXTENSIONS", "HEADER_LENGTH", "is_protocol_path", "register_inference_protocol"]

EXTENSIONS = ["binary_tensor_data"]
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


def register_inference_protocol(
    app: FastAPI, protocol: ProtocolInfer, authorize: Authorize, max_body: int
) -> None:
    """Add the Open Inference Protocol routes (see the module docstring) to ``app``."""
    service = protocol.service

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
        try:
            answer = await protocol.answer(
                target,
                lambda: _read_body(request, max_body),
                authorization=request.headers.get("authorization"),
                route_key=request.headers.get("x-route-key"),
                header_length=request.headers.get(HEADER_LENGTH),
                content_type=request.headers.get("content-type"),
                origin=request.headers.get("origin"),
            )
        except MlprodError as exc:
            return _error(exc)
        if answer.header_length is None:
            return Response(answer.body, media_type="application/json")
        return Response(
            answer.body,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(answer.header_length)},
        )

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


def is_protocol_path(path: str) -> bool:
    """Whether ``path`` is under ``/v2``, where every error answers in the protocol's shape."""
    return path == "/v2" or path.startswith("/v2/")


# -- models -----------------------------------------------------------------------------------------


async def _with_version(
    handler: Callable[[Request, str], Awaitable[Response]], request: Request, name: str, version: str
) -> Response:
    """``handler`` for ``name/version``, or the protocol's error when the pair is not a reference."""
    try:
        target = versioned_target(name, version)
    except MlprodError as exc:
        return _error(exc)
    return await handler(request, target)


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
        "inputs": [
            {"name": f.name, "datatype": advertised_datatype(f, served), "shape": [-1]}
            for f in signature.inputs
        ],
        "outputs": [{"name": signature.output, "datatype": "FP64", "shape": [-1]}],
    }


async def _read_body(request: Request, max_body: int) -> bytes:
    """The body, refused over ``max_body`` bytes (before it is read, when declared)."""
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
    return b"".join(chunks)


def _error(exc: MlprodError) -> JSONResponse:
    status, body = protocol_error(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


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
    **_responses(
        INFER_RESPONSE_SCHEMA,
        **{
            "413": "Body larger than serve.max_body_bytes, or a tensor over serve.max_rows_per_request rows.",
            "415": "A JSON body sent with a Content-Type other than application/json (see the module docs).",
        },
    ),
}
