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
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_body import read_json
from mlprod.serve.route_store import RouteChange
from mlprod.serve.routing import RoutePlan, check_text
from mlprod.serve.service import PredictionService
from mlprod.serve.tokens import ApiToken

ROUTE_PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "champion": {"type": "string", "description": "'@ALIAS' or '/VERSION' (default '@champion')."},
        "canary": {"type": ["string", "null"], "description": "'@ALIAS' or '/VERSION'."},
        "canary_percent": {"type": "number", "minimum": 0, "maximum": 100},
        "shadows": {"type": "array", "items": {"type": "string"}},
        "sticky_key": {"type": ["string", "null"], "description": "Request field that keeps routing sticky."},
        "why": {"type": "string", "description": "Recorded in the change history."},
    },
    "additionalProperties": False,
}


def register_admin_api(app: FastAPI, service: PredictionService, authorize: Authorize) -> None:
    @app.get("/v1/admin/routes")
    async def list_routes(request: Request) -> dict[str, Any]:
        authorize(request, "admin")
        plans = await run_in_threadpool(service.route_store.all)
        return {"routes": {name: {"revision": rev, **plan.to_dict()} for name, (rev, plan) in plans.items()}}

    @app.get("/v1/admin/routes/{name}")
    async def get_route(request: Request, name: str) -> dict[str, Any]:
        authorize(request, "admin")
        check_name(name, "model")
        plan = await run_in_threadpool(service.route_store.get, name)
        if plan is None:
            raise NotFoundError(f"model {name!r} has no routing plan")
        return {"model": name, **plan.to_dict()}

    @app.put(
        "/v1/admin/routes/{name}",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": ROUTE_PLAN_SCHEMA}}}
        },
    )
    async def put_route(request: Request, name: str) -> dict[str, Any]:
        who = _who(authorize(request, "admin"))
        check_name(name, "model")
        body = await read_json(request, service.workspace.config.serve.max_body_bytes)
        why = body.pop("why", "")
        if not isinstance(why, str):
            raise InvalidInputError(f'"why" must be a string, got {why!r}')
        check_text(why, '"why"')
        plan = RoutePlan.from_dict(name, body)
        change = await run_in_threadpool(lambda: service.set_plan(plan, why=why, who=who))
        return _change(change)

    @app.delete("/v1/admin/routes/{name}")
    async def delete_route(request: Request, name: str, why: str = "") -> dict[str, Any]:
        who = _who(authorize(request, "admin"))
        check_name(name, "model")
        check_text(why, '"why"')
        change = await run_in_threadpool(lambda: service.clear_plan(name, why=why, who=who))
        return _change(change)

    @app.get("/v1/admin/routes/{name}/history")
    async def route_history(request: Request, name: str) -> dict[str, Any]:
        authorize(request, "admin")
        check_name(name, "model")
        changes = await run_in_threadpool(service.route_store.history, name)
        return {"model": name, "changes": [_change(c) for c in changes]}

    @app.get("/v1/admin/loaded")
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


def _who(token: ApiToken | None) -> str | None:
    """A change through the API is recorded under the token's name (else the server's user)."""
    return None if token is None else f"token:{token.name}"


def _change(change: RouteChange) -> dict[str, Any]:
    data = asdict(change)
    data["at"] = change.at.isoformat()
    return data
