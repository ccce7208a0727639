"""API tokens for the prediction server: named, scoped, stored as sha256 hashes only.

A token reads ``mlp_<id>_<secret>``: ``id`` is a public 12-hex identifier (shown by ``mlprod tokens
list``, used to find the record without a scan), ``secret`` is 32 random bytes, URL-safe base64.
Only the sha256 of the whole token is stored, so the plaintext is shown once, at creation, and a
stolen database does not yield usable tokens. Revoking keeps the row (marked ``revoked_at``) so the
name stays taken and the list shows who had access when.

Scopes: ``predict`` (prediction endpoints), ``read`` (model listings, metadata), ``admin``
(everything). ``admin`` implies ``read`` and ``predict``; ``read`` and ``predict`` imply nothing
else, so a client that only predicts cannot enumerate models and a dashboard that only reads cannot
spend compute.

Examples:
    >>> implied_scopes(["admin"])
    ('predict', 'read', 'admin')
    >>> check_scopes(["read", "predict", "read"])
    ('predict', 'read')
    >>> check_scopes(["write"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mlprod.errors.InvalidInputError: unknown API token scope 'write': valid scopes are 'predict', ...
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlprod.errors import AlreadyExistsError, DatabaseError, InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import api_tokens
from mlprod.workspace import Workspace

SCOPES: tuple[str, ...] = ("predict", "read", "admin")
TOKEN_PREFIX = "mlp_"
ID_LENGTH = 12
_IMPLIES: dict[str, tuple[str, ...]] = {"predict": ("predict",), "read": ("read",), "admin": SCOPES}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ID = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")
_CREATE_RETRIES = 5


@dataclass(frozen=True)
class ApiToken:
    """One API token's record (never its plaintext): who may do what, since when, until when."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    who: str
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        """Whether this token grants ``scope``, directly or through ``admin``."""
        return scope in implied_scopes(self.scopes)


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The distinct scopes in ``SCOPES`` order; raise ``InvalidInputError`` for none or an unknown one."""
    given = builtins.list(scopes)
    valid = ", ".join(repr(s) for s in SCOPES)
    for scope in given:
        if scope not in SCOPES:
            raise InvalidInputError(f"unknown API token scope {scope!r}: valid scopes are {valid}")
    if not given:
        raise InvalidInputError(f"an API token needs at least one scope: choose from {valid}")
    return tuple(s for s in SCOPES if s in given)


def implied_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Every scope that ``scopes`` grant, ``admin`` expanded, in ``SCOPES`` order."""
    granted = {implied for scope in scopes for implied in _IMPLIES.get(scope, ())}
    return tuple(s for s in SCOPES if s in granted)


def check_token_name(name: str) -> str:
    """Return ``name`` if it may name a token, else raise ``InvalidInputError``.

    Names that look like a token id (12 hex digits) are refused, so ``revoke NAME_OR_ID`` is never
    ambiguous.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"API token name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if _ID.fullmatch(name):
        raise InvalidInputError(
            f"API token name {name!r} looks like a token id ({ID_LENGTH} hex digits): choose another name"
        )
    return name


def token_sha256(token: str) -> str:
    """The hex sha256 of a plaintext token: what the database stores and the verifier compares."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """The API tokens of one workspace: create, list, revoke, and the active set for verification."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def create(self, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
        """Create a token; return its record and its plaintext, which is not stored and not shown again."""
        check_token_name(name)
        clean_scopes = check_scopes(scopes)
        for _ in range(_CREATE_RETRIES):
            token_id = secrets.token_hex(ID_LENGTH // 2)
            plaintext = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
            record = ApiToken(
                id=token_id,
                name=name,
                scopes=clean_scopes,
                created_at=datetime.now(UTC),
                who=current_user(),
            )
            try:
                with self._database("create an API token"), self._ws.engine.begin() as conn:
                    self._refuse_taken_name(conn, name)
                    conn.execute(
                        api_tokens.insert().values(
                            id=record.id,
                            name=record.name,
                            token_sha256=token_sha256(plaintext),
                            scopes=builtins.list(record.scopes),
                            created_at=record.created_at,
                            who=record.who,
                            revoked_at=None,
                        )
                    )
            except IntegrityError:
                with self._database("create an API token"), self._ws.engine.connect() as conn:
                    self._refuse_taken_name(conn, name)  # a concurrent create took the name
                continue  # an id collision (1 in 2**48 per pair): draw another
            return record, plaintext
        raise DatabaseError(f"could not store API token {name!r} after {_CREATE_RETRIES} attempts")

    def list(self) -> builtins.list[ApiToken]:
        """Every token, revoked ones included (``revoked_at`` set), oldest first."""
        query = api_tokens.select().order_by(api_tokens.c.created_at, api_tokens.c.name)
        with self._database("list API tokens"), self._ws.engine.connect() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def get(self, name_or_id: str) -> ApiToken:
        """The token with this name, else with this id; ``NotFoundError`` if neither exists."""
        with self._database("read an API token"), self._ws.engine.connect() as conn:
            return _record(self._find(conn, name_or_id)._mapping)

    def revoke(self, name_or_id: str) -> ApiToken:
        """Mark a token revoked (by name or id) and return it; revoking twice keeps the first time."""
        with self._database("revoke an API token"), self._ws.engine.begin() as conn:
            row = self._find(conn, name_or_id)
            conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == row.id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            return _record(conn.execute(api_tokens.select().where(api_tokens.c.id == row.id)).one()._mapping)

    def snapshot(self) -> dict[str, tuple[str, ApiToken]]:
        """The active (not revoked) tokens: ``id -> (sha256 of the token, record)``, in one query."""
        query = api_tokens.select().where(api_tokens.c.revoked_at.is_(None))
        with self._database("read the API tokens"), self._ws.engine.connect() as conn:
            return {row.id: (row.token_sha256, _record(row._mapping)) for row in conn.execute(query)}

    def _find(self, conn: sa.Connection, name_or_id: str) -> Any:
        row = conn.execute(api_tokens.select().where(api_tokens.c.name == name_or_id)).first()
        if row is None:
            row = conn.execute(api_tokens.select().where(api_tokens.c.id == name_or_id)).first()
        if row is None:
            raise NotFoundError(
                f"no API token named or with id {name_or_id!r}: 'mlprod tokens list' shows the tokens"
            )
        return row

    @staticmethod
    def _refuse_taken_name(conn: sa.Connection, name: str) -> None:
        revoked_at = conn.execute(sa.select(api_tokens.c.revoked_at).where(api_tokens.c.name == name)).first()
        if revoked_at is not None:
            held_by = "a revoked token" if revoked_at[0] is not None else "an active token"
            raise AlreadyExistsError(
                f"API token name {name!r} is already taken by {held_by}: choose another name"
            )

    @contextmanager
    def _database(self, action: str) -> Iterator[None]:
        """Map database failures (other than the integrity errors callers handle) to ``DatabaseError``."""
        try:
            yield
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise DatabaseError(f"could not {action}: metadata database failed: {reason}") from exc


def _record(row: Mapping[str, Any] | sa.RowMapping) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        scopes=tuple(s for s in SCOPES if s in row["scopes"]),
        created_at=row["created_at"],
        who=row["who"],
        revoked_at=row["revoked_at"],
    )
