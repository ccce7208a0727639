"""The HTTP prediction server (ASGI, FastAPI): native API, Open Inference Protocol v2, admin, metrics.

Endpoints (scopes apply when API tokens are required, see ``mlprod.serve.auth``):
    GET    /v2/health/live, /v2/health/ready          liveness, readiness (no token)
    GET    /v1/models                                 registered models and aliases      read
    POST   /v1/models/{ref}/predict                   ``ref`` is ``name`` (routed) or    predict
                                                      ``name@alias``
    POST   /v1/models/{name}/versions/{v}/predict     one version                        predict
    /v2/models/...                                    Open Inference Protocol v2         predict, read
    GET    /v1/admin/routes[/{name}[/history]]        routing plans and their changes    admin
    PUT    /v1/admin/routes/{name}, DELETE ...        change a routing plan              admin
    GET    /v1/admin/loaded                           models in memory                   admin
    GET    /metrics                                   Prometheus text format             read

A predict body is ``{"rows": [{field: value, ...}, ...]}`` or ``{"columns": {field: [...], ...}}``,
with optional ``"id"`` (the request id), ``"as_of"`` (time of the online feature lookup) and
``"route_key"`` (sticky canary routing; or the ``X-Route-Key`` header). The answer is
``{"model", "version", "route", "request_id", "predictions"}`` plus ``"feature_misses"`` when some
entity was not in the online store. Every prediction is appended to the prediction log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from mlprod.errors import DatabaseError, InvalidInputError, MlprodError
from mlprod.models import parse_ref
from mlprod.serve.admin_api import register_admin_api
from mlprod.serve.auth import TokenVerifier
from mlprod.serve.fast_path import PredictFastPath
from mlprod.serve.http_errors import error_body, status_for
from mlprod.serve.inference_protocol import is_protocol_path, register_inference_protocol
from mlprod.serve.metrics import CONTENT_TYPE, ServingMetrics
from mlprod.serve.native_predict import NativePredict
from mlprod.serve.prediction_log import PredictionLogWriter
from mlprod.serve.protocol_infer import ProtocolInfer
from mlprod.serve.request_auth import authorizer
from mlprod.serve.request_body import read_body
from mlprod.serve.service import PredictionService, ServeOptions
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace

log = logging.getLogger(__name__)


def create_app(
    workspace: Workspace,
    *,
    options: ServeOptions | None = None,
    require_auth: bool | None = None,
    alias_refresh_seconds: float | None = None,
) -> FastAPI:
    """Build the server for ``workspace``; the prediction log is flushed when the app shuts down.

    ``require_auth`` defaults to ``serve.auth = "always"``; ``mlprod serve`` decides it from the
    address it binds (see ``mlprod.serve.auth.auth_required``).
    """
    if options is None:
        overrides = {} if alias_refresh_seconds is None else {"refresh_seconds": alias_refresh_seconds}
        options = ServeOptions.from_config(workspace, **overrides)
    if require_auth is None:
        require_auth = workspace.config.serve.auth == "always"
    log_config = workspace.config.prediction_log
    max_body = workspace.config.serve.max_body_bytes
    prediction_log = PredictionLogWriter(
        workspace.prediction_log_dir,
        flush_interval=log_config.flush_interval_seconds,
        max_buffered_rows=log_config.max_buffered_rows,
        start=False,
    )
    service = PredictionService(workspace, options, prediction_log)
    metrics = ServingMetrics()
    metrics.set_gauge_source(
        "mlprod_models_loaded", "Model versions in memory.", lambda: [({}, float(len(service.pool.loaded())))]
    )
    metrics.set_gauge_source(
        "mlprod_models_memory_bytes",
        "Estimated memory of the loaded model versions.",
        lambda: [({}, float(service.pool.memory_bytes))],
    )
    verifier = TokenVerifier(TokenStore(workspace), refresh_seconds=options.refresh_seconds)
    authorize = authorizer(verifier if require_auth else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prediction_log.start()
        try:
            await run_in_threadpool(service.reload_routes)
            if authorize.verifier is not None:
                await run_in_threadpool(authorize.verifier.refresh)
            yield
        finally:
            await service.drain_shadows()
            service.close()
            prediction_log.close()

    app = FastAPI(
        title="mlprod",
        summary="Online prediction: native API and Open Inference Protocol v2.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(MlprodError)
    async def _mlprod_error(_request: Request, exc: MlprodError) -> JSONResponse:
        status, code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(code, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        if is_protocol_path(request.url.path):  # the Open Inference Protocol's error shape
            return JSONResponse({"error": str(message), "code": "http_error"}, status_code=exc.status_code)
        return JSONResponse(error_body("http_error", str(message)), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body("invalid_input", problems), status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        message = f"internal error: {type(exc).__name__}; see the server log"
        return JSONResponse(error_body("internal_error", message), status_code=500)

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        """Ready when the metadata database answers (models are resolved through it)."""
        try:
            await run_in_threadpool(_ping, workspace)
        except MlprodError as exc:
            return JSONResponse({"ready": False, "reason": str(exc)}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        authorize(request, "read")
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request, "read")
        summaries = await run_in_threadpool(service.registry.models)
        return {
            "models": [
                {"name": s.name, "latest_version": s.latest_version, "aliases": s.aliases} for s in summaries
            ]
        }

    native = NativePredict(service, metrics, authorize)

    async def predict(request: Request, target: str) -> Response:
        answer = await native.answer(
            target,
            await read_body(request, max_body),
            authorization=request.headers.get("authorization"),
            route_key=request.headers.get("x-route-key"),
        )
        return Response(answer, media_type="application/json")

    @app.post("/v1/models/{ref}/predict", openapi_extra=NATIVE_PREDICT_OPENAPI)
    async def predict_ref(request: Request, ref: str) -> Response:
        if parse_ref(ref).version is not None:
            raise InvalidInputError(f"use /v1/models/NAME/versions/VERSION/predict for {ref!r}")
        return await predict(request, ref)

    @app.post("/v1/models/{name}/versions/{version}/predict", openapi_extra=NATIVE_PREDICT_OPENAPI)
    async def predict_version(request: Request, name: str, version: int) -> Response:
        if not 1 <= version < 2**63:  # the database's integer range
            raise InvalidInputError(f"model version must be a positive integer, got {version}")
        return await predict(request, f"{name}/{version}")

    protocol = ProtocolInfer(service, metrics, authorize)
    app.add_middleware(PredictFastPath, predictor=native, max_body=max_body, protocol=protocol)
    register_admin_api(app, service, authorize)
    register_inference_protocol(app, protocol, authorize, max_body)
    return app


def _ping(workspace: Workspace) -> None:
    try:
        with workspace.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseError(f"metadata database unavailable: {str(exc).splitlines()[0]}") from exc


_ROW = {"type": "object", "additionalProperties": {"type": ["number", "string", "integer", "null"]}}
NATIVE_PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "Request id (default: a new UUID)."},
                        "rows": {"type": "array", "items": _ROW, "description": "One object per prediction."},
                        "columns": {
                            "type": "object",
                            "additionalProperties": {"type": "array"},
                            "description": "Equally long lists, one per input.",
                        },
                        "as_of": {
                            "type": "string",
                            "format": "date-time",
                            "description": "Time of the online feature lookup (default: now).",
                        },
                        "route_key": {"type": "string", "description": "Sticky canary routing key."},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {"description": "Predictions, one per row."},
        "401": {"description": "No valid API token."},
        "403": {"description": "The token lacks the predict scope."},
        "404": {"description": "Unknown model, alias or version."},
        "413": {"description": "Body larger than serve.max_body_bytes."},
        "422": {"description": "Inputs do not match the model's signature; the message names the field."},
    },
}
