"""The HTTP prediction server (ASGI, FastAPI).

Endpoints:
    GET  /v2/health/live, /v2/health/ready     liveness and readiness (Open Inference Protocol)
    GET  /v1/models                            registered models with their aliases
    POST /v1/models/{ref}/predict              ``ref`` is ``name`` or ``name@alias``
    POST /v1/models/{name}/versions/{v}/predict

A predict body is ``{"rows": [{field: value, ...}, ...]}`` or ``{"columns": {field: [...], ...}}``;
the answer is ``{"model", "version", "request_id", "predictions"}``. Every prediction is appended to
the prediction log.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
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

from mlprod.errors import DatabaseError, InvalidInputError, MlprodError, PayloadTooLargeError
from mlprod.models import LoadedModel, Registry, parse_ref
from mlprod.serve.http_errors import error_body, status_for
from mlprod.serve.model_cache import ModelCache
from mlprod.serve.prediction_log import PredictionLogWriter
from mlprod.workspace import Workspace

log = logging.getLogger(__name__)
INLINE_ROWS = 64  # larger requests are predicted on a worker thread, off the event loop


def create_app(workspace: Workspace, *, alias_refresh_seconds: float = 2.0) -> FastAPI:
    """Build the server for ``workspace``; the prediction log is flushed when the app shuts down."""
    registry = Registry(workspace)
    cache = ModelCache(registry, refresh_seconds=alias_refresh_seconds)
    log_config = workspace.config.prediction_log
    max_body = workspace.config.serve.max_body_bytes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.prediction_log = PredictionLogWriter(
            workspace.prediction_log_dir,
            flush_interval=log_config.flush_interval_seconds,
            max_buffered_rows=log_config.max_buffered_rows,
        )
        try:
            yield
        finally:
            app.state.prediction_log.close()

    app = FastAPI(title="mlprod", lifespan=lifespan)

    @app.exception_handler(MlprodError)
    async def _mlprod_error(_request: Request, exc: MlprodError) -> JSONResponse:
        status, code = status_for(exc)
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else exc.detail
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

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        summaries = await run_in_threadpool(registry.models)
        return {
            "models": [
                {"name": s.name, "latest_version": s.latest_version, "aliases": s.aliases} for s in summaries
            ]
        }

    async def predict(request: Request, ref: str) -> Response:
        started = time.perf_counter()
        body = await _read_json(request, max_body)
        model = cache.peek(ref)
        if model is None:
            model = await run_in_threadpool(cache.get, ref)
        if _row_count(body) > INLINE_ROWS:
            rows, predictions = await run_in_threadpool(_predict, model, body)
        else:
            rows, predictions = _predict(model, body)
        request_id = str(body.get("id") or uuid.uuid4())
        latency_ms = (time.perf_counter() - started) * 1000
        request.app.state.prediction_log.append(
            request_id=request_id,
            model=model.model,
            version=model.version,
            route=ref,
            inputs=rows,
            predictions=predictions,
            latency_ms=latency_ms,
        )
        payload = {
            "model": model.model,
            "version": model.version,
            "request_id": request_id,
            "predictions": predictions,
        }
        return Response(json.dumps(payload), media_type="application/json")

    @app.post("/v1/models/{ref}/predict")
    async def predict_ref(request: Request, ref: str) -> Response:
        if parse_ref(ref).version is not None:
            raise InvalidInputError(f"use /v1/models/NAME/versions/VERSION/predict for {ref!r}")
        return await predict(request, ref)

    @app.post("/v1/models/{name}/versions/{version}/predict")
    async def predict_version(request: Request, name: str, version: int) -> Response:
        return await predict(request, f"{name}/{version}")

    return app


async def _read_json(request: Request, max_body: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise _too_large(max_body)
    raw = await request.body()
    if len(raw) > max_body:
        raise _too_large(max_body)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError('request body must be a JSON object with "rows" or "columns"')
    return body


def _row_count(body: dict[str, Any]) -> int:
    data = body.get("rows", body.get("columns"))
    if isinstance(data, dict):
        data = next(iter(data.values()), [])
    return len(data) if isinstance(data, list) else 0


def _ping(workspace: Workspace) -> None:
    try:
        with workspace.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseError(f"metadata database unavailable: {str(exc).splitlines()[0]}") from exc


def _predict(model: LoadedModel, body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[float]]:
    if "rows" in body:
        rows = body["rows"]
        predictions = model.predict_rows(rows)
    elif "columns" in body:
        columns = body["columns"]
        predictions = model.predict_columns(columns)
        names = model.signature.input_names
        rows = [
            dict(zip(names, values, strict=True)) for values in zip(*(columns[n] for n in names), strict=True)
        ]
    else:
        raise InvalidInputError(
            'request body needs "rows" (a list of objects) or "columns" (an object of lists)'
        )
    return rows, predictions.tolist()


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body is larger than the limit of {limit} bytes (config: serve.max_body_bytes)"
    )
