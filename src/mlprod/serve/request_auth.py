"""The check every protected route makes: does the request's bearer token carry the scope?"""

from __future__ import annotations

from starlette.requests import Request

from mlprod.serve.auth import TokenVerifier
from mlprod.serve.tokens import ApiToken


class Authorize:
    """``authorize(request, scope)`` raises ``UnauthorizedError`` / ``ForbiddenError``; without a
    verifier (tokens not required) every request passes."""

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self.verifier = verifier

    def __call__(self, request: Request, scope: str) -> ApiToken | None:
        return self.check_header(request.headers.get("authorization"), scope)

    def check_header(self, authorization: str | None, scope: str) -> ApiToken | None:
        """The token the request carries (None when tokens are not required)."""
        return None if self.verifier is None else self.verifier.check(authorization, scope)


def authorizer(verifier: TokenVerifier | None) -> Authorize:
    return Authorize(verifier)
