"""The promotion gate: does a challenger beat the champion under a profile?

The verdict is reasoned and never silently passes:

- **inconclusive** when the two reports are not comparable (different evaluation sets, or
  definitions, or rows: nothing else is judged; reports on different commits where the set's rows
  are equal do compare, see ``same_rows``), or when a metric the decision needs is missing from
  either and nothing already fails;
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

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.leaderboard import build_leaderboard, candidate_metrics, get_leaderboard
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.report_store import latest_report
from mlprod.evaluate.same_rows import Evaluated, SameRows, compare_rows
from mlprod.evaluate.utility import PoolSnapshot, Profile, score
from mlprod.workspace import Workspace

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
    rows: SameRows | None = None,
) -> GateVerdict:
    """Judge ``challenger`` against ``champion`` (see the module docstring for the rules).

    ``rows`` says whether the two measured the same rows (``compare_rows`` with the workspace,
    which reads the diff between their commits); without it only their commits and row digests are
    compared.
    """
    for name, value in (("max_slice_regression", max_slice_regression), ("min_improvement", min_improvement)):
        if not (math.isfinite(value) and value >= 0):
            raise InvalidInputError(f"gate: {name} must be a finite number >= 0, got {value}")
    rows = rows or compare_rows(Evaluated.of(champion), Evaluated.of(challenger))
    if not rows.same:
        name = challenger.evaluation_set.name
        mismatch = (
            f"not comparable: {rows.reason}; evaluate both on the set's current rows: "
            f"`mlprod eval run {champion.ref} --set {name}`, `mlprod eval run {challenger.ref} --set {name}`"
        )
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


def gate_models(
    workspace: Workspace,
    champion: str,
    challenger: str,
    evaluation_set: str,
    profile: Profile,
    *,
    max_slice_regression: float = 0.02,
    min_improvement: float = 0.0,
    units_of: str | None = None,
) -> GateVerdict:
    """``gate`` on the newest reports of two model references on a set, their rows compared by diff
    when their commits differ, in the units of leaderboard ``units_of`` (default: every report on
    the set's current rows; units from the two alone when there are none)."""
    reports = (
        latest_report(workspace, champion, evaluation_set),
        latest_report(workspace, challenger, evaluation_set),
    )
    if units_of is not None:
        snapshot: PoolSnapshot | None = get_leaderboard(workspace, units_of).snapshot
    else:
        try:
            snapshot = build_leaderboard(
                workspace, evaluation_set=evaluation_set, profile=profile, record=False
            ).snapshot
        except NotFoundError:  # no report measured the set's current rows: nothing to take units from
            snapshot = None
    rows = compare_rows(Evaluated.of(reports[0]), Evaluated.of(reports[1]), workspace=workspace)
    return gate(
        *reports, profile, max_slice_regression=max_slice_regression, min_improvement=min_improvement,
        snapshot=snapshot, rows=rows,
    )  # fmt: skip
