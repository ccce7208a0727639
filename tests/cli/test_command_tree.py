"""The root's table of lazily loaded commands says what the commands themselves say."""

from __future__ import annotations

from typer.testing import CliRunner

from mlprod.cli.main import COMMANDS, app
from mlprod.cli.main import _LazyCommands as LazyCommands


def test_each_summary_is_the_first_paragraph_of_its_commands_help() -> None:
    commands = LazyCommands([])
    for name, _, summary in COMMANDS:
        help_text = commands[name].help or ""
        first = help_text.split("\n\n")[0]
        assert " ".join(first.split()) == summary, name


def test_help_lists_every_command_and_a_typo_gets_a_suggestion() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    listed = [line.split()[0] for line in shown.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == [name for name, _, _ in COMMANDS]
    typo = runner.invoke(app, ["modls", "list"])
    assert typo.exit_code == 2 and "Did you mean 'models'?" in typo.output
