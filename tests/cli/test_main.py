"""The command line as a user meets it: help, exit codes, one-line errors, --debug."""

from pathlib import Path

import pytest

from tests.cli.conftest import Run

GROUPS = [
    "data",
    "features",
    "models",
    "eval",
    "serve",
    "predict",
    "routes",
    "tokens",
    "monitor",
    "loop",
    "ui",
    "demo",
]


def test_help_shows_every_command_group(mlprod: Run) -> None:
    result = mlprod("--help")
    assert result.returncode == 0
    for group in GROUPS:
        assert f" {group} " in result.stdout, group


def test_version(mlprod: Run) -> None:
    assert mlprod("--version").stdout.strip() == "mlprod 0.1.0"


def assert_one_line_error(result, expected: str, code: int = 2) -> None:
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_no_workspace_is_one_line_and_exit_2(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("models", "list", cwd=tmp_path)
    assert_one_line_error(result, "no mlprod workspace in")


def test_missing_mlprod_home(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("info", env={"MLPROD_HOME": str(tmp_path / "gone")})
    assert_one_line_error(result, f"workspace {tmp_path / 'gone'} does not exist")


def test_config_with_unknown_key(mlprod: Run, tmp_path: Path) -> None:
    assert mlprod("init", "ws").returncode == 0
    config = tmp_path / "ws" / "mlprod.toml"
    config.write_text(config.read_text().replace("[prediction_log]", "[prediction_log]\nflush_every = 3"))
    result = mlprod("info", cwd=tmp_path / "ws")
    assert_one_line_error(result, "mlprod.toml: unknown key [prediction_log] flush_every")


def test_config_with_wrong_type(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    config = tmp_path / "ws" / "mlprod.toml"
    config.write_text(config.read_text().replace("port = 8000", 'port = "http"'))
    result = mlprod("info", cwd=tmp_path / "ws")
    assert_one_line_error(result, "[serve] port: Input should be a valid integer")


def test_database_that_cannot_connect_creates_nothing(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("init", "ws", "--database-url", "postgresql+psycopg://u:secret@127.0.0.1:1/db")
    assert_one_line_error(result, "cannot connect to database postgresql+psycopg://u:***@127.0.0.1:1/db")
    assert "secret" not in result.stderr
    assert not (tmp_path / "ws").exists()


def test_environment_database_url_that_cannot_connect(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    result = mlprod(
        "info", cwd=tmp_path / "ws", env={"MLPROD_DATABASE_URL": "postgresql+psycopg://127.0.0.1:1/x"}
    )
    assert_one_line_error(result, "cannot connect to database")


def test_debug_shows_the_traceback(mlprod: Run, tmp_path: Path) -> None:
    result = mlprod("--debug", "models", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no mlprod workspace")


@pytest.mark.parametrize("group", ["ui", "loop run", "loop status"])
def test_planned_groups_say_so(mlprod: Run, group: str) -> None:
    assert_one_line_error(mlprod(*group.split()), f"`mlprod {group}` is planned but not available")


def test_usage_errors_exit_2(mlprod: Run) -> None:
    assert mlprod("models", "alias", "m").returncode == 2


def test_misspelled_environment_variable_is_one_line(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    result = mlprod("info", cwd=tmp_path / "ws", env={"MLPROD_DATABSE_URL": "postgresql://x"})
    assert_one_line_error(result, "unknown environment variable MLPROD_DATABSE_URL")


def test_port_out_of_range_is_a_usage_error(mlprod: Run, tmp_path: Path) -> None:
    mlprod("init", "ws")
    result = mlprod("serve", "--port", "70000", cwd=tmp_path / "ws")
    assert result.returncode == 2
    assert "Invalid value for '--port': Input should be less than or equal to 65535" in result.stderr
