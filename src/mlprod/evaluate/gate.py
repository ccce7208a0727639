"""The promotion gate: does a challenger beat the champion under a profile?

The verdict is reasoned and never silently passes:

- **inconclusive** when the two reports are not comparable (different evaluation set or dataset
  commit: nothing else is judged), or when a metric the decision needs is missing from either and
  nothing already fails;
- **fail** when the challenger breaks one of the profile's constraints, when its worst slice (or
  its score on the champion's worst slice) is worse than the champion's worst by more than
  ``max_slice_regression``, or when its utility does not beat the champion's by more than
  ``min_improvement``;
- **pass** otherwise, with every check that passed listed.

Utilities are in the units of ``snapshot`` when given (e.g. the leaderboard the candidates come
from, so that the size of each difference counts); otherwise in units computed from the two alone,
where each metric counts by the direction of its difference more than by its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mlprod.errors import InvalidInputError
from mlprod.evaluate.leaderboard import candidate_metrics
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.utility import PoolSnapshot, Profile, score

Decision = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class GateVerdict:
    """The decision, every reason checked (blocking ones first), and both utilities when computed."""

    decision: Decision
    reasons: tuple[str, ...]
    champion: str
    challenger: str
    profile: str
    champion_utility: float | None
    challenger_utility: float | None
    blocking: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """What decided it: the blocking reasons, or the utility comparison of a pass."""
        if self.blocking:
            return "; ".join(self.blocking)
        return next((r for r in self.reasons if r.startswith("utility")), self.reasons[0])

    @property
    def passed(self) -> bool:
        return self.decision == "pass"


def gate(
    champion: EvaluationReport,
    challenger: EvaluationReport,
    profile: Profile,
    *,
    max_slice_regression: float = 0.02,
    min_improvement: float = 0.0,
    snapshot: PoolSnapshot | None = None,
) -> GateVerdict:
    """Judge ``challenger`` against ``champion`` (see the module docstring for the rules)."""
    for name, value in (("max_slice_regression", max_slice_regression), ("min_improvement", min_improvement)):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"gate: {name} must be a finite number >= 0, got {value}")
    mismatch = _not_comparable(champion, challenger)
    if mismatch is not None:
        return GateVerdict(
            "inconclusive", (mismatch,), champion.ref, challenger.ref, profile.name, None, None, (mismatch,)
        )
    failures: list[str] = []
    unknown: list[str] = []
    passed: list[str] = []
    metrics = {
        champion.ref: candidate_metrics(champion, profile),
        challenger.ref: candidate_metrics(challenger, profile),
    }
    for ref, values in metrics.items():
        missing = sorted(name for name, value in values.items() if value is None)
        if missing:
            unknown.append(f"{ref} has no measured {', '.join(missing)}")
    for constraint in profile.constraints:
        measured = metrics[challenger.ref][constraint.metric]
        reason = constraint.check(measured)
        if reason is None:
            passed.append(f"constraint {constraint} holds")
        elif measured is not None:
            failures.append(f"constraint {constraint} broken: {reason}")
    _check_slices(champion, challenger, max_slice_regression, failures, unknown, passed)

    utilities: dict[str, float | None] = {champion.ref: None, challenger.ref: None}
    if not any(reason.startswith(f"{ref} has no") for ref in metrics for reason in unknown):
        scored, _ = score(metrics, profile, snapshot=snapshot)
        utilities = {s.name: s.utility for s in scored}
        mine, theirs = utilities[challenger.ref], utilities[champion.ref]
        if mine is not None and theirs is not None:
            margin = f" + {min_improvement:g} required" if min_improvement else ""
            comparison = f"utility {mine:.4f} vs champion {theirs:.4f}{margin} under {profile.name!r}"
            (passed if mine > theirs + min_improvement else failures).append(comparison)

    decision: Decision = "fail" if failures else "inconclusive" if unknown else "pass"
    return GateVerdict(
        decision=decision,
        reasons=tuple(failures + unknown + passed),
        champion=champion.ref,
        challenger=challenger.ref,
        profile=profile.name,
        champion_utility=utilities[champion.ref],
        challenger_utility=utilities[challenger.ref],
        blocking=tuple(failures + unknown),
    )


def _check_slices(
    champion: EvaluationReport,
    challenger: EvaluationReport,
    allowed: float,
    failures: list[str],
    unknown: list[str],
    passed: list[str],
) -> None:
    """The challenger's worst slice against the champion's, and the challenger on the champion's
    worst slice (a model can keep the same worst score while getting worse where it hurt most)."""
    metric = champion.slices.metric
    worst = champion.slices.worst
    theirs_worst = challenger.slices.worst
    if worst is None or theirs_worst is None:
        which = champion.ref if worst is None else challenger.ref
        unknown.append(f"worst slice: no slice of {which} was large enough to judge its {metric}")
        return
    if worst.metric - theirs_worst.metric > allowed:
        failures.append(
            f"worst slice regresses: {metric} {theirs_worst.metric:.4f} on {challenger.slices.worst_name()} "
            f"vs the champion's {worst.metric:.4f}, more than the {allowed:g} allowed"
        )
    else:
        passed.append(
            f"worst slice {metric} {theirs_worst.metric:.4f} vs {worst.metric:.4f} (allowed drop {allowed:g})"
        )
    same = challenger.slices.find(worst.column, worst.value)
    if same is None or not same.judged:
        unknown.append(
            f"{challenger.ref} has no {metric} on the champion's worst slice {champion.slices.worst_name()}"
        )
    elif worst.metric - same.metric > allowed:
        failures.append(
            f"on the champion's worst slice {champion.slices.worst_name()} the challenger scores "
            f"{metric} {same.metric:.4f} vs {worst.metric:.4f}, more than the {allowed:g} allowed drop"
        )
    else:
        passed.append(
            f"on the champion's worst slice {champion.slices.worst_name()}: "
            f"{same.metric:.4f} vs {worst.metric:.4f}"
        )


def _not_comparable(champion: EvaluationReport, challenger: EvaluationReport) -> str | None:
    if champion.evaluation_set.name != challenger.evaluation_set.name:
        return (
            f"not comparable: evaluated on {champion.evaluation_set.name!r} and "
            f"{challenger.evaluation_set.name!r}"
        )
    if champion.evaluation_set.definition() != challenger.evaluation_set.definition():
        return (
            f"not comparable: evaluation set {champion.evaluation_set.name!r} was redefined between "
            "the two reports; evaluate both again"
        )
    if champion.dataset_commit != challenger.dataset_commit:
        return (
            f"not comparable: {champion.evaluation_set.name!r} read at commits "
            f"{champion.dataset_commit[:12]} and {challenger.dataset_commit[:12]}; evaluate both again"
        )
    return None
