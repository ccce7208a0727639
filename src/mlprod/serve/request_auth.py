"""The check every protected route makes: does the request's bearer token carry the scope?"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from mlprod.serve.auth import TokenVerifier

Authorize = Callable[[Request, str], None]


def authorizer(verifier: TokenVerifier | None) -> Authorize:
    """A check against ``verifier``; without one (tokens not required) every request passes."""
    if verifier is None:

        def allow(_request: Request, _scope: str) -> None:
            return None

        return allow

    def check(request: Request, scope: str) -> None:
        verifier.check(request.headers.get("authorization"), scope)

    return check
