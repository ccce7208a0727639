"""``mlprod tokens`` through the real entry point, checked against the workspace it wrote."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlprod.errors import UnauthorizedError
from mlprod.serve.auth import TokenVerifier
from mlprod.serve.tokens import TokenStore
from mlprod.workspace import Workspace
from tests.cli.conftest import Run

TOKEN = re.compile(r"mlp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def ws(workspace: Workspace) -> Path:
    return workspace.root


def test_create_prints_the_token_alone_on_stdout_and_it_works(mlprod: Run, ws: Path) -> None:
    result = mlprod("tokens", "create", "ci", "--scope", "predict", "-s", "read", cwd=ws)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert TOKEN.fullmatch(token), result.stdout
    assert "created API token 'ci'" in result.stderr and "scopes: predict, read" in result.stderr
    assert "copy it now: it is not shown again" in result.stderr
    assert token not in result.stderr
    with Workspace.open(ws) as opened:
        record = TokenVerifier(TokenStore(opened)).check(f"Bearer {token}", "read")
    assert (record.name, record.scopes) == ("ci", ("predict", "read"))
    assert f"id {record.id}" in result.stderr


def test_list_shows_every_token_and_revocation(mlprod: Run, ws: Path) -> None:
    assert "no API tokens yet" in mlprod("tokens", "list", cwd=ws).stdout
    mlprod("tokens", "create", "keep", "--scope", "admin", cwd=ws)
    token = mlprod("tokens", "create", "drop", "--scope", "predict", cwd=ws).stdout.strip()
    token_id = token.split("_")[1]
    revoked = mlprod("tokens", "revoke", token_id, cwd=ws)
    assert revoked.returncode == 0, revoked.stderr
    assert re.search(rf"revoked API token 'drop' \(id {token_id}\) at \d{{4}}-\d\d-\d\d", revoked.stdout)
    listed = mlprod("tokens", "list", cwd=ws)
    assert listed.returncode == 0, listed.stderr
    lines = {
        line.split()[1]: line
        for line in listed.stdout.splitlines()
        if line.split()[1:2] in (["keep"], ["drop"])
    }
    assert "admin" in lines["keep"] and not re.search(r"\d\d:\d\d:\d\d.*\d\d:\d\d:\d\d", lines["keep"])
    assert token_id in lines["drop"] and re.search(r"\d\d:\d\d:\d\d.*\d\d:\d\d:\d\d", lines["drop"])
    with Workspace.open(ws) as opened, pytest.raises(UnauthorizedError):
        TokenVerifier(TokenStore(opened)).check(f"Bearer {token}", "predict")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "x", "--scope", "write"], "unknown API token scope 'write': valid scopes are 'predict'"),
        (["create", "x"], "an API token needs at least one scope: choose from 'predict', 'read', 'admin'"),
        (["create", "bad name", "--scope", "read"], "API token name 'bad name' is not valid"),
        (["revoke", "nobody"], "no API token named or with id 'nobody'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    mlprod: Run, workspace: Workspace, args: list[str], message: str
) -> None:
    result = mlprod("tokens", *args, cwd=workspace.root)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert TokenStore(workspace).list() == []


def test_duplicate_name_is_refused(mlprod: Run, ws: Path) -> None:
    assert mlprod("tokens", "create", "dup", "--scope", "read", cwd=ws).returncode == 0
    again = mlprod("tokens", "create", "dup", "--scope", "read", cwd=ws)
    assert again.returncode == 2
    assert "API token name 'dup' is already taken by an active token" in again.stderr
    assert again.stdout == ""


def test_help_lists_the_commands(mlprod: Run) -> None:
    result = mlprod("tokens", "--help")
    assert result.returncode == 0
    assert all(command in result.stdout for command in ("create", "list", "revoke"))
    assert "admin implies the other two" in result.stdout


def test_init_creates_the_local_admin_token_and_read_commands_never_do(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("init", "fresh")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "fresh" / "local-admin.token"
    assert f"local admin token: {path} (mode 0600)" in " ".join(result.stdout.split())
    assert path.stat().st_mode & 0o777 == 0o600 and TOKEN.fullmatch(path.read_text().strip())
    path.unlink()
    listed = mlprod("tokens", "list", cwd=path.parent)
    assert listed.returncode == 0 and "local-admin" in listed.stdout
    assert not path.exists()  # a read command does not create it
    created = mlprod("tokens", "create-local-admin", cwd=path.parent)
    assert created.returncode == 0, created.stderr
    assert "created the local admin token" in created.stdout and path.exists()
    again = mlprod("tokens", "create-local-admin", cwd=path.parent)
    assert "already have the local admin token" in again.stdout
    with Workspace.open(path.parent) as ws:
        names = [t.name for t in TokenStore(ws).list()]
    assert names == ["local-admin", "local-admin-2"]


def test_a_local_admin_token_file_others_can_read_is_refused(mlprod: Run, ws: Path) -> None:
    assert mlprod("tokens", "create-local-admin", cwd=ws).returncode == 0
    (ws / "local-admin.token").chmod(0o644)
    result = mlprod("tokens", "create-local-admin", cwd=ws)
    assert result.returncode == 2
    assert "is open to other users (mode 0644, expected 0600)" in " ".join(result.stderr.split())
