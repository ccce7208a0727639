"""Checking API tokens on requests, and deciding when the server requires them.

``TokenVerifier`` keeps the active tokens in memory, so a request costs one sha256 and one dict
lookup, never a database query. It reloads them from the workspace at most every
``refresh_seconds`` (on the calling thread; one ``SELECT`` over a small table): a revoked token
stops working, and a new one starts working, within ``refresh_seconds`` of the change. If that
reload fails the verifier fails closed: requests get ``DatabaseError`` (HTTP 503) until a reload
succeeds, tried again at most every ``refresh_seconds``, rather than trusting a stale set.

Examples:
    >>> auth_required("127.0.0.1", "auto"), auth_required("0.0.0.0", "auto")
    (False, True)
    >>> auth_required("localhost", "always"), auth_required("10.1.2.3", "never")
    (True, False)
    >>> is_loopback("::1"), is_loopback("[::1]"), is_loopback("example.org")
    (True, True, False)
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import threading
import time
from dataclasses import dataclass, field

from mlprod.errors import ConfigError, DatabaseError, ForbiddenError, InvalidInputError, UnauthorizedError
from mlprod.serve.tokens import ID_LENGTH, SCOPES, TOKEN_PREFIX, ApiToken, TokenStore, token_sha256

AUTH_MODES = ("auto", "always", "never")
DEFAULT_REFRESH_SECONDS = 5.0
_MAX_HEADER_LENGTH = 512  # real tokens are 60 characters; do not hash whatever a client sends
_TOKEN = re.compile(rf"{TOKEN_PREFIX}([0-9a-f]{{{ID_LENGTH}}})_[A-Za-z0-9_-]+")
_NOT_A_DIGEST = "0" * 64
_HOW = "send the header 'Authorization: Bearer <token>' with a token from 'mlprod tokens create'"


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` only accepts connections from this machine."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def auth_required(host: str, configured: str) -> bool:
    """Whether a server bound to ``host`` must require API tokens, by the ``serve.auth`` setting.

    ``"auto"`` requires them unless the host is a loopback address, ``"always"`` and ``"never"``
    say so regardless of the host.
    """
    if configured == "auto":
        return not is_loopback(host)
    if configured in ("always", "never"):
        return configured == "always"
    modes = ", ".join(repr(m) for m in AUTH_MODES)
    raise ConfigError(f"serve.auth is {configured!r}: expected one of {modes}")


def bearer_token(authorization: str | None) -> tuple[str, str]:
    """``(token id, token)`` from an ``Authorization`` header value; ``UnauthorizedError`` if unusable.

    Messages never repeat what the client sent: it may be a secret.
    """
    if authorization is None or not authorization.strip():
        raise UnauthorizedError(f"this server requires an API token: {_HOW}")
    if len(authorization) > _MAX_HEADER_LENGTH:
        raise UnauthorizedError(f"the Authorization header is too long to hold an API token: {_HOW}")
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise UnauthorizedError(f"the Authorization header is not of the form 'Bearer <token>': {_HOW}")
    match = _TOKEN.fullmatch(parts[1])
    if match is None:
        raise UnauthorizedError(
            f"the bearer token is not an mlprod API token (they read 'mlp_<id>_<secret>'): {_HOW}"
        )
    return match.group(1), parts[1]


@dataclass(frozen=True)
class _Snapshot:
    tokens: dict[str, tuple[str, ApiToken]] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    error: DatabaseError | None = None


class TokenVerifier:
    """Check ``Authorization`` headers against the workspace's active API tokens, held in memory."""

    def __init__(self, store: TokenStore, *, refresh_seconds: float = DEFAULT_REFRESH_SECONDS) -> None:
        if not refresh_seconds >= 0:
            raise InvalidInputError(f"refresh_seconds must be 0 or more, got {refresh_seconds}")
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._snapshot: _Snapshot | None = None
        self._reload_lock = threading.Lock()

    def check(self, authorization: str | None, scope: str) -> ApiToken:
        """The token record the header carries, if it is active and grants ``scope``.

        Raises ``UnauthorizedError`` for a missing, malformed, unknown, revoked or mistyped token,
        ``ForbiddenError`` for a token without ``scope``, ``DatabaseError`` when the tokens cannot
        be loaded.
        """
        if scope not in SCOPES:  # the server's own wiring is wrong: a bug, not a client error
            raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
        token_id, token = bearer_token(authorization)
        found = self._tokens().get(token_id)
        expected = _NOT_A_DIGEST if found is None else found[0]
        if not hmac.compare_digest(token_sha256(token), expected) or found is None:
            raise UnauthorizedError(f"the API token is unknown or revoked: {_HOW}")
        record = found[1]
        if not record.allows(scope):
            granted = ", ".join(record.scopes)
            raise ForbiddenError(
                f"API token {record.name!r} lacks the scope {scope!r} (it has: {granted}); "
                f"create a token with '--scope {scope}'"
            )
        return record

    def refresh(self) -> None:
        """Reload the active tokens now (e.g. at server start, so the first request does not wait)."""
        with self._reload_lock:
            self._load()

    def _tokens(self) -> dict[str, tuple[str, ApiToken]]:
        snapshot = self._snapshot
        if snapshot is None:  # never loaded (the server loads at start): this caller waits for it
            with self._reload_lock:
                if self._snapshot is None:
                    self._load()
            snapshot = self._snapshot
            assert snapshot is not None
        elif time.monotonic() - snapshot.loaded_at >= self._refresh_seconds and self._reload_lock.acquire(
            blocking=False
        ):
            # Reload on a background thread: a request never waits on the database. Until it is
            # done, the snapshot in hand (at most one query's duration past its refresh) is used.
            threading.Thread(target=self._reload_in_background, daemon=True).start()
        if snapshot.error is not None:  # a fresh exception each time: a shared one grows its traceback
            raise DatabaseError(str(snapshot.error)) from snapshot.error
        return snapshot.tokens

    def _reload_in_background(self) -> None:
        try:
            self._load()
        finally:
            self._reload_lock.release()

    def _load(self) -> None:
        try:
            self._snapshot = _Snapshot(self._store.snapshot(), time.monotonic())
        except DatabaseError as exc:
            self._snapshot = _Snapshot(loaded_at=time.monotonic(), error=exc)
