"""``-C/--workspace`` and ``--debug`` mean the same before the subcommand and after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlprod.models import ModelVersion
from tests.cli.conftest import Run


@pytest.mark.usefixtures("registered")
def test_workspace_before_or_after_the_subcommand_lists_the_same(mlprod: Run, tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = mlprod("-C", ws, "models", "list", cwd=elsewhere)
    after = mlprod("models", "list", "-C", ws, cwd=elsewhere)
    long_form = mlprod("models", "list", "--workspace", ws, cwd=elsewhere)
    on_the_group = mlprod("models", "-C", ws, "list", cwd=elsewhere)
    assert before.returncode == 0, before.stderr
    assert "toy" in before.stdout
    assert after.stdout == long_form.stdout == on_the_group.stdout == before.stdout


def test_a_missing_workspace_fails_the_same_way_in_both_positions(mlprod: Run, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    before = mlprod("-C", missing, "data", "list")
    after = mlprod("data", "list", "-C", missing)
    assert before.returncode == after.returncode == 2
    assert before.stderr == after.stderr
    assert (
        before.stderr.strip()
        == f"error: workspace {missing} does not exist; create it with `mlprod init {missing}`"
    )


def test_the_option_after_the_subcommand_wins_over_the_one_before(mlprod: Run, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    done = mlprod("-C", str(tmp_path), "data", "list", "-C", missing)
    assert done.returncode == 2 and missing in done.stderr


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_in_either_position_adds_the_traceback(
    mlprod: Run, tmp_path: Path, registered: ModelVersion, position: str
) -> None:
    command = ["models", "show", "absent/1", "-C", str(tmp_path / "ws")]
    args = ["--debug", *command] if position == "before" else [*command, "--debug"]
    debug = mlprod(*args)
    plain = mlprod(*command)
    assert debug.returncode == plain.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert "Traceback" not in plain.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


def test_data_gc_takes_debug_after_the_subcommand_as_the_readme_shows(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", str(tmp_path / "ws"))
    done = mlprod("data", "gc", "--dry-run", "--debug", "-C", str(tmp_path / "ws"))
    assert done.returncode == 0, done.stderr
