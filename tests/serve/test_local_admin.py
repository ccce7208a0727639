"""The local admin token file: created private, checked before use, never silently replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlprod.errors import WorkspaceError
from mlprod.serve.auth import TokenVerifier
from mlprod.serve.local_admin import ensure_local_admin, local_admin_path, read_local_admin_token
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace


def test_the_token_is_created_owner_only_and_grants_admin(workspace: Workspace) -> None:
    old_umask = os.umask(0)  # a permissive umask must not make the file readable by others
    try:
        path, created = ensure_local_admin(workspace)
    finally:
        os.umask(old_umask)
    assert created and path == workspace.root / "local-admin.token"
    assert path.stat().st_mode & 0o777 == 0o600
    token = read_local_admin_token(workspace)
    record = TokenVerifier(TokenStore(workspace)).check(f"Bearer {token}", "admin")
    assert (record.name, record.scopes) == ("local-admin", ("admin",))


def test_an_existing_file_is_kept_and_no_token_is_added(workspace: Workspace) -> None:
    path, _ = ensure_local_admin(workspace)
    token = read_local_admin_token(workspace)
    assert ensure_local_admin(workspace) == (path, False)
    assert read_local_admin_token(workspace) == token
    assert [t.name for t in TokenStore(workspace).list()] == ["local-admin"]


def test_a_deleted_file_gets_a_new_token_under_the_next_free_name(workspace: Workspace) -> None:
    path, _ = ensure_local_admin(workspace)
    path.unlink()
    assert ensure_local_admin(workspace) == (path, True)
    token = read_local_admin_token(workspace)
    assert TokenVerifier(TokenStore(workspace)).check(f"Bearer {token}", "admin").name == "local-admin-2"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_a_file_others_can_read_or_write_is_refused(workspace: Workspace, mode: int) -> None:
    path, _ = ensure_local_admin(workspace)
    path.chmod(mode)
    for call in (read_local_admin_token, ensure_local_admin):
        with pytest.raises(WorkspaceError) as error:
            call(workspace)
        message = str(error.value)
        assert f"is open to other users (mode {mode:04o}, expected 0600)" in message
        assert f"chmod 600 {path}" in message and "mlprod tokens create-local-admin" in message


def test_a_missing_file_says_how_to_create_it(workspace: Workspace) -> None:
    with pytest.raises(WorkspaceError, match=r"has no local admin token .*'mlprod tokens create-local-"):
        read_local_admin_token(workspace)
    assert TokenStore(workspace).list() == []  # reading never creates


def test_a_file_without_a_token_is_refused(workspace: Workspace) -> None:
    path: Path = local_admin_path(workspace)
    path.write_text("not a token\n", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(WorkspaceError, match="does not hold an mlprod API token: delete it and create it"):
        read_local_admin_token(workspace)
