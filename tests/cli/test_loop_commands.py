"""``mlprod loop check``: validates the loop specs against the workspace and prints them; writes nothing."""

from __future__ import annotations

import hashlib

from mlprod.data import TableStore
from mlprod.models import AliasMove, ModelSummary, ModelVersion, Registry
from mlprod.workspace import Workspace
from tests.cli.conftest import Run
from tests.cli.test_main import assert_one_line_error
from tests.conftest import make_frame

LOOPS = """
[loop.toy-loop]
model = "toy"
training_spec = "toy.toml"
training_window = "last 90 days"

[loop.toy-loop.rollout]
steps = [10, 50, 100]
shadow = "5m"

[loop.toy-loop.triggers]
schedule = "7d"
"""
TRAINING = 'model = "toy"\ndataset = "rows"\nlabel = "y"\ntime = "id"\n[features]\nx = "x"\n'


def _snapshot(workspace: Workspace) -> tuple[dict[str, str], list[AliasMove], list[ModelSummary]]:
    """Every file but the SQLite database (which checkpoints on its own), and the registry's state."""
    files = {
        str(path.relative_to(workspace.root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in workspace.root.rglob("*")
        if path.is_file() and not path.name.startswith("meta.db")
    }
    registry = Registry(workspace)
    return files, registry.alias_history("toy"), registry.models()


def test_check_validates_and_prints_every_loop(
    mlprod: Run, workspace: Workspace, registered: ModelVersion
) -> None:
    TableStore(workspace).create("rows", key=["id"], data=make_frame(50).reset_index(names="id"))
    (workspace.root / "toy.toml").write_text(TRAINING)
    config = workspace.root / "mlprod.toml"
    config.write_text(config.read_text() + LOOPS)
    before = _snapshot(workspace)

    done = mlprod("-C", str(workspace.root), "loop", "check")
    assert done.returncode == 0, done.stderr
    assert "loop toy-loop: ok" in done.stdout
    assert "champion:          toy/1" in done.stdout
    assert "rollout:           shadow 5m → 10 % → 50 % → 100 %" in done.stdout
    assert "training window:   last 90 days" in done.stdout
    assert "triggers:          every 7d, incidents, manual" in done.stdout
    assert _snapshot(workspace) == before

    assert_one_line_error(
        mlprod("-C", str(workspace.root), "loop", "check", "toy-lop"),
        "no loop 'toy-lop' in mlprod.toml (did you mean 'toy-loop'?); loops: toy-loop",
    )
    (workspace.root / "bad.toml").write_text('[loop.b]\nmodel = "toy"\nrollout = { steps = [50, 25, 100] }\n')
    assert_one_line_error(
        mlprod("-C", str(workspace.root), "loop", "check", "--file", "bad.toml", cwd=workspace.root),
        "rollout.steps: rollout steps must be strictly increasing, got [50, 25, 100]",
    )
