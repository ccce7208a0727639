"""Evaluation reports on a real workspace: every part measured, stored, reproducible; bad inputs."""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate import (
    EvaluationReport,
    EvaluationSet,
    evaluate_model,
    explain_rows,
    get_report,
    latest_report,
    latest_reports,
)
from mlprod.evaluate.json_numbers import json_safe
from mlprod.evaluate.report_store import save_report
from mlprod.models import Registry
from mlprod.workspace import Workspace
from tests.conftest import train_toy
from tests.evaluate.evaluated_workspace import LATER, QUICK, evaluated_workspace, events


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, dict[str, EvaluationReport]]]:
    with evaluated_workspace(tmp_path_factory.mktemp("evaluated")) as evaluated:
        yield evaluated


def test_a_report_measures_every_part_on_the_sets_commit(evaluated) -> None:
    ws, reports = evaluated
    report = reports["large"]
    assert report.dataset_commit == TableStore(ws).resolve("events", "main").id
    assert report.host["cpus"] == str(os.cpu_count()) and report.host["name"]
    assert report.rows == int((events()["week"] >= 4).sum())
    assert set(report.quality) == {"auc", "accuracy", "f1", "log_loss", "brier", "ece"}
    assert 0.6 < report.quality["auc"] < 0.95
    # weekly slices, named by their Monday, show the signal fading after training
    weeks = report.slices.by_time
    assert [s.value for s in weeks] == ["2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23"]
    assert weeks[-1].metric < weeks[0].metric - 0.03
    assert [s.value for s in report.slices.by_column["c"]] == ["a", "b", "c"]
    assert report.slices.worst is not None and report.metrics["worst_slice_auc"] == report.slices.worst.metric
    shifts = {s.name: s for s in report.robustness.shifts}
    assert {"later_window", "missing_10pct", "noise_0.5sd", "reweight:c", "reweight:group"} <= set(shifts)
    assert shifts["later_window"].drop > 0 and shifts["noise_0.5sd"].drop > 0
    fairness = report.fairness[0]
    assert fairness.column == "group" and [g.group for g in fairness.groups] == ["g1", "g2"]
    # fairness is judged at the threshold that selects as many rows as are positive, not at 0.5
    selected = sum(g.selection_rate.value * g.rows for g in fairness.groups)
    assert selected == pytest.approx(sum(g.positives for g in fairness.groups), rel=0.01)
    assert fairness.threshold != 0.5
    dp = fairness.demographic_parity_difference
    assert dp.low <= dp.value <= dp.high and dp.low > 0.1  # g2's base rate is far higher
    serving = report.serving
    assert serving is not None and 0 < serving.latency_p50_ms <= serving.latency_p99_ms
    assert serving.throughput_rows_per_s > 1000 and serving.memory_mb > 0 and serving.cost_per_million > 0
    assert report.interpretability.family == "lightgbm"
    assert reports["linear"].interpretability.family == "linear"
    assert reports["linear"].metrics["interpretability"] > report.metrics["interpretability"]
    importance = {f.feature: f for f in report.importance.features}
    assert importance["x"].useful and importance["x"].importance > importance["noise"].importance
    assert "noise" in report.importance.drop_candidates
    assert reports["large"].metrics["artifact_mb"] > 10 * reports["small"].metrics["artifact_mb"]


def test_reports_are_stored_with_the_version_and_read_back_whole(evaluated) -> None:
    ws, reports = evaluated
    report = reports["small"]
    assert get_report(ws, report.id[:8]).to_dict() == report.to_dict()
    assert latest_report(ws, report.ref, "later").id == report.id
    assert {r.ref for r in latest_reports(ws, "later")} == {r.ref for r in reports.values()}


