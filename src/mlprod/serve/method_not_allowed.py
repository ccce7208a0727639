"""The ``Allow`` header of a 405: every method some route serves at the requested path.

Starlette answers 405 from the first route whose path matches, naming only that route's methods;
a path served by several routes (``GET``, ``PUT``, ``DELETE /v1/admin/routes/{name}``) needs them all.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Match, Route


def allowed_methods(app: Starlette, scope: MutableMapping[str, Any]) -> str:
    """The ``Allow`` value for ``scope``'s path: the methods of every route matching it, sorted."""
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] is not Match.NONE:
            methods.update(route.methods)
    return ", ".join(sorted(methods))
