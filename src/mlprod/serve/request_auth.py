"""The check every protected route makes: does the request's bearer token carry the scope?

``admin`` always needs a token. ``predict`` and ``read`` may be left open (``serve.auth = "auto"``
on loopback, or ``"never"``): an admin action changes what every client gets, so it must never be
open to whatever process, or web page, can reach the port.
"""

from __future__ import annotations

from starlette.requests import Request

from mlprod.serve.auth import TokenVerifier
from mlprod.serve.tokens import ApiToken


class Authorize:
    """``authorize(request, scope)`` raises ``UnauthorizedError`` / ``ForbiddenError``; scopes in
    ``open_scopes`` pass without a token."""

    def __init__(self, verifier: TokenVerifier, *, open_scopes: frozenset[str] = frozenset()) -> None:
        if "admin" in open_scopes:  # the server's own wiring is wrong: a bug, not a client error
            raise ValueError("the admin scope is never open")
        self.verifier = verifier
        self.open_scopes = open_scopes

    def __call__(self, request: Request, scope: str) -> ApiToken | None:
        return self.check_header(request.headers.get("authorization"), scope)

    def check_header(self, authorization: str | None, scope: str) -> ApiToken | None:
        """The token the request carries (None when ``scope`` is open)."""
        return None if scope in self.open_scopes else self.verifier.check(authorization, scope)


def authorizer(verifier: TokenVerifier, *, require_auth: bool) -> Authorize:
    """Every scope checked when tokens are required, else all but ``admin`` open."""
    return Authorize(verifier, open_scopes=frozenset() if require_auth else frozenset({"predict", "read"}))
