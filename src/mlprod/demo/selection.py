"""The demo's model selection: evaluate every candidate on July, rank them under two profiles, and let
the gate pick the champion.

July is the evaluation set (``flights``@main, pinned to the commit main is at once July and June's
corrections are in, sliced by week, carrier and origin): data arriving later (August onwards)
changes nothing it measures. Flights have no
protected attribute, so the fairness metrics compare the three origin airports as a stand-in for
one: the same computation a lender would run over applicants' age bands.

Each candidate gets a stored report, the leaderboard is built under ``accuracy-first`` and
``edge`` (the orders differ: the large boosters lead on AUC, the small LightGBM on latency, size
and memory), and then, starting from the incumbent, each other candidate
in turn is gated against the current champion under ``accuracy-first``, in the units of that
leaderboard; a candidate that passes becomes the champion. The alias moves once, with the gate's
decision as its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlprod.demo.flights import DATASET
from mlprod.evaluate import (
    EvaluationOptions,
    EvaluationReport,
    EvaluationSet,
    GateVerdict,
    Leaderboard,
    build_leaderboard,
    evaluate_model,
    gate,
    get_profile,
    load_profiles,
    save_evaluation_set,
)
from mlprod.models import Registry
from mlprod.workspace import Workspace

JULY = EvaluationSet(
    "july",
    table=DATASET,
    time="time_hour",
    start="2013-07-01",
    end="2013-08-01",
    period="week",
    slices=("carrier", "origin"),
    fairness=("origin",),
    description="July 2013, the month after training, as it arrived (with June's corrections merged); "
    "fairness groups: origin airport, a stand-in for a protected attribute",
)
PROFILES = ("accuracy-first", "edge")
GATE_PROFILE = "accuracy-first"


@dataclass(frozen=True)
class Selection:
    reports: dict[str, EvaluationReport]
    leaderboards: dict[str, Leaderboard]
    verdicts: list[tuple[str, GateVerdict]]
    champion: str

    def label_of(self, ref: str) -> str:
        return next(label for label, report in self.reports.items() if report.ref == ref)


def select_champion(
    workspace: Workspace,
    candidates: Mapping[str, str],
    *,
    incumbent: str,
    model: str,
    alias: str,
    quick: bool = False,
    step: Callable[[str], None] | None = None,
) -> Selection:
    """Evaluate ``candidates`` (label -> model ref), rank them, gate them, point ``alias`` at the winner."""
    step = step or (lambda _: None)
    july = save_evaluation_set(workspace, JULY)
    options = EvaluationOptions.from_workspace(
        workspace,
        importance_repeats=10,
        importance_rows=5_000 if not quick else 2_000,
        interpretability_rows=1_000,
        latency_requests=500 if not quick else 200,
        min_slice_rows=200 if not quick else 50,
    )
    reports = {}
    for label, ref in candidates.items():
        step(f"evaluating {label} ({ref})")
        reports[label] = evaluate_model(workspace, ref, july, options=options)
    refs = [report.ref for report in reports.values()]
    boards = {
        name: build_leaderboard(workspace, evaluation_set=july.name, profile=name, models=refs)
        for name in PROFILES
    }
    profile = get_profile(GATE_PROFILE, load_profiles(workspace.config.evaluate.profiles))
    champion, verdicts = incumbent, []
    for label, report in reports.items():
        if label == incumbent:
            continue
        step(f"gate: {label} vs {champion}")
        verdict = gate(reports[champion], report, profile, snapshot=boards[GATE_PROFILE].snapshot)
        verdicts.append((label, verdict))
        if verdict.passed:
            champion = label
    why = f"chosen by the gate under {GATE_PROFILE!r} on {july.name}: " + (
        f"{champion} beat {incumbent}" if champion != incumbent else f"no candidate beat {incumbent}"
    )
    Registry(workspace).set_alias(model, alias, reports[champion].version, why=why)
    return Selection(reports, boards, verdicts, champion)
