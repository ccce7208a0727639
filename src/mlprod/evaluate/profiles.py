"""Profiles: what matters when choosing between models, as weights, directions and hard limits.

A ``Profile`` names a primary metric, a weight per metric (relative importance in the utility, see
``mlprod.evaluate.utility``), optional direction overrides, and constraints a model must meet to be
ranked at all. Every weighted metric needs a direction: ``DEFAULT_DIRECTIONS`` knows the metric
names mlprod reports; any other metric must be given one in the profile, so a lower-is-better
number can never silently count as a gain.

Profiles come from ``[evaluate.profiles.<name>]`` tables in ``mlprod.toml``; the three shipped
examples (``accuracy-first``, ``edge``, ``regulated``) are the config's defaults and are always
available as ``BUILTIN_PROFILES``. A configured table with a built-in's name replaces it entirely.

Examples:
    >>> parse_constraint("latency_p99_ms <= 10").check(14.2)
    'latency_p99_ms = 14.2 > 10'
    >>> edge = get_profile("edge")
    >>> edge.metrics[:3], edge.direction("latency_p99_ms")
    (['auc', 'latency_p99_ms', 'artifact_mb'], 'lower')
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal, get_args

from mlprod.config import EXAMPLE_PROFILES
from mlprod.errors import InvalidInputError, NotFoundError

Direction = Literal["higher", "lower"]
_DIRECTIONS: tuple[str, ...] = get_args(Direction)

_HIGHER = ("auc", "accuracy", "f1", "r2", "worst_slice_auc", "throughput_rows_per_s", "interpretability")
_LOWER = (
    "log_loss", "brier", "ece", "rmse", "mae", "robustness_drop", "dp_difference", "eo_difference",
    "latency_p50_ms", "latency_p99_ms", "artifact_mb", "memory_mb", "cost_per_million",
)  # fmt: skip
DEFAULT_DIRECTIONS: dict[str, Direction] = {
    **{name: "higher" for name in _HIGHER},
    **{name: "lower" for name in _LOWER},
}

_OPERATORS = ("<=", "<", ">=", ">", "=")
# The relation that holds when a constraint fails, for the failure reason.
_BROKEN = {"<=": ">", "<": ">=", ">=": "<", ">": "<=", "=": "!="}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|=|<|>)\s*(\S+)\s*$")
_CONFIG_KEYS = ("description", "primary", "weights", "directions", "constraints")


@dataclass(frozen=True)
class Constraint:
    """A hard limit on one metric, e.g. ``latency_p99_ms <= 10``; ``op`` is one of <=, <, >=, >, =."""

    metric: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, Real):
            raise InvalidInputError(f"Constraint on '{self.metric}' needs a number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        if self.op not in _OPERATORS:
            raise InvalidInputError(
                f"Constraint on '{self.metric}' has operator {self.op!r}; "
                f"expected one of {', '.join(_OPERATORS)}"
            )
        if not math.isfinite(self.value):
            raise InvalidInputError(f"Constraint on '{self.metric}' needs a finite limit, got {self.value}")

    def check(self, value: float | None) -> str | None:
        """None when ``value`` satisfies the constraint, else why not (a missing value never does)."""
        if value is None or math.isnan(value):
            return f"{self.metric} missing"
        satisfied = {
            "<=": value <= self.value,
            "<": value < self.value,
            ">=": value >= self.value,
            ">": value > self.value,
            "=": value == self.value,
        }[self.op]
        if satisfied:
            return None
        return f"{self.metric} = {value:.4g} {_BROKEN[self.op]} {_number(self.value)}"

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_number(self.value)}"


def parse_constraint(text: str) -> Constraint:
    """Parse ``"metric op value"``, e.g. ``"latency_p99_ms <= 10"`` (``==`` is accepted for ``=``).

    Examples:
        >>> parse_constraint("interpretability>=0.5")
        Constraint(metric='interpretability', op='>=', value=0.5)
    """
    match = _CONSTRAINT.match(text) if isinstance(text, str) else None
    value = _float(match.group(3)) if match else None
    if match is None or value is None:
        raise InvalidInputError(
            f"Cannot parse constraint {text!r}: expected 'metric op value' with op one of "
            f"{', '.join(_OPERATORS)} and a finite number, e.g. 'latency_p99_ms <= 10'"
        )
    op = "=" if match.group(2) == "==" else match.group(2)
    return Constraint(metric=match.group(1), op=op, value=value)


@dataclass(frozen=True)
class Profile:
    """How to weigh metrics against each other when choosing a model (see the module docstring).

    ``weights`` are non-negative with a positive sum (they are normalized when scoring), and must
    include ``primary``; ``directions`` overrides ``DEFAULT_DIRECTIONS`` per metric.
    """

    name: str
    primary: str
    weights: dict[str, float]
    directions: dict[str, Direction] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        where = f"Profile '{self.name}'"
        for metric, weight in self.weights.items():
            if isinstance(weight, bool) or not isinstance(weight, Real):
                raise InvalidInputError(f"{where}: weights.{metric} must be a number, got {weight!r}")
        weights = {metric: float(weight) for metric, weight in self.weights.items()}
        bad = {metric: weight for metric, weight in weights.items() if not 0 <= weight < math.inf}
        if bad:
            raise InvalidInputError(f"{where}: weights must be finite and >= 0, got {bad}")
        if sum(weights.values()) <= 0:
            raise InvalidInputError(f"{where}: weights must have a positive sum, got {weights}")
        if self.primary not in weights:
            raise InvalidInputError(
                f"{where}: primary metric '{self.primary}' is not in weights ({', '.join(weights)}); "
                f"give it a weight, e.g. weights.{self.primary} = 1"
            )
        for metric, direction in self.directions.items():
            if direction not in _DIRECTIONS:
                raise InvalidInputError(
                    f"{where}: directions.{metric} is {direction!r}; expected 'higher' or 'lower'"
                )
        primary_first = {self.primary: weights.pop(self.primary), **weights}
        object.__setattr__(self, "weights", primary_first)
        object.__setattr__(self, "directions", dict(self.directions))
        object.__setattr__(self, "constraints", tuple(self.constraints))
        for metric in self.metrics:
            self.direction(metric)

    @property
    def metrics(self) -> list[str]:
        """The weighted metrics, primary first."""
        return list(self.weights)

    def direction(self, metric: str) -> Direction:
        """Whether higher or lower values of ``metric`` are better under this profile."""
        found = self.directions.get(metric) or DEFAULT_DIRECTIONS.get(metric)
        if found is None:
            raise InvalidInputError(
                f"Profile '{self.name}': metric '{metric}' has no known direction; "
                f'add directions.{metric} = "higher" or "lower"'
            )
        return found

    def definition_hash(self) -> str:
        """sha256 of the canonical JSON of what scoring depends on (not the name or description).

        Effective directions are hashed, so a change in ``DEFAULT_DIRECTIONS`` changes it too.
        """
        definition = {
            "primary": self.primary,
            "weights": self.weights,
            "directions": {metric: self.direction(metric) for metric in self.metrics},
            "constraints": [str(constraint) for constraint in self.constraints],
        }
        canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_config(cls, name: str, raw: Mapping[str, Any]) -> Profile:
        """A profile from its ``[evaluate.profiles.<name>]`` TOML table."""
        where = f"Profile '{name}'"
        if not isinstance(raw, Mapping):
            raise InvalidInputError(f"{where}: expected a table, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(_CONFIG_KEYS))
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(_CONFIG_KEYS)}"
            )
        for key in ("primary", "weights"):
            if key not in raw:
                raise InvalidInputError(f"{where}: missing key '{key}'")
        primary, description = raw["primary"], raw.get("description", "")
        if not isinstance(primary, str) or not isinstance(description, str):
            raise InvalidInputError(f"{where}: 'primary' and 'description' must be strings")
        constraints = raw.get("constraints", [])
        if not isinstance(constraints, list | tuple) or not all(isinstance(c, str) for c in constraints):
            raise InvalidInputError(
                f"{where}: 'constraints' must be a list of strings like \"latency_p99_ms <= 10\""
            )
        try:
            parsed = tuple(parse_constraint(text) for text in constraints)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}") from exc
        return cls(
            name=name,
            primary=primary,
            weights=_table(where, "weights", raw["weights"]),
            directions=_table(where, "directions", raw.get("directions", {})),
            constraints=parsed,
            description=description,
        )

    def to_config(self) -> dict[str, Any]:
        """The TOML table ``from_config`` reads back into an equal profile."""
        return {
            "description": self.description,
            "primary": self.primary,
            "weights": dict(self.weights),
            "directions": dict(self.directions),
            "constraints": [str(constraint) for constraint in self.constraints],
        }


def load_profiles(configured: Mapping[str, Mapping[str, Any]]) -> dict[str, Profile]:
    """The built-in profiles, extended (or replaced, name by name) by configured TOML tables."""
    profiles = dict(BUILTIN_PROFILES)
    profiles.update({name: Profile.from_config(name, raw) for name, raw in configured.items()})
    return profiles


def get_profile(name: str, profiles: Mapping[str, Profile] | None = None) -> Profile:
    """The profile called ``name`` among ``profiles`` (default: the built-ins)."""
    known = BUILTIN_PROFILES if profiles is None else profiles
    if name not in known:
        raise NotFoundError(
            f"Unknown profile '{name}'; known profiles: {', '.join(sorted(known))}. "
            f"Define it under [evaluate.profiles.{name}] in mlprod.toml"
        )
    return known[name]


def _table(where: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError(f"{where}: '{key}' must be a table of metric = value")
    return dict(value)


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _number(value: float) -> str:
    """Shortest text that reads back as ``value``: 10.0 -> '10', 14.2 -> '14.2'."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


# Built last: parsing uses the helpers above. The tables are the config's defaults (one source).
BUILTIN_PROFILES: dict[str, Profile] = {
    name: Profile.from_config(name, raw) for name, raw in EXAMPLE_PROFILES.items()
}
