"""Loop specs: the TOML form, every bad input named, the config loader accepting [loop.NAME]."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mlprod.config import Config, load_config, override_variables, render_config
from mlprod.errors import ConfigError, InvalidInputError
from mlprod.loop.spec import LoopSpec, Window, parse_loops, read_loop_file
from mlprod.workspace import Workspace

FULL = """
[loop.flights]
model = "flights-delay"
alias = "champion"
training_spec = "specs/flights.toml"
training_window = "last 90 days"
evaluation_window = "last 2 weeks"
gate_profile = "accuracy-first"

[loop.flights.rollout]
steps = [5, 25, 50, 100]
shadow = "10m"
min_step_requests = 2000
alpha = 0.05

[loop.flights.triggers]
schedule = "7d"
new_rows = 10000
incident = true
realized_floor = 0.75

[loop.flights.slo]
error_rate = 0.01
p99_ms = 50
"""


def test_a_full_spec_parses_from_mlprod_toml(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text(FULL)
    specs = parse_loops(load_config(path, environ={}).loop)
    spec = specs["flights"]
    assert (spec.model, spec.alias, spec.training_spec) == ("flights-delay", "champion", "specs/flights.toml")
    assert spec.training_window == Window(90) and spec.evaluation_window == Window(14)
    assert spec.rollout.steps == (5, 25, 50, 100) and spec.rollout.shadow == timedelta(minutes=10)
    assert spec.triggers.schedule == timedelta(days=7) and spec.triggers.new_rows == 10_000
    assert spec.slo.p99_ms == 50
    assert spec.describe()["rollout"].startswith("shadow 10m → 5 % → 25 % → 50 % → 100 %")


def test_defaults_need_only_the_model() -> None:
    spec = LoopSpec.parse("m", {"model": "m"})
    assert spec.training_window == Window(None) and str(spec.training_window) == "all"
    assert spec.evaluation_window.span == timedelta(days=14)
    assert spec.rollout.shadow is None and spec.triggers.manual and spec.gate_profile is None


def test_loop_tables_render_and_load_back(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text(FULL)
    config = load_config(path, environ={})
    text = render_config(config)
    assert "[loop.flights]" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_config(again, environ={}) == config


def test_loop_tables_get_no_environment_overrides() -> None:
    assert not any(name.startswith("MLPROD_LOOP") for name in override_variables())
    assert Config().loop == {}


def test_typos_in_other_sections_are_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text(FULL + "\n[loops.x]\nmodel = 'm'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[loops\]"):
        load_config(path, environ={})


def test_a_loop_that_is_not_a_table_is_refused_by_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text("[loop]\nflights = 3\n")
    with pytest.raises(ConfigError, match=r"\[loop\] flights: Input should be a valid dictionary"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"rollout": {"steps": [5, 50, 25, 100]}},
            "rollout.steps: rollout steps must be strictly increasing, got [5, 50",
        ),
        (
            {"rollout": {"steps": [5, 25, 50]}},
            "rollout steps must end at 100 (the challenger takes all traffic)",
        ),
        ({"rollout": {"steps": []}}, "rollout.steps: rollout steps are empty"),
        ({"rollout": {"steps": [0, 100]}}, "rollout steps must be whole percentages in 1..100, got [0, 100]"),
        ({"rollout": {"steps": "5,100"}}, "rollout steps must be a list of percentages such as [5, 25,"),
        ({"rollout": {"shadow": "10 minutes"}}, "shadow: shadow duration '10 minutes' does not parse"),
        ({"triggers": {"schedule": "weekly"}}, "triggers.schedule: schedule 'weekly' does not parse"),
        ({"training_window": "last 3 months"}, "training window 'last 3 months' does not parse: write 'all'"),
        ({"training_window": "last 0 days"}, "training window 'last 0 days' must be longer than zero"),
        ({"evaluation_window": "all"}, "evaluation_window: evaluation window cannot be 'all'"),
        ({"modle": "x"}, "modle: unknown key 'modle' (did you mean 'model'?); valid keys: model, alias,"),
        ({"rollout": {"step": [5, 100]}}, "rollout.step: unknown key 'step' (did you mean 'steps'?)"),
        ({"slo": {"p99_ms": -1}}, "slo.p99_ms: Input should be greater than 0 (got -1)"),
        ({"triggers": {"new_rows": 0}}, "triggers.new_rows: Input should be greater than 0 (got 0)"),
        ({"rollout": {"alpha": 1.5}}, "rollout.alpha: Input should be less than 1 (got 1.5)"),
        ({"model": "bad name!"}, "model: model name 'bad name!' is not valid"),
    ],
)
def test_every_bad_input_is_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        LoopSpec.parse("flights", {"model": "flights-delay", **raw})
    assert str(caught.value).startswith("[loop.flights] ")
    assert message in str(caught.value)


def test_a_missing_model_and_a_name_key_are_named() -> None:
    with pytest.raises(InvalidInputError, match=r"^\[loop.f\] model: required$"):
        LoopSpec.parse("f", {})
    with pytest.raises(InvalidInputError, match="the loop's name is its table name; remove the key 'name'"):
        LoopSpec.parse("f", {"model": "m", "name": "g"})


def test_a_separate_loop_file(tmp_path: Path) -> None:
    path = tmp_path / "loops.toml"
    path.write_text(FULL)
    assert list(read_loop_file(path)) == ["flights"]
    path.write_text(FULL + "\n[serve]\nport = 1\n")
    with pytest.raises(InvalidInputError, match=r"a loop file holds only \[loop\.NAME\] tables, found serve"):
        read_loop_file(path)
    path.write_text("")
    with pytest.raises(InvalidInputError, match="no loop spec in it; declare one as"):
        read_loop_file(path)
    path.write_text("[loop.x\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        read_loop_file(path)
    with pytest.raises(InvalidInputError, match="cannot read loop spec"):
        read_loop_file(tmp_path / "missing.toml")


def test_changing_another_setting_keeps_the_loop_tables(workspace: Workspace) -> None:
    config = workspace.root / "mlprod.toml"
    config.write_text(config.read_text() + FULL)
    workspace.set_config("serve", "port", 9001)
    again = load_config(config, environ={})
    assert again.serve.port == 9001
    assert parse_loops(again.loop)["flights"].rollout.shadow == timedelta(minutes=10)