def test_undefined_numbers_survive_storage_as_nan(evaluated) -> None:
    ws, reports = evaluated
    report = reports["large"]
    assert report.serving is not None
    nan = float("nan")
    first = next(iter(report.interpretability.importance))
    holed = dataclasses.replace(
        report,
        id=uuid.uuid4().hex,
        quality=report.quality | {"ece": nan},
        serving=dataclasses.replace(report.serving, memory_mb=nan),
        interpretability=dataclasses.replace(
            report.interpretability, importance=report.interpretability.importance | {first: nan}
        ),
    )
    save_report(ws, holed)
    back = get_report(ws, holed.id)
    assert math.isnan(back.quality["ece"]) and math.isnan(back.serving.memory_mb)
    assert math.isnan(back.interpretability.importance[first])
    assert "ece" not in back.metrics and "memory_mb" not in back.metrics  # undefined is not measured
    assert json_safe(back.to_dict()) == json_safe(holed.to_dict())


def test_the_same_seed_on_the_same_commit_gives_the_same_report(evaluated) -> None:
    ws, reports = evaluated
    again = evaluate_model(ws, reports["small"].ref, "later", options=QUICK)
    volatile = ("id", "created_at", "seconds", "serving", "metrics")
    first = {k: v for k, v in reports["small"].to_dict().items() if k not in volatile}
    second = {k: v for k, v in again.to_dict().items() if k not in volatile}
    assert first == second
    assert latest_report(ws, reports["small"].ref, "later").id == again.id


def test_explanations_add_up_to_each_prediction(evaluated) -> None:
    ws, reports = evaluated
    for label in ("large", "linear"):
        explained = explain_rows(ws, reports[label].ref, "later", rows=4, seed=1)
        assert len(explained) == 4
        for e in explained:
            log_odds = e.base + sum(e.contributions.values())
            assert 1 / (1 + math.exp(-log_odds)) == pytest.approx(e.probability, abs=1e-9)
            magnitudes = [abs(v) for v in e.contributions.values()]
            assert magnitudes == sorted(magnitudes, reverse=True)
            assert set(e.inputs) == set(e.contributions) == {"x", "noise", "c", "group"}
    with pytest.raises(InvalidInputError, match="rows to explain must be between 1 and 2000"):
        explain_rows(ws, reports["large"].ref, "later", rows=0)


def test_a_model_without_training_lineage_cannot_be_evaluated(evaluated) -> None:
    ws, _ = evaluated
    frame = events().rename(columns={"y": "label"})[["x", "c", "label"]].rename(columns={"label": "y"})
    trained = train_toy(frame)
    version = Registry(ws).register("handmade", trained.model, signature=trained.signature)
    with pytest.raises(InvalidInputError, match="'handmade' has no training lineage"):
        evaluate_model(ws, version.ref, "later", options=QUICK)


def test_bad_evaluation_sets_are_named(evaluated) -> None:
    ws, reports = evaluated
    ref = reports["small"].ref
    with pytest.raises(NotFoundError, match=r"evaluation set 'nope' is not declared \(sets: later\)"):
        evaluate_model(ws, ref, "nope", options=QUICK)
    empty = EvaluationSet("empty", table="events", time="ts", start="2030-01-01")
    with pytest.raises(InvalidInputError, match="evaluation set 'empty' selects no rows"):
        evaluate_model(ws, ref, empty, options=QUICK)
    no_column = EvaluationSet("bad", table="events", time="ts", slices=("airline",))
    with pytest.raises(
        InvalidInputError, match=r"slices by \['airline'\], which table 'events' does not have"
    ):
        evaluate_model(ws, ref, no_column, options=QUICK)
    bad_time = EvaluationSet("bad", table="events", time="tss", start="2026-01-01")
    with pytest.raises(InvalidInputError, match=r"evaluation set 'bad'.*does not evaluate"):
        evaluate_model(ws, ref, bad_time, options=QUICK)
    with pytest.raises(NotFoundError, match="table"):
        evaluate_model(ws, ref, EvaluationSet("gone", table="nope", time="ts"), options=QUICK)


def test_the_set_is_declared_in_mlprod_toml(evaluated, tmp_path: Path) -> None:
    ws, _ = evaluated
    text = (ws.root / "mlprod.toml").read_text()
    assert "[evaluate.sets.later]" in text and 'fairness = ["group"]' in text
    assert LATER.name in Workspace.open(ws.root).config.evaluate.sets
