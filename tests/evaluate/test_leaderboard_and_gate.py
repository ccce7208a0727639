"""Leaderboards from stored reports (recorded, recomputable, stable when models are added) and the gate."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate import (
    EvaluationReport,
    EvaluationSet,
    Profile,
    build_leaderboard,
    evaluate_model,
    gate,
    get_leaderboard,
    list_leaderboards,
    save_evaluation_set,
)
from mlprod.workspace import Workspace
from tests.evaluate.evaluated_workspace import QUICK, evaluated_workspace

BY_AUC = Profile.from_config("by-auc", {"primary": "auc", "weights": {"auc": 1}})
SMALLEST = Profile.from_config(
    "smallest",
    {"primary": "auc", "weights": {"auc": 0.01, "artifact_mb": 100}, "constraints": ["auc >= 0.6"]},
)


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, dict[str, EvaluationReport]]]:
    with evaluated_workspace(tmp_path_factory.mktemp("boards")) as evaluated:
        yield evaluated


def _order(board) -> list[str]:
    return [e.ref for e in board.entries]


def test_the_order_follows_the_profile(evaluated) -> None:
    ws, reports = evaluated
    by_auc = build_leaderboard(ws, evaluation_set="later", profile=BY_AUC)
    assert _order(by_auc) == sorted((r.ref for r in reports.values()), key=lambda ref: -_auc(reports, ref))
    assert [e.rank for e in by_auc.entries] == [1, 2, 3]
    smallest = build_leaderboard(ws, evaluation_set="later", profile=SMALLEST)
    sizes = {r.ref: r.metrics["artifact_mb"] for r in reports.values()}
    assert _order(smallest)[0] == min(sizes, key=sizes.__getitem__)
    assert _order(smallest) != _order(by_auc) or len(set(sizes.values())) == 1


def test_builtin_profiles_rank_and_report_constraint_failures(evaluated) -> None:
    ws, _ = evaluated
    edge = build_leaderboard(ws, evaluation_set="later", profile="edge")
    assert edge.profile.name == "edge" and "latency_p99_ms" in edge.columns
    for entry in edge.entries:
        broken = [f for f in entry.failures if f.startswith("artifact_mb") or f.startswith("latency_p99_ms")]
        assert (entry.rank is None) == bool(entry.failures), entry
        assert len(broken) == len(entry.failures)
    regulated = build_leaderboard(ws, evaluation_set="later", profile="regulated")
    assert {"dp_difference", "eo_difference", "interpretability"} <= set(regulated.columns)
    csv = regulated.to_csv().splitlines()
    assert csv[0].startswith("rank,model,utility,auc,") and len(csv) == 4
    assert json.loads(json.dumps(regulated.to_dict(), default=str))["profile"] == "regulated"


def test_a_recorded_leaderboard_recomputes_exactly_and_adding_a_model_does_not_rewrite_it(evaluated) -> None:
    ws, reports = evaluated
    two = [reports["linear"].ref, reports["small"].ref]
    old = build_leaderboard(ws, evaluation_set="later", profile="accuracy-first", models=two)
    everyone = build_leaderboard(ws, evaluation_set="later", profile="accuracy-first")
    assert everyone.id != old.id and len(everyone.entries) == 3
    again = get_leaderboard(ws, old.id[:10])
    assert [(e.ref, e.utility, e.rank) for e in again.entries] == [
        (e.ref, e.utility, e.rank) for e in old.entries
    ]
    assert again.snapshot == old.snapshot
    in_old_units = build_leaderboard(ws, evaluation_set="later", profile="accuracy-first", units_of=old.id)
    utilities = {e.ref: e.utility for e in in_old_units.entries}
    assert {e.ref: e.utility for e in old.entries} == {ref: utilities[ref] for ref in two}
    assert in_old_units.snapshot.amrs == old.snapshot.amrs
    assert old.id in [b["id"] for b in list_leaderboards(ws, evaluation_set="later")]


def test_leaderboard_bad_inputs_are_named(evaluated) -> None:
    ws, _ = evaluated
    with pytest.raises(NotFoundError, match=r"evaluation set 'elsewhere' is not declared \(sets: later\)"):
        build_leaderboard(ws, evaluation_set="elsewhere", profile="edge")
    save_evaluation_set(ws, EvaluationSet("unused", table="events", time="ts"))
    with pytest.raises(NotFoundError, match="no model has been evaluated on 'unused'"):
        build_leaderboard(ws, evaluation_set="unused", profile="edge")
    with pytest.raises(NotFoundError, match="profile 'fastest'"):
        build_leaderboard(ws, evaluation_set="later", profile="fastest")
    with pytest.raises(NotFoundError, match="is not registered"):
        build_leaderboard(ws, evaluation_set="later", profile="edge", models=["nobody/1"])
    with pytest.raises(NotFoundError, match="leaderboard 'abcdef12' not found"):
        get_leaderboard(ws, "abcdef12")
    edge = build_leaderboard(ws, evaluation_set="later", profile="edge")
    with pytest.raises(InvalidInputError, match="different definition of profile"):
        build_leaderboard(ws, evaluation_set="later", profile="accuracy-first", units_of=edge.id)


def test_gate_passes_the_better_model_and_fails_the_worse(evaluated) -> None:
    _, reports = evaluated
    ranked = sorted(reports.values(), key=lambda r: r.quality["auc"])
    worse, better = ranked[0], ranked[-1]
    passing = gate(worse, better, BY_AUC, max_slice_regression=1.0)
    assert passing.decision == "pass" and passing.passed
    assert passing.challenger_utility > passing.champion_utility
    assert any(r.startswith("utility") for r in passing.reasons)
    failing = gate(better, worse, BY_AUC, max_slice_regression=1.0)
    assert failing.decision == "fail" and failing.reasons[0].startswith("utility")


def test_gate_fails_a_broken_constraint_and_a_worst_slice_regression(evaluated) -> None:
    _, reports = evaluated
    ranked = sorted(reports.values(), key=lambda r: r.metrics["worst_slice_auc"])
    weakest_slice, strongest_slice = ranked[0], ranked[-1]
    tight = Profile.from_config(
        "tight", {"primary": "auc", "weights": {"auc": 1}, "constraints": ["artifact_mb <= 0.000001"]}
    )
    verdict = gate(weakest_slice, strongest_slice, tight, max_slice_regression=1.0)
    assert verdict.decision == "fail" and "constraint artifact_mb <= 1e-06 broken" in verdict.reasons[0]
    regressed = gate(strongest_slice, weakest_slice, BY_AUC, max_slice_regression=0.0)
    assert regressed.decision == "fail"
    assert any(r.startswith("worst slice regresses: auc") for r in regressed.reasons)
    # the challenger is also judged on the champion's worst slice
    assert any(r.startswith("on the champion's worst slice") for r in regressed.reasons)


def test_gate_needs_a_margin_when_asked_and_refuses_nonsense_limits(evaluated) -> None:
    _, reports = evaluated
    ranked = sorted(reports.values(), key=lambda r: r.quality["auc"])
    worse, better = ranked[0], ranked[-1]
    gap = better.quality["auc"] - worse.quality["auc"]
    assert gate(worse, better, BY_AUC, max_slice_regression=1.0, min_improvement=gap / 2).passed
    narrow = gate(worse, better, BY_AUC, max_slice_regression=1.0, min_improvement=gap * 2)
    assert narrow.decision == "fail" and f"+ {gap * 2:g} required" in narrow.summary
    for bad in (float("nan"), -0.1, float("inf")):
        with pytest.raises(InvalidInputError, match="must be a finite number >= 0"):
            gate(worse, better, BY_AUC, max_slice_regression=bad)


def test_gate_is_inconclusive_when_a_metric_is_missing_or_the_reports_differ(evaluated) -> None:
    ws, reports = evaluated
    no_cost = evaluate_model(
        ws, reports["small"].ref, "later", options=dataclasses.replace(QUICK, serving_cost=False)
    )
    latency = Profile.from_config("latency", {"primary": "auc", "weights": {"auc": 1, "latency_p99_ms": 1}})
    verdict = gate(reports["large"], no_cost, latency, max_slice_regression=1.0)
    assert verdict.decision == "inconclusive" and not verdict.passed
    assert f"{no_cost.ref} has no measured latency_p99_ms" in verdict.reasons
    # another commit with the same rows' digest is the same data; without a digest (and no
    # workspace to read the diff) the rows are not proven equal
    moved = dataclasses.replace(reports["small"], dataset_commit="0" * 64)
    assert gate(reports["large"], moved, BY_AUC, max_slice_regression=1.0).decision != "inconclusive"
    unknown = dataclasses.replace(moved, rows_digest=None)
    not_comparable = gate(reports["large"], unknown, BY_AUC, max_slice_regression=1.0)
    assert not_comparable.decision == "inconclusive"
    assert not_comparable.reasons[0].startswith("not comparable: 'later' read at events@")
    assert "events@000000000000, rows not compared" in not_comparable.reasons[0]
    assert f"`mlprod eval run {unknown.ref} --set later`" in not_comparable.reasons[0]
    elsewhere = dataclasses.replace(
        reports["small"], evaluation_set=dataclasses.replace(reports["small"].evaluation_set, name="other")
    )
    different = gate(reports["large"], elsewhere, BY_AUC, max_slice_regression=1.0)
    assert different.decision == "inconclusive"
    assert different.reasons[0].startswith("not comparable: evaluated on 'later' and 'other'; ")


def _auc(reports: dict[str, EvaluationReport], ref: str) -> float:
    return next(r.quality["auc"] for r in reports.values() if r.ref == ref)
