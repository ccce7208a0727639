"""Utility: one number per model under a profile, so that models with many metrics can be ranked.

The method is Dynascore (Ma et al. 2021, "Dynaboard"), with three fixes. Each weighted metric is
first made higher-is-better: lower-is-better metrics (``Profile.direction``) are negated, so more
latency, memory or cost always lowers utility (the reference notebook's example scores memory the
wrong way round). Candidates are sorted by the primary metric and, over consecutive pairs whose
primary differs by more than ``AMRS_CUTOFF`` times the largest absolute primary value, each
metric's *average marginal rate of substitution* is how much of metric m the pool trades for one
unit of primary. The reference averages the pairs' ratios, ``mean(|Δm| / Δprimary)`` (``method=
"mean"``); one pair of near-tied models then divides by a tiny Δprimary and swamps the average (a
model 0.0001 AUC better and 10 ms slower multiplies latency's AMRS a hundredfold, which erases
latency from every score). The default, ``method="weighted"``, weighs each pair by its Δprimary:
``AMRS_m = Σ|Δm| / ΣΔprimary``, which a near-tie barely moves. Utility is
``Σ_m (w_m / Σw) · value_m / AMRS_m``, i.e. every metric is expressed in primary units (the
primary's own AMRS is 1) and weighted.

AMRS depends on the pool, so scores shift whenever the pool changes. Here the AMRS values live in an
explicit, JSON-serializable ``PoolSnapshot``: ``score(new, profile, snapshot=old)`` scores new
candidates in the old units without changing the old candidates' utilities, and a stored snapshot
recomputes every score exactly.

Degenerate cases:

- A value that is absent, None, NaN or infinite makes the candidate unscorable: its utility is None,
  the metric is listed in ``missing`` (never treated as 0), and it takes no part in the AMRS.
- A metric with AMRS 0 (it does not change between the compared candidates) contributes 0: it
  cannot change a ranking, and nothing is divided by zero.
- No pair differs enough in the primary (e.g. all equal): each other metric is scaled by its range
  over the pool (max - min, 0 contributes 0), and the snapshot's ``notes`` say so.
- Fewer than two scorable candidates: utility is the weighted primary value alone.

Examples:
    >>> profile = Profile(name="demo", primary="auc", weights={"auc": 3, "latency_p99_ms": 1})
    >>> pool = {
    ...     "a": {"auc": 0.5, "latency_p99_ms": 10},
    ...     "b": {"auc": 0.75, "latency_p99_ms": 30},
    ...     "c": {"auc": 0.875, "latency_p99_ms": 80},
    ... }
    >>> ranked, snapshot = score(pool, profile)
    >>> round(snapshot.amrs["latency_p99_ms"], 2)  # (20 + 50) / (0.25 + 0.125)
    186.67
    >>> [(c.name, c.rank, round(c.utility, 4)) for c in ranked]
    [('c', 1, 0.5491), ('b', 2, 0.5223), ('a', 3, 0.3616)]
    >>> score(pool, profile, method="mean")[1].amrs  # the reference: mean of 20 / 0.25 and 50 / 0.125
    {'auc': 1.0, 'latency_p99_ms': 240.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal

from mlprod.errors import InvalidInputError
from mlprod.evaluate.profiles import DEFAULT_DIRECTIONS, Constraint, Direction, Profile, parse_constraint
from mlprod.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = [
    "AMRS_CUTOFF",
    "DEFAULT_DIRECTIONS",
    "AmrsMethod",
    "Constraint",
    "Direction",
    "PoolSnapshot",
    "Profile",
    "ScoredCandidate",
    "build_snapshot",
    "pareto_front",
    "parse_constraint",
    "score",
]

AMRS_CUTOFF = 1e-4
AmrsMethod = Literal["weighted", "mean"]
Pool = Mapping[str, Mapping[str, float | None]]
_METHOD_NOTES = {
    "single": "fewer than two scorable candidates: utility is the weighted {primary} alone",
    "range": "no two candidates differ in {primary} by more than {cutoff:g} x max |{primary}|: "
    "other metrics are scaled by their range over the pool instead of AMRS",
}
_ZERO_NOTES = {
    "amrs": "its AMRS is 0 (it does not change between candidates that differ in {primary})",
    "range": "it does not change across the pool",
}


@dataclass(frozen=True)
class PoolSnapshot:
    """The scale (AMRS, or range in the fallback) of every metric, fixed from one pool of candidates.

    ``candidates`` and ``metrics`` are the scorable candidates the scales came from, with their raw
    values; ``profile_hash`` is ``Profile.definition_hash()`` of the profile it was built for.
    """

    profile: str
    profile_hash: str
    candidates: tuple[str, ...]
    metrics: dict[str, dict[str, float]]
    amrs: dict[str, float]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable data; ``from_dict`` reads it back into an equal snapshot."""
        return {
            "profile": self.profile,
            "profile_hash": self.profile_hash,
            "candidates": list(self.candidates),
            "metrics": {name: dict(values) for name, values in self.metrics.items()},
            "amrs": dict(self.amrs),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PoolSnapshot:
        try:
            return cls(
                profile=str(raw["profile"]),
                profile_hash=str(raw["profile_hash"]),
                candidates=tuple(str(name) for name in raw["candidates"]),
                metrics={
                    str(name): {str(m): float(v) for m, v in values.items()}
                    for name, values in raw["metrics"].items()
                },
                amrs={str(metric): float(value) for metric, value in raw["amrs"].items()},
                notes=tuple(str(note) for note in raw.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(
                f"Not a pool snapshot ({type(exc).__name__}: {exc}); "
                "expected what PoolSnapshot.to_dict() writes"
            ) from exc


@dataclass(frozen=True)
class ScoredCandidate:
    """One candidate's utility under a profile, and why it is or is not ranked.

    ``rank`` is 1 for the best candidate that is scorable and meets every constraint, None for the
    others; ``contributions`` holds each metric's weighted, converted value (they sum to utility);
    ``pareto`` is True when no other scorable candidate is at least as good on every weighted metric
    and better on one.
    """

    name: str
    utility: float | None
    rank: int | None
    contributions: dict[str, float]
    failures: tuple[str, ...]
    missing: tuple[str, ...]
    pareto: bool


def build_snapshot(pool: Pool, profile: Profile, *, method: AmrsMethod = "weighted") -> PoolSnapshot:
    """Fix each weighted metric's scale from the scorable candidates of ``pool``.

    Candidates are ordered by direction-adjusted primary, ties by name, so the result never
    depends on the order of ``pool``.
    """
    values, missing = _read(pool, profile)
    metrics, primary = profile.metrics, profile.primary
    signs = np.array([_sign(profile.direction(metric)) for metric in metrics])
    names = sorted(values, key=lambda name: (signs[0] * values[name][primary], name))
    rows = [[values[name][metric] for metric in metrics] for name in names]
    scales, how = _scales(np.array(rows, dtype=float).reshape(len(names), len(metrics)) * signs, method)
    notes = [f"{name} left out: missing {', '.join(absent)}" for name, absent in missing.items()]
    if how in _METHOD_NOTES:
        notes.append(_METHOD_NOTES[how].format(primary=primary, cutoff=AMRS_CUTOFF))
    if how in _ZERO_NOTES:
        zeros = [metric for metric, scale in zip(metrics, scales, strict=True) if scale == 0]
        notes += [f"{metric} contributes 0: {_ZERO_NOTES[how].format(primary=primary)}" for metric in zeros]
    return PoolSnapshot(
        profile=profile.name,
        profile_hash=profile.definition_hash(),
        candidates=tuple(names),
        metrics={name: dict(values[name]) for name in names},
        amrs={metric: float(scale) for metric, scale in zip(metrics, scales, strict=True)},
        notes=tuple(notes),
    )


def score(
    candidates: Pool,
    profile: Profile,
    *,
    snapshot: PoolSnapshot | None = None,
    method: AmrsMethod = "weighted",
) -> tuple[list[ScoredCandidate], PoolSnapshot]:
    """Utility, constraint failures, rank and Pareto membership of every candidate.

    Without ``snapshot`` the scales come from ``candidates`` themselves (by ``method``). The list
    is sorted: ranked candidates by utility (best first), then those failing a constraint (by
    utility), then the unscorable; ties are broken by name.
    """
    if snapshot is None:
        snapshot = build_snapshot(candidates, profile, method=method)
    elif snapshot.profile_hash != profile.definition_hash():
        raise InvalidInputError(
            f"The pool snapshot was built for profile '{snapshot.profile}' with a different definition "
            f"than profile '{profile.name}' has now; build a new snapshot with build_snapshot()"
        )
    values, missing = _read(candidates, profile)
    total = sum(profile.weights.values())
    signs = {metric: _sign(profile.direction(metric)) for metric in profile.metrics}
    front = pareto_front({name: [signs[m] * v for m, v in row.items()] for name, row in values.items()})
    scored = []
    for name, row in candidates.items():
        contributions = {
            metric: _contribution(profile.weights[metric] / total, signs[metric] * value, snapshot, metric)
            for metric, value in values.get(name, {}).items()
        }
        failures = tuple(
            reason
            for constraint in profile.constraints
            if (reason := constraint.check(_value(name, constraint.metric, row.get(constraint.metric))))
        )
        utility = math.fsum(contributions.values()) if name in values else None
        absent = missing.get(name, ())
        scored.append(ScoredCandidate(name, utility, None, contributions, failures, absent, name in front))
    scored.sort(key=lambda c: (c.utility is None, bool(c.failures), -(c.utility or 0.0), c.name))
    ranked = [c for c in scored if c.utility is not None and not c.failures]
    result = [replace(c, rank=position) for position, c in enumerate(ranked, start=1)]
    result += scored[len(ranked) :]
    return result, snapshot


def pareto_front(points: Mapping[str, Sequence[float]]) -> set[str]:
    """Names of the points no other point dominates (higher is better in every coordinate).

    A point is dominated when another is >= everywhere and > somewhere; equal points are both kept.

    Examples:
        >>> sorted(pareto_front({"a": [1, 2], "b": [2, 1], "c": [1, 1], "d": [2, 1]}))
        ['a', 'b', 'd']
    """
    names = list(points)
    if not names:
        return set()
    if len({len(points[name]) for name in names}) != 1:
        raise InvalidInputError("pareto_front needs points of equal length, one value per metric")
    matrix = np.array([[float(x) for x in points[name]] for name in names])
    at_least = (matrix[:, None, :] >= matrix[None, :, :]).all(axis=2)
    better = (matrix[:, None, :] > matrix[None, :, :]).any(axis=2)
    dominated = np.asarray((at_least & better).any(axis=0)).tolist()
    return {name for name, is_dominated in zip(names, dominated, strict=True) if not is_dominated}


def _read(pool: Pool, profile: Profile) -> tuple[dict[str, dict[str, float]], dict[str, tuple[str, ...]]]:
    """Split ``pool`` into the scorable candidates' values and, for the others, their missing metrics."""
    values: dict[str, dict[str, float]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for name, row in pool.items():
        if not isinstance(row, Mapping):
            raise InvalidInputError(f"Candidate '{name}': expected a mapping of metric -> value, got {row!r}")
        read = {metric: _value(name, metric, row.get(metric)) for metric in profile.metrics}
        absent = tuple(metric for metric, value in read.items() if value is None)
        if absent:
            missing[name] = absent
        else:
            values[name] = {metric: value for metric, value in read.items() if value is not None}
    return values, missing


def _scales(signed: np.ndarray, method: AmrsMethod) -> tuple[np.ndarray, str]:
    """Each column's AMRS against column 0 (rows sorted by it), its range as the fallback; column 0 is 1.

    The method is "amrs", "range" (no consecutive pair differs enough in the primary) or "single"
    (fewer than two rows: nothing to trade off, every other column gets 0).
    """
    if len(signed) < 2:
        scales, how = np.zeros(signed.shape[1]), "single"
    else:
        delta = np.diff(signed, axis=0)
        # The reference uses max(primary); the absolute value keeps a negated primary meaningful.
        qualifying = delta[:, 0] > AMRS_CUTOFF * np.abs(signed[:, 0]).max()
        if qualifying.any():
            steps = np.abs(delta[qualifying])
            if method == "mean":
                scales = (steps / delta[qualifying, :1]).mean(axis=0)
            else:
                scales = steps.sum(axis=0) / delta[qualifying, 0].sum()
            how = "amrs"
        else:
            scales, how = signed.max(axis=0) - signed.min(axis=0), "range"
    scales[0] = 1.0
    return scales, how


def _value(name: str, metric: str, raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, Real):
        raise InvalidInputError(f"Candidate '{name}': {metric} must be a number, got {raw!r}")
    value = float(raw)
    return value if math.isfinite(value) else None


def _contribution(weight: float, signed_value: float, snapshot: PoolSnapshot, metric: str) -> float:
    if metric not in snapshot.amrs:
        raise InvalidInputError(f"The pool snapshot has no scale for '{metric}'; build a new snapshot")
    scale = snapshot.amrs[metric]
    return 0.0 if scale == 0 else weight * signed_value / scale


def _sign(direction: Direction) -> float:
    return 1.0 if direction == "higher" else -1.0
