"""Profiles and constraints: parsing, validation messages, the built-ins and their config round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlprod.config import Config
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.profiles import (
    BUILTIN_PROFILES,
    DEFAULT_DIRECTIONS,
    Constraint,
    Profile,
    get_profile,
    load_profiles,
    parse_constraint,
)

MINIMAL: dict[str, Any] = {"primary": "auc", "weights": {"auc": 1, "latency_p99_ms": 1}}


def test_default_directions_follow_the_design_list() -> None:
    lower = {name for name, direction in DEFAULT_DIRECTIONS.items() if direction == "lower"}
    assert lower == {
        "log_loss", "brier", "ece", "rmse", "mae", "robustness_drop", "dp_difference", "eo_difference",
        "latency_p50_ms", "latency_p99_ms", "artifact_mb", "memory_mb", "cost_per_million",
    }  # fmt: skip
    assert DEFAULT_DIRECTIONS["auc"] == DEFAULT_DIRECTIONS["throughput_rows_per_s"] == "higher"
    assert DEFAULT_DIRECTIONS["interpretability"] == DEFAULT_DIRECTIONS["worst_slice_auc"] == "higher"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency_p99_ms <= 10", Constraint("latency_p99_ms", "<=", 10.0)),
        ("  artifact_mb<5.5 ", Constraint("artifact_mb", "<", 5.5)),
        ("interpretability >= 0.5", Constraint("interpretability", ">=", 0.5)),
        ("auc > 0.7", Constraint("auc", ">", 0.7)),
        ("dp_difference == 0", Constraint("dp_difference", "=", 0.0)),
        ("robustness_drop >= -1e-3", Constraint("robustness_drop", ">=", -0.001)),
    ],
)
def test_parse_constraint(text: str, expected: Constraint) -> None:
    assert parse_constraint(text) == expected
    assert parse_constraint(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["latency_p99_ms", "latency_p99_ms <= fast", "<= 10", "p99 ~ 10", "x <= inf", ""]
)
def test_parse_constraint_refuses_bad_text_with_an_example(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"Cannot parse constraint .* e\.g\. 'latency_p99_ms <= 10'"):
        parse_constraint(text)


def test_constraint_check_gives_reasons() -> None:
    assert parse_constraint("latency_p99_ms <= 10").check(14.2) == "latency_p99_ms = 14.2 > 10"
    assert parse_constraint("latency_p99_ms <= 10").check(10.0) is None
    assert parse_constraint("latency_p99_ms < 10").check(10.0) == "latency_p99_ms = 10 >= 10"
    assert parse_constraint("interpretability >= 0.5").check(0.3) == "interpretability = 0.3 < 0.5"
    assert parse_constraint("auc > 0.5").check(0.5) == "auc = 0.5 <= 0.5"
    assert parse_constraint("auc = 1").check(0.9) == "auc = 0.9 != 1"
    assert parse_constraint("auc = 1").check(1.0) is None
    assert parse_constraint("auc > 0.5").check(None) == "auc missing"
    assert parse_constraint("auc > 0.5").check(math.nan) == "auc missing"
    assert str(Constraint("latency_p99_ms", "<=", 10)) == "latency_p99_ms <= 10"
    with pytest.raises(InvalidInputError, match="operator '~'"):
        Constraint("auc", "~", 1.0)


def test_builtin_profiles_are_the_three_examples() -> None:
    assert set(BUILTIN_PROFILES) == {"accuracy-first", "edge", "regulated"}
    first, edge, regulated = (BUILTIN_PROFILES[n] for n in ("accuracy-first", "edge", "regulated"))
    assert first.weights == {
        "auc": 10,
        "log_loss": 2,
        "ece": 1,
        "latency_p99_ms": 0.5,
        "cost_per_million": 0.5,
    }
    assert [str(c) for c in first.constraints] == ["latency_p99_ms <= 50"]
    assert edge.weights == {
        "auc": 2, "latency_p99_ms": 4, "artifact_mb": 3, "memory_mb": 2, "cost_per_million": 1,
        "throughput_rows_per_s": 1,
    }  # fmt: skip
    assert [str(c) for c in edge.constraints] == ["latency_p99_ms <= 10", "artifact_mb <= 5"]
    assert regulated.weights == {
        "auc": 3,
        "dp_difference": 3,
        "eo_difference": 3,
        "interpretability": 3,
        "ece": 1,
    }
    assert [str(c) for c in regulated.constraints] == ["dp_difference <= 0.1", "interpretability >= 0.5"]
    for profile in BUILTIN_PROFILES.values():
        assert profile.primary == "auc" and profile.metrics[0] == "auc"
        assert profile.description and "\n" not in profile.description


@pytest.mark.parametrize("name", sorted(BUILTIN_PROFILES))
def test_builtin_profiles_roundtrip_through_config(name: str) -> None:
    profile = BUILTIN_PROFILES[name]
    again = Profile.from_config(name, profile.to_config())
    assert again == profile
    assert again.definition_hash() == profile.definition_hash()


def test_a_fresh_config_loads_to_the_builtins() -> None:
    assert load_profiles(Config().evaluate.profiles) == BUILTIN_PROFILES
    assert load_profiles({}) == BUILTIN_PROFILES


def test_configured_profiles_extend_and_replace_the_builtins() -> None:
    profiles = load_profiles({"edge": MINIMAL, "mine": {**MINIMAL, "description": "Mine."}})
    assert set(profiles) == {"accuracy-first", "edge", "regulated", "mine"}
    assert profiles["edge"].metrics == ["auc", "latency_p99_ms"]
    assert profiles["edge"].constraints == ()
    assert get_profile("mine", profiles).description == "Mine."
    assert BUILTIN_PROFILES["edge"].constraints  # the built-in itself is untouched


def test_an_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(
        NotFoundError, match="Unknown profile 'fast'; known profiles: accuracy-first, edge, regulated"
    ):
        get_profile("fast")
    with pytest.raises(LookupError):
        get_profile("fast", {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**MINIMAL, "wieghts": {}}, r"unknown key\(s\) wieghts; expected description, primary"),
        ({"weights": {"auc": 1}}, "missing key 'primary'"),
        ({"primary": "auc"}, "missing key 'weights'"),
        ({"primary": 1, "weights": {"auc": 1}}, "'primary' and 'description' must be strings"),
        ({"primary": "auc", "weights": [1]}, "'weights' must be a table"),
        ({"primary": "auc", "weights": {"auc": "high"}}, "weights.auc must be a number, got 'high'"),
        ({"primary": "auc", "weights": {"auc": True}}, "weights.auc must be a number, got True"),
        (
            {"primary": "auc", "weights": {"auc": 1, "ece": -1}},
            r"weights must be finite and >= 0, got \{'ece': -1.0\}",
        ),
        ({"primary": "auc", "weights": {"auc": 0, "ece": 0}}, "weights must have a positive sum"),
        ({"primary": "f1", "weights": {"auc": 1}}, r"primary metric 'f1' is not in weights \(auc\)"),
        ({**MINIMAL, "directions": {"auc": "up"}}, "directions.auc is 'up'; expected 'higher' or 'lower'"),
        (
            {"primary": "auc", "weights": {"auc": 1, "carbon_g": 1}},
            "metric 'carbon_g' has no known direction",
        ),
        ({**MINIMAL, "constraints": "auc > 0.5"}, "'constraints' must be a list of strings"),
        ({**MINIMAL, "constraints": ["auc is big"]}, "Cannot parse constraint 'auc is big'"),
    ],
)
def test_from_config_refuses_bad_tables(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"^Profile 'p': .*{message}"):
        Profile.from_config("p", raw)


def test_from_config_refuses_a_non_table() -> None:
    with pytest.raises(InvalidInputError, match="Profile 'p': expected a table, got list"):
        Profile.from_config("p", [])


def test_a_direction_override_makes_an_unknown_metric_usable() -> None:
    profile = Profile.from_config(
        "green", {"primary": "auc", "weights": {"carbon_g": 1, "auc": 2}, "directions": {"carbon_g": "lower"}}
    )
    assert profile.metrics == ["auc", "carbon_g"]  # primary first
    assert profile.direction("carbon_g") == "lower"
    with pytest.raises(InvalidInputError, match="metric 'x' has no known direction"):
        profile.direction("x")


def test_definition_hash_follows_what_scoring_depends_on() -> None:
    base = Profile.from_config("p", MINIMAL)
    assert Profile.from_config("q", {**MINIMAL, "description": "other words"}).definition_hash() == (
        base.definition_hash()
    )
    assert (
        Profile.from_config("p", {"primary": "auc", "weights": {"auc": 1.0, "latency_p99_ms": 1.0}}) == base
    )
    changed = [
        {"primary": "auc", "weights": {"auc": 2, "latency_p99_ms": 1}},
        {**MINIMAL, "directions": {"latency_p99_ms": "higher"}},
        {**MINIMAL, "constraints": ["latency_p99_ms <= 10"]},
    ]
    hashes = {Profile.from_config("p", raw).definition_hash() for raw in changed}
    assert len(hashes | {base.definition_hash()}) == 4
    assert len(base.definition_hash()) == 64


def test_a_profile_keeps_its_own_copy_of_the_weights() -> None:
    weights = {"auc": 1.0}
    profile = Profile(name="p", primary="auc", weights=weights)
    weights["auc"] = 5.0
    assert profile.weights == {"auc": 1.0}
