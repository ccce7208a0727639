"""The native predict endpoint's work, shared by its FastAPI route and the ASGI fast path: check the
token, parse the body, predict, count the request in the metrics, encode the answer."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool

from mlprod.errors import InvalidInputError
from mlprod.serve.large_body import parse_large_json_object
from mlprod.serve.metrics import ServingMetrics
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_body import parse_json_object
from mlprod.serve.request_metrics import count_answer, count_failure
from mlprod.serve.service import INLINE_ROWS, Prediction, PredictionService

LARGE_BODY_BYTES = 64 * 1024  # larger bodies are parsed on a worker thread, in steps that let the loop run


class NativePredict:
    """``POST /v1/models/{target}/predict`` given the raw body and the two headers it reads."""

    def __init__(self, service: PredictionService, metrics: ServingMetrics, authorize: Authorize) -> None:
        self.service = service
        self.metrics = metrics
        self.authorize = authorize

    async def answer(
        self, target: str, raw_body: bytes, *, authorization: str | None, route_key: str | None
    ) -> bytes:
        """The JSON answer; raises ``MlprodError`` for a client error (after counting it)."""
        started = time.perf_counter()
        try:
            self.authorize.check_header(authorization, "predict")
            if len(raw_body) > LARGE_BODY_BYTES:
                limit = self.service.options.max_rows_per_request
                body = await run_in_threadpool(parse_large_json_object, raw_body, max_items=limit)
            else:
                body = parse_json_object(raw_body)
            answer = await self.service.predict(
                target,
                body,
                request_id=_optional_text(body, "id"),
                route_key=route_key or _optional_text(body, "route_key"),
            )
        except Exception as exc:  # counted with the status it will be answered with, then re-raised
            count_failure(self.metrics, target, exc, started)
            raise
        count_answer(self.metrics, answer, started)
        if len(answer.predictions) > INLINE_ROWS:
            return await run_in_threadpool(_encode, answer)
        return _encode(answer)


def _encode(answer: Prediction) -> bytes:
    return json.dumps(native_answer(answer)).encode()


def native_answer(answer: Prediction) -> dict[str, Any]:
    """The JSON answer (built field by field: ``asdict`` would deep-copy the logged rows)."""
    payload: dict[str, Any] = {
        "model": answer.model,
        "version": answer.version,
        "route": answer.route,
        "request_id": answer.request_id,
        "predictions": answer.predictions,
    }
    if answer.feature_misses is not None:
        payload["feature_misses"] = answer.feature_misses
    return payload


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidInputError(f'"{key}" must be a string, got {value!r}')
    text = str(value)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: valid JSON, not text the log or a hash can take
        raise InvalidInputError(f'"{key}" is not valid Unicode text') from None
    return text
