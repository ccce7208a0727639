"""Admin routes: read and change routing plans at runtime, see what is loaded. Scope ``admin``.

A change is stored in the metadata database with its history (like ``mlprod routes set``) and takes
effect on this server at once; other servers of the workspace pick it up within ``refresh_seconds``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.names import check_name
from mlprod.serve.json_body import require_json
from mlprod.serve.openapi_parts import AUTH_ERRORS, ROUTE_TARGET_PATTERN, ModelName, error_responses
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_body import read_json
from mlprod.serve.route_store import RouteChange
from mlprod.serve.routing import RoutePlan, check_text
from mlprod.serve.service import PredictionService
from mlprod.serve.tokens import ApiToken

ROUTE_PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "champion": {
            "type": "string",
            "pattern": ROUTE_TARGET_PATTERN,
            "description": "'@ALIAS' or '/VERSION' (default '@champion').",
        },
        "canary": {
            "type": ["string", "null"],
            "pattern": ROUTE_TARGET_PATTERN,
            "description": "'@ALIAS' or '/VERSION'.",
        },
        "canary_percent": {"type": "number", "minimum": 0, "maximum": 100},
        "shadows": {"type": "array", "items": {"type": "string", "pattern": ROUTE_TARGET_PATTERN}},
        "sticky_key": {
            "type": ["string", "null"],
            "pattern": r"\S",
            "description": "Request field that keeps routing sticky.",
        },
        "why": {"type": "string", "description": "Recorded in the change history."},
    },
    "additionalProperties": False,
    "if": {"required": ["canary_percent"], "properties": {"canary_percent": {"exclusiveMinimum": 0}}},
    "then": {"required": ["canary"], "properties": {"canary": {"type": "string"}}},
}
_READ = error_responses(
    **AUTH_ERRORS, **{"404": "Model without a routing plan.", "422": "Invalid model name."}
)
_CHANGE = error_responses(
    **AUTH_ERRORS,
    **{
        "404": "Unknown model, alias or version (a target of the plan).",
        "413": "Body larger than serve.max_body_bytes.",
        "415": "Body not sent as 'Content-Type: application/json'.",
        "422": "Invalid model name or plan; the message names the field.",
    },
)


def register_admin_api(app: FastAPI, service: PredictionService, authorize: Authorize) -> None:
    @app.get("/v1/admin/routes", responses=error_responses(**AUTH_ERRORS))
    async def list_routes(request: Request) -> dict[str, Any]:
        authorize(request, "admin")
        plans = await run_in_threadpool(service.route_store.all)
        return {"routes": {name: {"revision": rev, **plan.to_dict()} for name, (rev, plan) in plans.items()}}

    @app.get("/v1/admin/routes/{name}", responses=_READ)
    async def get_route(request: Request, name: ModelName) -> dict[str, Any]:
        authorize(request, "admin")
        check_name(name, "model")
        plan = await run_in_threadpool(service.route_store.get, name)
        if plan is None:
            raise NotFoundError(f"model {name!r} has no routing plan")
        return {"model": name, **plan.to_dict()}

    @app.put(
        "/v1/admin/routes/{name}",
        responses=_CHANGE,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": ROUTE_PLAN_SCHEMA}}}
        },
    )
    async def put_route(request: Request, name: ModelName) -> dict[str, Any]:
        who = _who(authorize(request, "admin"))
        check_name(name, "model")
        require_json(request.headers.get("content-type"))
        body = await read_json(request, service.workspace.config.serve.max_body_bytes)
        why = body.pop("why", "")
        if not isinstance(why, str):
            raise InvalidInputError(f'"why" must be a string, got {why!r}')
        check_text(why, '"why"')
        plan = RoutePlan.from_dict(name, body)
        change = await run_in_threadpool(_set_plan, service, plan, why, who)
        return _change(change)

    @app.delete("/v1/admin/routes/{name}", responses=_READ)
    async def delete_route(request: Request, name: ModelName, why: str = "") -> dict[str, Any]:
        who = _who(authorize(request, "admin"))
        check_name(name, "model")
        check_text(why, '"why"')
        change = await run_in_threadpool(lambda: service.clear_plan(name, why=why, who=who))
        return _change(change)

    @app.get(
        "/v1/admin/routes/{name}/history",
        responses=error_responses(**AUTH_ERRORS, **{"422": "Invalid model name."}),
    )
    async def route_history(request: Request, name: ModelName) -> dict[str, Any]:
        authorize(request, "admin")
        check_name(name, "model")
        changes = await run_in_threadpool(service.route_store.history, name)
        return {"model": name, "changes": [_change(c) for c in changes]}

    @app.get("/v1/admin/loaded", responses=error_responses(**AUTH_ERRORS))
    async def loaded(request: Request) -> dict[str, Any]:
        authorize(request, "admin")
        pool = service.pool
        return {
            "memory_budget_bytes": pool.memory_budget_bytes,
            "memory_bytes": pool.memory_bytes,
            "loads": pool.loads,
            "evictions": pool.evictions,
            "models": [
                {
                    "model": s.version.model,
                    "version": s.version.version,
                    "format": s.model.format,
                    "memory_bytes": s.memory_bytes,
                }
                for s in pool.loaded()
            ],
        }


def _set_plan(service: PredictionService, plan: RoutePlan, why: str, who: str) -> RouteChange:
    """Store ``plan``; the plan already in force is answered with its last change (PUT is idempotent)."""
    if service.route_store.get(plan.model) == plan:
        return service.route_store.history(plan.model)[-1]
    return service.set_plan(plan, why=why, who=who)


def _who(token: ApiToken | None) -> str:
    """A change through the API is recorded under the name of the token that made it."""
    if token is None:  # the admin scope is never open: a bug in the server's wiring
        raise RuntimeError("an admin action reached its handler without a token")
    return f"token:{token.name}"


def _change(change: RouteChange) -> dict[str, Any]:
    data = asdict(change)
    data["at"] = change.at.isoformat()
    return data
