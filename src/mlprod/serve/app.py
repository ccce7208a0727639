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
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from mlprod.errors import DatabaseError, InvalidInputError, MlprodError
from mlprod.models import parse_ref
from mlprod.serve.access_log import AccessLogMiddleware, AccessLogWriter
from mlprod.serve.admin_api import register_admin_api
from mlprod.serve.auth import TokenVerifier
from mlprod.serve.fast_path import PredictFastPath
from mlprod.serve.host_check import HostCheck, allowed_host_names
from mlprod.serve.http_errors import error_body, status_for
from mlprod.serve.inference_protocol import is_protocol_path, register_inference_protocol
from mlprod.serve.json_body import require_json
from mlprod.serve.method_not_allowed import allowed_methods
from mlprod.serve.metrics import CONTENT_TYPE, NO_PROTOCOL, OIP, ServingMetrics
from mlprod.serve.native_predict import NativePredict
from mlprod.serve.openapi_parts import AUTH_ERRORS, ModelName, ModelRef, ModelVersion, error_responses
from mlprod.serve.prediction_log import PredictionLogWriter
from mlprod.serve.protocol_infer import ProtocolInfer
from mlprod.serve.request_auth import authorizer
from mlprod.serve.request_body import read_body
from mlprod.serve.routing import SHADOW
from mlprod.serve.service import PredictionService, ServeOptions, ShadowObserver
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace

log = logging.getLogger(__name__)


def create_app(
    workspace: Workspace,
    *,
    options: ServeOptions | None = None,
    require_auth: bool | None = None,
    alias_refresh_seconds: float | None = None,
    host: str | None = None,
    access_log: str | None = None,
) -> FastAPI:
    """Build the server for ``workspace``; the prediction log is flushed when the app shuts down.

    ``require_auth`` (tokens for predictions and reads; admin always needs one) defaults to
    ``serve.auth = "always"``; ``mlprod serve`` decides it from the address it binds (see
    ``mlprod.serve.auth.auth_required``). ``host`` is that address (default ``serve.host``): requests
    must name it, or loopback, or one of ``serve.allowed_hosts``, in their ``Host`` header.
    ``access_log`` is a file to append one JSON line per request to, or ``"-"`` for stdout
    (``mlprod.serve.access_log``); it is opened here, so a bad path fails before serving.
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
        write_ahead=log_config.write_ahead,
        fsync="always" if log_config.fsync == "always" else "never",
        start=False,
    )
    service = PredictionService(workspace, options, prediction_log)
    access = None if access_log is None else AccessLogWriter.open(access_log)
    metrics = ServingMetrics()
    metrics.set_gauge_source(
        "mlprod_models_loaded", "Model versions in memory.", lambda: [({}, float(len(service.pool.loaded())))]
    )
    metrics.set_gauge_source(
        "mlprod_models_memory_bytes",
        "Estimated memory of the loaded model versions.",
        lambda: [({}, float(service.pool.memory_bytes))],
    )
    service.shadow_observer = _shadow_metrics(metrics.for_protocol(NO_PROTOCOL))
    service.shadow_drop_observer = metrics.observe_shadow_dropped
    verifier = TokenVerifier(TokenStore(workspace), refresh_seconds=options.refresh_seconds)
    authorize = authorizer(verifier, require_auth=require_auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prediction_log.start()
        if access is not None:
            access.start()
        try:
            await run_in_threadpool(service.reload_routes)
            await run_in_threadpool(verifier.refresh)
            yield
        finally:
            await service.drain_shadows()
            service.close()
            try:
                prediction_log.close()
            finally:
                if access is not None:
                    access.close()

    app = FastAPI(
        title="mlprod",
        summary="Online prediction: native API and Open Inference Protocol v2.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.prediction_log = prediction_log
    app.state.metrics = metrics

    @app.exception_handler(MlprodError)
    async def _mlprod_error(_request: Request, exc: MlprodError) -> JSONResponse:
        status, code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(code, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers = {**(headers or {}), "Allow": allowed_methods(app, request.scope)}
        if is_protocol_path(request.url.path):  # the Open Inference Protocol's error shape
            body: dict[str, Any] = {"error": str(message), "code": "http_error"}
        else:
            body = error_body("http_error", str(message))
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

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

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."},
            **error_responses(**AUTH_ERRORS),
        },
    )
    async def prometheus_metrics(request: Request) -> Response:
        authorize(request, "read")
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", responses=error_responses(**AUTH_ERRORS))
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
        require_json(request.headers.get("content-type"))
        answer = await native.answer(
            target,
            await read_body(request, max_body),
            authorization=request.headers.get("authorization"),
            route_key=request.headers.get("x-route-key"),
        )
        return Response(answer, media_type="application/json")

    @app.post("/v1/models/{ref}/predict", openapi_extra=NATIVE_PREDICT_OPENAPI)
    async def predict_ref(request: Request, ref: ModelRef) -> Response:
        if parse_ref(ref).version is not None:
            raise InvalidInputError(f"use /v1/models/NAME/versions/VERSION/predict for {ref!r}")
        return await predict(request, ref)

    @app.post("/v1/models/{name}/versions/{version}/predict", openapi_extra=NATIVE_PREDICT_OPENAPI)
    async def predict_version(request: Request, name: ModelName, version: ModelVersion) -> Response:
        return await predict(request, f"{name}/{version}")

    protocol = ProtocolInfer(service, metrics.for_protocol(OIP), authorize)
    app.add_middleware(PredictFastPath, predictor=native, max_body=max_body, protocol=protocol)
    register_admin_api(app, service, authorize)
    register_inference_protocol(app, protocol, authorize, max_body)
    serve_settings = workspace.config.serve
    app.add_middleware(
        HostCheck, allowed=allowed_host_names(host or serve_settings.host, serve_settings.allowed_hosts)
    )  # added after the others: it runs before the fast path
    if access is not None:  # outermost: it times and records every answer, refusals included
        app.add_middleware(AccessLogMiddleware, writer=access)
    return app


def _shadow_metrics(metrics: ServingMetrics) -> ShadowObserver:
    """Count each shadow copy under ``route="shadow"``, with the status its answer would have had."""

    def observe(model: str, version: int | None, error: Exception | None, seconds: float) -> None:
        status = 500 if error is not None else 200
        if isinstance(error, MlprodError):
            status = status_for(error)[0]
        metrics.observe(model=model, version=version, route=SHADOW, status=status, seconds=seconds)

    return observe


def _ping(workspace: Workspace) -> None:
    try:
        with workspace.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseError(f"metadata database unavailable: {str(exc).splitlines()[0]}") from exc


_ROW = {"type": "object", "additionalProperties": {"type": ["number", "string", "integer", "null"]}}
_PREDICT_ERRORS = error_responses(
    **AUTH_ERRORS,
    **{
        "404": "Unknown model, alias or version.",
        "413": "Body over serve.max_body_bytes, or rows over serve.max_rows_per_request.",
        "415": "Body not sent as 'Content-Type: application/json'.",
        "422": "Inputs do not match the model's signature; the message names the field.",
        "503": "The prediction log cannot record the answer (disk full): it is not sent.",
    },
)
NATIVE_PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "anyOf": [{"required": ["rows"]}, {"required": ["columns"]}],
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
    "responses": {"200": {"description": "Predictions, one per row."}, **_PREDICT_ERRORS},
}
