"""The promotion gate: does a challenger beat the champion under a profile?

The verdict is reasoned and never silently passes:

- **inconclusive** when the two reports are not comparable (different evaluation set or dataset
  commit: nothing else is judged), or when a metric the decision needs is missing from either and
  nothing already fails;
- **fail** when the challenger breaks one of the profile's constraints, when its worst slice is
  worse than the champion's by more than ``max_slice_regression``, or when its utility is not
  higher than the champion's;
- **pass** otherwise, with every check that passed listed.

Utilities are in the units of ``snapshot`` when given (e.g. the leaderboard the candidates come
from, so that the size of each difference counts); otherwise in units computed from the two alone,
where each metric counts by the direction of its difference more than by its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    snapshot: PoolSnapshot | None = None,
) -> GateVerdict:
    """Judge ``challenger`` against ``champion`` (see the module docstring for the rules)."""
    mismatch = _not_comparable(champion, challenger)
    if mismatch is not None:
        return GateVerdict(
            "inconclusive", (mismatch,), champion.ref, challenger.ref, profile.name, None, None, (mismatch,)
        )
    failures: list[str] = []
    passed: list[str] = []
    unknown: list[str] = []
    metrics = {
        champion.ref: candidate_metrics(champion, profile),
        challenger.ref: candidate_metrics(challenger, profile),
    }
    for ref, values in metrics.items():
        missing = sorted(name for name, value in values.items() if value is None)
        if missing:
            unknown.append(f"{ref} has no measured {', '.join(missing)}")

    for constraint in profile.constraints:
        reason = constraint.check(metrics[challenger.ref][constraint.metric])
        if reason is None:
            passed.append(f"constraint {constraint} holds")
        elif metrics[challenger.ref][constraint.metric] is not None:
            failures.append(f"constraint {constraint} broken: {reason}")

    slice_metric = f"worst_slice_{champion.slices.metric}"
    old, new = champion.metrics.get(slice_metric), challenger.metrics.get(slice_metric)
    if old is None or new is None:
        unknown.append(
            f"worst slice {slice_metric} not measured for {champion.ref if old is None else challenger.ref}"
        )
    elif old - new > max_slice_regression:
        failures.append(
            f"worst slice regresses: {slice_metric} {new:.4f} ({challenger.slices.worst_name()}) vs "
            f"{old:.4f}, more than the {max_slice_regression} allowed"
        )
    else:
        passed.append(
            f"worst slice {slice_metric} {new:.4f} vs {old:.4f} (allowed drop {max_slice_regression})"
        )

    utilities: dict[str, float | None] = {champion.ref: None, challenger.ref: None}
    if not any(reason.startswith(f"{ref} has no") for ref in metrics for reason in unknown):
        scored, _ = score(metrics, profile, snapshot=snapshot)
        utilities = {s.name: s.utility for s in scored}
        mine, theirs = utilities[challenger.ref], utilities[champion.ref]
        if mine is not None and theirs is not None:
            comparison = f"utility {mine:.4f} vs champion {theirs:.4f} under {profile.name!r}"
            (passed if mine > theirs else failures).append(comparison)

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


def _not_comparable(champion: EvaluationReport, challenger: EvaluationReport) -> str | None:
    if champion.evaluation_set.name != challenger.evaluation_set.name:
        return (
            f"not comparable: evaluated on {champion.evaluation_set.name!r} and "
            f"{challenger.evaluation_set.name!r}"
        )
    if champion.dataset_commit != challenger.dataset_commit:
        return (
            f"not comparable: {champion.evaluation_set.name!r} read at commits "
            f"{champion.dataset_commit[:12]} and {challenger.dataset_commit[:12]}; evaluate both again"
        )
    return None
