"""``config_check`` vouches only for configs that pydantic accepts, and its schema is the config's."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mlprod.config import Config, EvaluationSetSection, load_config, render_config
from mlprod.config_check import NAMED_TABLES, SCHEMA, SET, SET_REQUIRED, plain_paths
from mlprod.errors import ConfigError

KINDS = {str: "str", int: "int", float: "float", bool: "bool", str | None: "str", list[str]: "list[str]"}


def _derived(model: type[BaseModel]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each field's kind and bounds, as pydantic holds them."""
    fields = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) is dict:
            value = typing.get_args(annotation)[1]
            kind = "sets" if value is EvaluationSetSection else "tables"
        else:
            kind = KINDS[annotation]  # type: ignore[index]
        rules: dict[str, Any] = {}
        for meta in info.metadata:
            for rule in ("ge", "gt", "le", "lt", "pattern"):
                if getattr(meta, rule, None) is not None:
                    rules[rule] = getattr(meta, rule)
        fields[name] = (kind, rules)
    return fields


def test_the_schema_is_the_pydantic_configs() -> None:
    sections = {n: i for n, i in Config.model_fields.items() if n not in NAMED_TABLES}
    assert {name: _derived(info.annotation) for name, info in sections.items()} == SCHEMA  # type: ignore[arg-type]
    tables = {n for n, i in Config.model_fields.items() if typing.get_origin(i.annotation) is dict}
    assert tables == NAMED_TABLES
    assert _derived(EvaluationSetSection) == SET
    assert {n for n, f in EvaluationSetSection.model_fields.items() if f.is_required()} == SET_REQUIRED


def test_a_rendered_config_is_vouched_for(tmp_path: Path) -> None:
    config = Config()
    config.database.url = "sqlite:////elsewhere/meta.db"
    config.artifacts.path = "/data/blobs"
    path = tmp_path / "mlprod.toml"
    path.write_text(render_config(config), encoding="utf-8")
    assert plain_paths(path, {"MLPROD_HOME": str(tmp_path)}) == (
        "sqlite:////elsewhere/meta.db",
        "/data/blobs",
    )
    path.write_text("", encoding="utf-8")
    assert plain_paths(path, {}) == ("", "artifacts")


def test_loop_specs_and_new_monitor_keys_are_vouched_for(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text(
        "[monitor]\nwindow = 'quarter'\ndrift_alpha = 0.05\ndrift_share = 0.3\n"
        "[loop.weekly]\nmodel = 'flights'\n[loop.weekly.rollout]\nsteps = [5, 100]\n",
        encoding="utf-8",
    )
    assert plain_paths(path, {}) == ("", "artifacts")
    load_config(path, {})


BAD = [
    "[serve]\nprot = 80\n", "[servr]\n", "[serve]\nport = 'eighty'\n", "[serve]\nport = 70000\n",
    "[serve]\nauth = 'sometimes'\n", "[monitor]\nks = 0\n",
    "[monitor]\nwebhook_url = 'ftp://x'\n", "[evaluate.sets.july]\ntable = 'f'\n",
    "[evaluate.sets.july]\ntable = 'f'\ntime = 't'\nperiod = 'year'\n", "[evaluate]\nprofiles = 3\n",
    "[evaluate.sets.july]\ntable = 'f'\ntime = 't'\nslices = [1]\n", "serve = 1\n", "not toml [",
    "loop = 3\n", "[loop]\nweekly = 1\n", "[monitor]\ndrift_alpha = 1\n", "[monitor]\nwindow = 'rows:0'\n",
]  # fmt: skip


@pytest.mark.parametrize("text", BAD)
def test_whatever_pydantic_refuses_is_left_to_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text(text, encoding="utf-8")
    assert plain_paths(path, {}) is None
    with pytest.raises(ConfigError):
        load_config(path, {})


def test_an_override_or_an_unknown_variable_is_left_to_load_config(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text("", encoding="utf-8")
    assert plain_paths(path, {"MLPROD_DEBUG": "1", "MLPROD_TEST_X": "y"}) == ("", "artifacts")
    assert plain_paths(path, {"MLPROD_DATABASE_URL": "sqlite:///x.db"}) is None
    assert plain_paths(path, {"MLPROD_DATABSE_URL": "x"}) is None
    assert plain_paths(tmp_path / "missing.toml", {}) is None


def test_a_value_pydantic_would_coerce_is_left_to_it(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_text("[serve]\nport = true\n", encoding="utf-8")
    assert plain_paths(path, {}) is None
    assert load_config(path, {}).serve.port == 1
