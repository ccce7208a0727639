"""The header tests send to the admin API: the workspace's local admin token, created when missing."""

from __future__ import annotations

from mlprod.serve.local_admin import ensure_local_admin, read_local_admin_token
from mlprod.workspace import Workspace


def admin_headers(workspace: Workspace) -> dict[str, str]:
    ensure_local_admin(workspace)
    return {"Authorization": f"Bearer {read_local_admin_token(workspace)}"}
