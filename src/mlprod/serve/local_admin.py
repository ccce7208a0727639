"""The local admin token: the credential this machine's user holds for the server's admin API.

Admin actions (changing routing plans, seeing what is loaded) always need a token, even on loopback
where predictions may stay open: otherwise any process of any user, or a web page reaching
``localhost`` through the browser, could rewrite routing. ``mlprod init`` (or ``mlprod tokens
create-local-admin``, or the first ``mlprod serve``) creates an ``admin`` token named
``local-admin`` and writes it to ``local-admin.token`` in the workspace, readable only by its owner
(mode 0600). The demo and other local clients read it from there; a file others can read is refused,
since anyone who reads it is an admin.

Examples:
    >>> import tempfile
    >>> from mlprod.workspace import Workspace
    >>> with Workspace.init(tempfile.mkdtemp()) as ws:
    ...     path, created = ensure_local_admin(ws)
    ...     token = read_local_admin_token(ws)
    ...     again = ensure_local_admin(ws)
    >>> path.name, created, token.startswith("mlp_"), again == (path, False)
    ('local-admin.token', True, True, True)
    >>> oct(path.stat().st_mode & 0o777)
    '0o600'
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlprod.errors import AlreadyExistsError, UnauthorizedError, WorkspaceError
from mlprod.serve.auth import bearer_token
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace

FILENAME = "local-admin.token"
TOKEN_NAME = "local-admin"
_MAX_NAMES = 100
_CREATE_IT = "create it with 'mlprod tokens create-local-admin'"


def local_admin_path(workspace: Workspace) -> Path:
    """Where the workspace keeps its local admin token."""
    return workspace.root / FILENAME


def ensure_local_admin(workspace: Workspace) -> tuple[Path, bool]:
    """The local admin token file, creating the token and the file when there is none.

    Returns ``(path, created)``. An existing file is checked (owner-only, holds a token) and kept.
    The token is named ``local-admin`` (``local-admin-2``, ... when that name was used before, e.g.
    by a token whose file was deleted).
    """
    path = local_admin_path(workspace)
    if path.exists():
        read_local_admin_token(workspace)
        return path, False
    store = TokenStore(workspace)
    for n in range(1, _MAX_NAMES + 1):
        name = TOKEN_NAME if n == 1 else f"{TOKEN_NAME}-{n}"
        try:
            _record, plaintext = store.create(name, ["admin"])
        except AlreadyExistsError:
            continue
        break
    else:
        raise WorkspaceError(
            f"API token names {TOKEN_NAME} to {TOKEN_NAME}-{_MAX_NAMES} are all taken: "
            f"create an admin token with 'mlprod tokens create NAME --scope admin' and write it to {path}"
        )
    _write_private(path, plaintext + "\n")
    return path, True


def read_local_admin_token(workspace: Workspace) -> str:
    """The local admin token; ``WorkspaceError`` when it is missing, not yours, or open to others."""
    path = local_admin_path(workspace)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise WorkspaceError(
            f"workspace {workspace.root} has no local admin token ({path}): {_CREATE_IT}"
        ) from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise WorkspaceError(
            f"local admin token {path} is open to other users (mode {mode:04o}, expected 0600), so it is "
            f"not used: make it private with 'chmod 600 {path}' if nobody else read it; else revoke its "
            f"token ('mlprod tokens list' shows the {TOKEN_NAME} tokens), delete the file and {_CREATE_IT}"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise WorkspaceError(
            f"local admin token {path} belongs to user id {info.st_uid}, not to you ({os.getuid()}): "
            "each user keeps their own; ask its owner, or create an admin token with "
            "'mlprod tokens create NAME --scope admin'"
        )
    token = path.read_text(encoding="utf-8").strip()
    try:
        bearer_token(f"Bearer {token}")
    except UnauthorizedError:
        raise WorkspaceError(
            f"local admin token {path} does not hold an mlprod API token: delete it and {_CREATE_IT}"
        ) from None
    return token


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file that only its owner may read (never briefly readable by others)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WorkspaceError(
            f"{path} appeared while creating the local admin token: run the command again"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
