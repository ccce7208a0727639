"""The check every protected route makes: does the request's bearer token carry the scope?"""

from __future__ import annotations

from starlette.requests import Request

from mlprod.serve.auth import TokenVerifier


class Authorize:
    """``authorize(request, scope)`` raises ``UnauthorizedError`` / ``ForbiddenError``; without a
    verifier (tokens not required) every request passes."""

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self.verifier = verifier

    def __call__(self, request: Request, scope: str) -> None:
        self.check_header(request.headers.get("authorization"), scope)

    def check_header(self, authorization: str | None, scope: str) -> None:
        if self.verifier is not None:
            self.verifier.check(authorization, scope)


def authorizer(verifier: TokenVerifier | None) -> Authorize:
    return Authorize(verifier)
