"""Run the real ``mlprod`` entry point in a subprocess, as a user would, or in this process (``cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from mlprod.cli.main import main

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


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``mlprod`` in this process, through the ``main()`` the script runs: same exit codes and output."""

    def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> CompletedProcess[str]:
        capsys.readouterr()
        code: int = 0
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            patch.setattr(sys, "argv", ["mlprod", *args])
            for name, value in {"COLUMNS": "200", **(env or {})}.items():
                patch.setenv(name, value)
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        captured = capsys.readouterr()
        return CompletedProcess(["mlprod", *args], code, captured.out, captured.err)

    return run
