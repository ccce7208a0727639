"""Run the real ``mlprod`` entry point in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def mlprod(tmp_path: Path) -> Run:
    return mlprod_runner(tmp_path)


def mlprod_runner(tmp_path: Path) -> Run:
    """Run ``python -m mlprod`` in a subprocess (default directory ``tmp_path``, 200 columns)."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
        full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "mlprod", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
