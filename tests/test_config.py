from pathlib import Path

import pytest

from mlprod.config import Config, apply_env_overrides, load_config, render_config
from mlprod.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlprod.toml"
    path.write_text(text)
    return path


def test_defaults_when_file_is_empty(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={})
    assert config == Config()
    assert config.serve.host == "127.0.0.1"
    assert config.database.url == ""


def test_render_then_load_round_trips(tmp_path: Path) -> None:
    config = Config.model_validate({"serve": {"port": 9100}, "database": {"url": 'sqlite:///a "b".db'}})
    assert load_config(write(tmp_path, render_config(config)), environ={}) == config


def test_unknown_key_is_named_with_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[serve]\nprot = 8080\n")
    with pytest.raises(ConfigError, match=r"mlprod.toml: unknown key \[serve\] prot$"):
        load_config(path, environ={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[servr\]"):
        load_config(write(tmp_path, "[servr]\nport = 1\n"), environ={})


def test_wrong_type_says_what_was_expected_and_got(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[serve\] port: Input should be a valid integer.*got 'eighty'"):
        load_config(write(tmp_path, '[serve]\nport = "eighty"\n'), environ={})


def test_out_of_range_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[serve\] port: .*less than or equal to 65535"):
        load_config(write(tmp_path, "[serve]\nport = 70000\n"), environ={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[serve\nport = 1\n")
    with pytest.raises(ConfigError, match=r"mlprod.toml: not valid TOML"):
        load_config(path, environ={})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "mlprod.toml"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path, environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[serve]\nport = 8001\n")
    env = {"MLPROD_SERVE_PORT": "9002", "MLPROD_DATABASE_URL": "sqlite:///other.db"}
    config = load_config(path, environ=env)
    assert config.serve.port == 9002
    assert config.database.url == "sqlite:///other.db"


def test_environment_value_of_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"environment MLPROD_SERVE_PORT='x'"):
        apply_env_overrides(Config(), {"MLPROD_SERVE_PORT": "x"})


def test_overrides_do_not_touch_the_original() -> None:
    original = Config()
    apply_env_overrides(original, {"MLPROD_SERVE_PORT": "1234"})
    assert original.serve.port == 8000


def test_a_misspelled_environment_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown environment variable MLPROD_DATABSE_URL"):
        apply_env_overrides(Config(), {"MLPROD_DATABSE_URL": "postgresql://x"})
    with pytest.raises(ConfigError, match="unknown environment variable MLPROD_SERVE_PROT"):
        apply_env_overrides(Config(), {"MLPROD_SERVE_PROT": "1"})


def test_variables_that_are_not_overrides_are_allowed() -> None:
    env = {"MLPROD_HOME": "/x", "MLPROD_DEBUG": "1", "MLPROD_TEST_POSTGRES_URL": "y", "PATH": "/bin"}
    assert apply_env_overrides(Config(), env) == Config()


def test_named_tables_render_and_load_back(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "evaluate": {
                "sets": {"july": {"table": "flights", "time": "time_hour", "start": "2013-07-01"}},
                "profiles": {"my-edge": {"primary": "auc", "weights": {"auc": 1}, "constraints": ["x <= 1"]}},
            }
        }
    )
    text = render_config(config)
    assert "[evaluate.sets.july]" in text and "[evaluate.profiles.my-edge]" in text
    assert load_config(write(tmp_path, text), environ={}) == config


def test_a_fresh_config_ships_the_example_profiles() -> None:
    assert set(Config().evaluate.profiles) == {"accuracy-first", "edge", "regulated"}


def test_an_evaluation_set_without_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[evaluate\] sets.july.table: Field required"):
        load_config(write(tmp_path, '[evaluate.sets.july]\ntime = "t"\n'), environ={})
