"""A loop spec: what the loop retrains, on which data, how it gates, rolls out and what triggers it.

Declared per model in ``mlprod.toml`` as ``[loop.NAME]`` (or in a separate TOML file holding the same
``[loop.NAME]`` tables)::

    [loop.flights]
    model = "flights-delay"
    alias = "champion"                  # the alias the loop retrains from and moves
    training_spec = "specs/flights.toml"  # default: the champion's recorded training lineage
    training_window = "last 90d"        # or "all": every row up to the evaluation window
    evaluation_window = "last 14d"      # the freshest labelled rows, never trained on
    gate_profile = "accuracy-first"     # an evaluate profile; default: [evaluate] profile

    [loop.flights.rollout]
    steps = [5, 25, 50, 100]            # percent of requests to the challenger, step by step
    shadow = "10m"                      # mirror traffic first, answer nothing; default: no shadow
    min_step_requests = 1000            # challenger requests a step serves before it may advance
    alpha = 0.05                        # false-rollback rate of the always-valid test
    margin = 0.01                       # largest accuracy loss still promoted
    effect = 0.02                       # the loss the test is tuned to catch fastest

    [loop.flights.triggers]
    schedule = "7d"                     # retrain at least this often
    new_rows = 10000                    # rows committed since the champion's training commit
    incident = true                     # a monitoring incident (drift that matters, estimate low)
    realized_floor = 0.75               # realized accuracy below this once labels arrive
    manual = true                       # `mlprod loop once NAME`

    [loop.flights.slo]
    error_rate = 0.01                   # failed requests per request
    p99_ms = 50

``LoopSpec.parse`` checks the shape (windows, durations, steps); ``check_loop`` checks the names
against a workspace: the model, the alias, the training spec's table and feature set, the profile.

Examples:
    >>> spec = LoopSpec.parse("flights", {"model": "flights-delay", "evaluation_window": "last 2 weeks"})
    >>> spec.training_window, spec.evaluation_window.days, spec.rollout.steps
    (Window(days=None), 14, (5, 25, 50, 100))
    >>> LoopSpec.parse("flights", {"model": "m", "rollout": {"steps": [5, 50, 25, 100]}})
    Traceback (most recent call last):
    ...
    mlprod.errors.InvalidInputError: [loop.flights] rollout.steps: rollout steps must be strictly increasing, got [5, 50, 25, 100]
"""  # noqa: E501

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from mlprod.errors import InvalidInputError
from mlprod.features.durations import format_duration, parse_duration
from mlprod.loop.simulation import check_steps
from mlprod.names import check_name
from mlprod.suggest import did_you_mean

_WINDOW = re.compile(r"^last\s+(\d+)\s*(d|days?|w|weeks?)$")
_WINDOW_HELP = "write 'all' or 'last N days' / 'last N weeks' (e.g. 'last 90 days', 'last 13w')"


