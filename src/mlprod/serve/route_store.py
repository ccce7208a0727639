"""Routing plans in the metadata database, with a history row for every change (who, when, why,
before and after), so a rollout can be audited and replayed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import registered_models, serving_route_changes, serving_routes
from mlprod.models import Registry
from mlprod.serve.routing import RoutePlan
from mlprod.workspace import Workspace


@dataclass(frozen=True)
class RouteChange:
    model: str
    revision: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime
    who: str
    why: str


class RouteStore:
    """Read and change the routing plans of a workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._registry = Registry(workspace)

    def get(self, model: str) -> RoutePlan | None:
        with self._ws.engine.connect() as conn:
            row = conn.execute(serving_routes.select().where(serving_routes.c.model == model)).first()
        return None if row is None else RoutePlan.from_dict(model, row.plan)

    def all(self) -> dict[str, tuple[int, RoutePlan]]:
        """Every plan with its revision (what a server keeps in memory)."""
        with self._ws.engine.connect() as conn:
            rows = conn.execute(serving_routes.select()).all()
        return {row.model: (row.revision, RoutePlan.from_dict(row.model, row.plan)) for row in rows}

    def set(self, plan: RoutePlan, *, why: str = "", who: str | None = None) -> RouteChange:
        """Store ``plan`` after checking every target resolves to a registered version."""
        for target in (plan.champion, plan.canary, *plan.shadows):
            if target is not None:
                self._registry.get(plan.target_ref(target))
        return self._change(plan.model, plan.to_dict(), why, who)

    def clear(self, model: str, *, why: str = "", who: str | None = None) -> RouteChange:
        """Remove a model's plan: its traffic goes back to ``@champion`` alone."""
        if self.get(model) is None:
            raise NotFoundError(f"model {model!r} has no routing plan")
        return self._change(model, None, why, who)

    def history(self, model: str) -> list[RouteChange]:
        query = (
            serving_route_changes.select()
            .where(serving_route_changes.c.model == model)
            .order_by(serving_route_changes.c.id)
        )
        with self._ws.engine.connect() as conn:
            return [
                RouteChange(r.model, r.revision, r.before, r.after, r.at, r.who, r.why)
                for r in conn.execute(query)
            ]

    def _change(self, model: str, after: dict[str, Any] | None, why: str, who: str | None) -> RouteChange:
        """Store the change; ``who`` defaults to the user running this process."""
        now = datetime.now(UTC)
        with self._ws.engine.begin() as conn:
            if (
                conn.scalar(sa.select(registered_models.c.name).where(registered_models.c.name == model))
                is None
            ):
                raise NotFoundError(f"no registered model named {model!r}")
            row = conn.execute(
                serving_routes.select().where(serving_routes.c.model == model).with_for_update()
            ).first()
            before = None if row is None else row.plan
            if before == after:
                raise InvalidInputError(f"model {model!r} already has this routing plan: nothing changed")
            last = conn.scalar(
                sa.select(sa.func.max(serving_route_changes.c.revision)).where(
                    serving_route_changes.c.model == model
                )
            )
            revision = (last or 0) + 1
            if row is not None:
                conn.execute(serving_routes.delete().where(serving_routes.c.model == model))
            if after is not None:
                conn.execute(
                    serving_routes.insert().values(model=model, revision=revision, plan=after, updated_at=now)
                )
            who = who or current_user()
            conn.execute(
                serving_route_changes.insert().values(
                    model=model, revision=revision, before=before, after=after, at=now, who=who, why=why
                )
            )
        return RouteChange(model, revision, before, after, now, who, why)
