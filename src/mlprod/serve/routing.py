"""Routing plans: which versions answer a model's traffic (champion, canary), which only watch it (shadows).

A request addressed to a bare model name follows the model's plan; a request naming an alias or a
version (``name@alias``, ``name/3``) goes straight there, which is how one inspects a single version.

The canary takes ``canary_percent`` of the traffic. With a request key (a field of the request chosen
by ``sticky_key``, or the caller's ``X-Route-Key`` header) the choice is sticky: the key's hash picks a
bucket in [0, 10000), so one customer always sees the same version while the percentage holds, and
raising the percentage only moves keys from champion to canary. Without a key the choice is random.
Shadows receive a copy of every request after the answer is sent; their predictions are logged, never
returned.

Examples:
    >>> plan = RoutePlan("flights", champion="@champion", canary="/7", canary_percent=25.0)
    >>> plan.choose("customer-42") == plan.choose("customer-42")
    True
    >>> sorted({plan.choose(str(i))[1] for i in range(200)})
    ['canary', 'champion']
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlprod.errors import InvalidInputError
from mlprod.models import ModelRef, parse_ref

BUCKETS = 10_000
CHAMPION = "champion"
DIRECT = "direct"
CANARY = "canary"
SHADOW = "shadow"


@dataclass(frozen=True)
class RoutePlan:
    """A model's routing: targets are ``@alias`` or ``/version`` of the same model."""

    model: str
    champion: str = "@champion"
    canary: str | None = None
    canary_percent: float = 0.0
    shadows: tuple[str, ...] = ()
    sticky_key: str | None = None
    _canary_buckets: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for target in (self.champion, self.canary, *self.shadows):
            if target is not None:
                self.target_ref(target)
        if not 0.0 <= self.canary_percent <= 100.0:
            raise InvalidInputError(f"canary_percent must be within 0..100, got {self.canary_percent}")
        if self.canary is None and self.canary_percent > 0:
            raise InvalidInputError("canary_percent is set but no canary target is given")
        if len(set(self.shadows)) != len(self.shadows):
            raise InvalidInputError(f"shadows are listed twice: {list(self.shadows)}")
        if self.sticky_key is not None and not self.sticky_key.strip():
            raise InvalidInputError("sticky_key must name a request field")
        object.__setattr__(self, "_canary_buckets", round(self.canary_percent * BUCKETS / 100))

    def target_ref(self, target: str) -> ModelRef:
        """``@alias`` or ``/version`` of this model as a reference."""
        if not (target.startswith("@") or target.startswith("/")) or len(target) < 2:
            raise InvalidInputError(
                f"route target {target!r} must be '@ALIAS' or '/VERSION' of model {self.model!r}"
            )
        return parse_ref(f"{self.model}{target}")

    def choose(self, key: str | None) -> tuple[str, str]:
        """The target answering a request with ``key`` (None: random), and its route name."""
        if self.canary is None or self._canary_buckets == 0:
            return self.champion, CHAMPION
        bucket = bucket_of(key) if key is not None else random.randrange(BUCKETS)
        if bucket < self._canary_buckets:
            return self.canary, CANARY
        return self.champion, CHAMPION

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "canary": self.canary,
            "canary_percent": self.canary_percent,
            "shadows": list(self.shadows),
            "sticky_key": self.sticky_key,
        }

    @classmethod
    def from_dict(cls, model: str, data: Mapping[str, Any]) -> RoutePlan:
        """A plan from its JSON form; unknown keys and wrong types are errors naming the field."""
        known = {"champion", "canary", "canary_percent", "shadows", "sticky_key"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown routing field(s) {unknown}; expected some of {sorted(known)}")
        plan = cls(model)
        champion = _text(data, "champion", plan.champion)
        canary = _text(data, "canary", None)
        percent = data.get("canary_percent", 0.0)
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidInputError(f"canary_percent must be a number, got {percent!r}")
        shadows = data.get("shadows", [])
        if not isinstance(shadows, list) or not all(isinstance(s, str) for s in shadows):
            raise InvalidInputError(f"shadows must be a list of targets, got {shadows!r}")
        return replace(
            plan,
            champion=champion or plan.champion,
            canary=canary,
            canary_percent=float(percent),
            shadows=tuple(shadows),
            sticky_key=_text(data, "sticky_key", None),
        )


def bucket_of(key: str) -> int:
    """A stable bucket in [0, BUCKETS) for a request key (the same in every process)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _text(data: Mapping[str, Any], name: str, default: str | None) -> str | None:
    value = data.get(name, default)
    if value is not None and not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {value!r}")
    return None if value is None else check_text(value, name)


def check_text(value: str, name: str) -> str:
    """``value`` when it is storable Unicode text (JSON allows lone surrogates, databases do not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInputError(f"{name} is not valid Unicode text") from None
    return value