@dataclass(frozen=True)
class Window:
    """A span of data ending now: the last ``days`` days, or everything (``days`` None)."""

    days: int | None

    @classmethod
    def parse(cls, text: str, *, what: str) -> Window:
        cleaned = " ".join(str(text).lower().split())
        if cleaned == "all":
            return cls(None)
        match = _WINDOW.match(cleaned)
        if match is None:
            raise ValueError(f"{what} {text!r} does not parse: {_WINDOW_HELP}")
        count = int(match.group(1)) * (7 if match.group(2).startswith("w") else 1)
        if count <= 0:
            raise ValueError(f"{what} {text!r} must be longer than zero days")
        return cls(count)

    @property
    def span(self) -> timedelta | None:
        return None if self.days is None else timedelta(days=self.days)

    def __str__(self) -> str:
        return "all" if self.days is None else f"last {self.days} days"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutSpec(_Table):
    """Shadow, then canary steps decided by the always-valid test (``mlprod.loop.MixtureSPRT``)."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    shadow: timedelta | None = None
    min_step_requests: int = Field(default=1_000, ge=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    margin: float = Field(default=0.01, ge=0, lt=1)
    effect: float = Field(default=0.02, gt=0, lt=1)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError(
                f"rollout steps must be a list of percentages such as [5, 25, 50, 100], got {value!r}"
            )
        try:
            check_steps(list(value))
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("shadow", mode="before")
    @classmethod
    def _shadow(cls, value: Any) -> Any:
        return None if value in (None, "", "none") else _duration(value, "shadow duration")


class TriggerSpec(_Table):
    """What starts a cycle; each firing is recorded with its evidence."""

    schedule: timedelta | None = None
    new_rows: int | None = Field(default=None, gt=0)
    incident: bool = True
    realized_floor: float | None = Field(default=None, gt=0, lt=1)
    manual: bool = True

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return None if value in (None, "", "none") else _duration(value, "schedule")


class SloSpec(_Table):
    """Service objectives a canary step must keep (checked on the challenger's requests)."""

    error_rate: float = Field(default=0.01, ge=0, lt=1)
    p99_ms: float = Field(default=100.0, gt=0)


class LoopSpec(_Table):
    """One model's loop (see the module docstring for the TOML form)."""

    name: str
    model: str
    alias: str = "champion"
    training_spec: str | None = None
    training_window: Window = Window(None)
    evaluation_window: Window = Window(14)
    gate_profile: str | None = None
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    triggers: TriggerSpec = Field(default_factory=TriggerSpec)
    slo: SloSpec = Field(default_factory=SloSpec)

    @field_validator("training_window", mode="before")
    @classmethod
    def _training_window(cls, value: Any) -> Any:
        return value if isinstance(value, Window) else Window.parse(value, what="training window")

    @field_validator("evaluation_window", mode="before")
    @classmethod
    def _evaluation_window(cls, value: Any) -> Any:
        window = value if isinstance(value, Window) else Window.parse(value, what="evaluation window")
        if window.days is None:
            raise ValueError(
                "evaluation window cannot be 'all': it is the freshest labelled data, kept out of "
                "training (e.g. 'last 14 days')"
            )
        return window

    @field_validator("name", "model")
    @classmethod
    def _valid_name(cls, value: str, info: ValidationInfo) -> str:
        try:
            return check_name(value, "loop" if info.field_name == "name" else "model")
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any], *, where: str | None = None) -> LoopSpec:
        """Validate one ``[loop.NAME]`` table; every problem is named with its key."""
        where = where or f"[loop.{name}]"
        if not isinstance(raw, Mapping):
            raise InvalidInputError(f"{where}: must be a table of settings, got {raw!r}")
        if "name" in raw:
            raise InvalidInputError(f"{where}: the loop's name is its table name; remove the key 'name'")
        try:
            return cls.model_validate({**raw, "name": name})
        except ValidationError as exc:
            problems = "; ".join(
                _problem(e["loc"], e["type"], e["msg"], e.get("input")) for e in exc.errors()
            )
            raise InvalidInputError(f"{where} {problems}") from None

    def describe(self) -> dict[str, str]:
        """The spec as setting -> text, for listings."""
        rollout = self.rollout
        triggers = [
            f"every {format_duration(self.triggers.schedule)}" if self.triggers.schedule else "",
            f"{self.triggers.new_rows:,} new rows" if self.triggers.new_rows else "",
            "incidents" if self.triggers.incident else "",
            f"realized accuracy < {self.triggers.realized_floor}" if self.triggers.realized_floor else "",
            "manual" if self.triggers.manual else "",
        ]
        return {
            "model": f"{self.model}@{self.alias}",
            "training spec": self.training_spec or "the champion's recorded lineage",
            "training window": str(self.training_window),
            "evaluation window": str(self.evaluation_window),
            "gate profile": self.gate_profile or "the [evaluate] profile",
            "rollout": (f"shadow {format_duration(rollout.shadow)} → " if rollout.shadow else "")
            + " → ".join(f"{step} %" for step in rollout.steps)
            + f" (>= {rollout.min_step_requests:,} requests a step; mSPRT alpha {rollout.alpha}, "
            f"margin {rollout.margin}, effect {rollout.effect})",
            "triggers": ", ".join(t for t in triggers if t) or "none",
            "SLOs": f"error rate <= {self.slo.error_rate}, p99 <= {self.slo.p99_ms:g} ms",
        }


def parse_loops(tables: Mapping[str, Any], *, where: str = "mlprod.toml") -> dict[str, LoopSpec]:
    """Every ``[loop.NAME]`` table of ``tables`` (the ``loop`` mapping of a config) as a spec."""
    if not isinstance(tables, Mapping):
        raise InvalidInputError(f"{where}: [loop] must hold one table per loop ([loop.NAME])")
    return {
        name: LoopSpec.parse(name, raw, where=f"{where} [loop.{name}]")
        for name, raw in sorted(tables.items())
    }


def read_loop_file(path: Path) -> dict[str, LoopSpec]:
    """The loop specs of a TOML file holding ``[loop.NAME]`` tables, as in ``mlprod.toml``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read loop spec {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid TOML: {exc}") from exc
    other = sorted(set(raw) - {"loop"})
    if other:
        raise InvalidInputError(
            f"{path}: a loop file holds only [loop.NAME] tables, found {', '.join(other)}"
        )
    if not raw.get("loop"):
        raise InvalidInputError(f"{path}: no loop spec in it; declare one as [loop.NAME]")
    return parse_loops(raw["loop"], where=str(path))


def _duration(value: Any, what: str) -> timedelta:
    if not isinstance(value, str | timedelta):
        raise ValueError(f"{what} must be a duration such as '10m' or '7d', got {value!r}")
    try:
        return parse_duration(value, what=what)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


def _problem(loc: tuple[int | str, ...], kind: str, message: str, got: Any) -> str:
    """One validation error as ``key: what``; an unknown key gets the closest and the valid keys."""
    path = [str(part) for part in loc]
    where = ".".join(path) or "spec"
    if kind == "extra_forbidden":
        sections: dict[str, type[BaseModel]] = {
            "rollout": RolloutSpec,
            "triggers": TriggerSpec,
            "slo": SloSpec,
        }
        section = sections.get(path[0], LoopSpec)
        keys = [key for key in section.model_fields if key != "name"]
        unknown = path[-1]
        return f"{where}: unknown key {unknown!r}{did_you_mean(unknown, keys)}; valid keys: {', '.join(keys)}"
    if kind == "missing":
        return f"{where}: required"
    if kind == "value_error":
        return f"{where}: {message.removeprefix('Value error, ')}"
    return f"{where}: {message} (got {got!r})"
