"""Results stay comparable when data moves: sets pin their commit, reports on equal rows rank together,
reports on changed rows are left out with the change, and the gate follows the same rule.

One workspace serves the module (``tests.evaluate.evaluated_workspace.prepare``: the ``events`` table,
three trained candidates). Each test declares its own set on its own branch of ``events``, so a test
that moves its branch leaves the others alone. Evaluations skip the serving cost (a profile on AUC
needs none) and keep the other measurements small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlprod.data import TableStore
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate import (
    Evaluated,
    EvaluationOptions,
    EvaluationSet,
    Profile,
    build_leaderboard,
    compare_rows,
    evaluate_model,
    gate_models,
    get_evaluation_set,
    get_leaderboard,
    load_rows,
    reevaluate_left_out,
    rows_digest,
    save_evaluation_set,
    set_commit,
)
from mlprod.workspace import Workspace
from tests.evaluate.evaluated_workspace import START, events, prepare

BY_AUC = Profile.from_config("by-auc", {"primary": "auc", "weights": {"auc": 1}})
CHEAP = EvaluationOptions(
    seed=3, resamples=20, serving_cost=False, importance_repeats=2, importance_rows=500,
    interpretability_rows=200, min_slice_rows=50,
)  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, dict[str, str]]]:
    with Workspace.init(tmp_path_factory.mktemp("pinned") / "ws") as ws:
        yield ws, prepare(ws)


def _set_on_branch(ws: Workspace, name: str, *, follow: bool = False) -> EvaluationSet:
    """A set over weeks 5-8 of ``events`` on a new branch ``name`` (pinned unless ``follow``)."""
    TableStore(ws).branch("events", name)
    weeks = EvaluationSet(name, table="events", time="ts", ref=name, start="2026-02-02", end="2026-03-02")
    return save_evaluation_set(ws, dataclasses.replace(weeks, slices=("c",)), follow=follow)


def _later_rows(n: int, *, first_id: int, weeks: tuple[int, int]) -> pd.DataFrame:
    """``n`` new rows of ``events`` (ids from ``first_id``) in weeks ``weeks[0]`` to ``weeks[1] - 1``."""
    rows = events(n=n, seed=first_id)
    rows["id"] += first_id
    rng = np.random.default_rng(first_id)
    rows["week"] = rng.integers(*weeks, size=n)
    rows["ts"] = [START + timedelta(days=7 * int(w), hours=3) for w in rows["week"]]
    return rows


def _evaluate(ws: Workspace, refs: dict[str, str], name: str, *labels: str) -> dict[str, str]:
    """Evaluate the candidates ``labels`` on set ``name``; label -> the commit each report read."""
    return {label: evaluate_model(ws, refs[label], name, options=CHEAP).dataset_commit for label in labels}


def test_data_committed_outside_a_pinned_sets_rows_changes_nothing(prepared) -> None:
    """The issue's scenario: set on a branch, evaluate, more data arrives, evaluate another model."""
    ws, refs = prepared
    tables = TableStore(ws)
    declared = _set_on_branch(ws, "arrivals")
    assert declared.commit == tables.resolve("events", "arrivals").id
    assert get_evaluation_set(ws, "arrivals").commit == declared.commit  # recorded in mlprod.toml
    assert f"events@arrivals (pinned at {declared.commit[:12]})" in declared.describe()
    first = _evaluate(ws, refs, "arrivals", "linear", "large")

    after = _later_rows(300, first_id=200_000, weeks=(8, 10))  # March: after the set's range
    moved = tables.commit("events", after, mode="append", branch="arrivals", message="March arrives")
    assert moved.commit_id != declared.commit
    second = _evaluate(ws, refs, "arrivals", "small")
    assert set(first.values()) == set(second.values()) == {declared.commit}  # read where it is pinned

    board = build_leaderboard(ws, evaluation_set="arrivals", profile=BY_AUC)
    assert sorted(e.ref for e in board.entries) == sorted(refs.values())
    assert board.excluded == () and board.rows == f"events@{declared.commit[:12]}"
    verdict = gate_models(ws, refs["linear"], refs["small"], "arrivals", BY_AUC, max_slice_regression=1.0)
    assert verdict.decision in ("pass", "fail"), verdict.reasons


def test_a_followed_branch_ranks_reports_on_equal_rows_together(prepared) -> None:
    """A set that follows its branch reads each new head; reports on two commits whose selected rows
    are equal rank together and gate conclusively, by digest or, without digests, by the diff."""
    ws, refs = prepared
    tables = TableStore(ws)
    declared = _set_on_branch(ws, "followed", follow=True)
    assert declared.commit is None and "pinned" not in declared.describe()
    first = _evaluate(ws, refs, "followed", "linear", "large")
    after = _later_rows(300, first_id=300_000, weeks=(8, 10))
    head = tables.commit("events", after, mode="append", branch="followed", message="March arrives").commit_id
    assert set_commit(ws, declared) == head
    second = _evaluate(ws, refs, "followed", "small")
    assert second["small"] == head and first["linear"] != head

    board = build_leaderboard(ws, evaluation_set="followed", profile=BY_AUC)
    assert sorted(e.ref for e in board.entries) == sorted(refs.values()) and board.excluded == ()
    verdict = gate_models(ws, refs["large"], refs["small"], "followed", BY_AUC, max_slice_regression=1.0)
    assert verdict.decision != "inconclusive", verdict.reasons

    old, new = (Evaluated(declared, commit) for commit in (first["linear"], head))
    by_diff = compare_rows(old, new, workspace=ws)  # no digests: the diff decides
    assert by_diff.same and by_diff.change is not None and by_diff.change.empty
    unproven = compare_rows(old, new)  # neither digests nor the data to diff
    assert not unproven.same and unproven.reason.endswith("rows not compared")


def test_changed_rows_inside_the_set_leave_models_out_with_the_change(prepared) -> None:
    ws, refs = prepared
    tables = TableStore(ws)
    _set_on_branch(ws, "revised", follow=True)
    _evaluate(ws, refs, "revised", "linear", "large")
    before = tables.resolve("events", "revised").id

    rows = tables.checkout("events", "revised").to_pandas()
    inside = rows[rows["week"] >= 4].sort_values("id")
    tables.commit("events", _later_rows(12, first_id=400_000, weeks=(4, 8)), mode="append", branch="revised")
    tables.commit("events", inside.head(3)[["id"]], mode="delete", branch="revised")
    edited = inside.iloc[[10]].assign(x=inside.iloc[10]["x"] + 1.0)
    tables.commit("events", edited, mode="upsert", branch="revised")
    tables.commit("events", _later_rows(40, first_id=500_000, weeks=(8, 10)), mode="append", branch="revised")
    now = tables.resolve("events", "revised").id

    nothing = r"no report on 'revised' measured the rows it selects now"
    with pytest.raises(NotFoundError, match=nothing) as caught:
        build_leaderboard(ws, evaluation_set="revised", profile=BY_AUC)
    assert "--reevaluate" in str(caught.value)
    _evaluate(ws, refs, "revised", "small")
    board = build_leaderboard(ws, evaluation_set="revised", profile=BY_AUC)
    assert [e.ref for e in board.entries] == [refs["small"]]
    left_out = {x.ref: x for x in board.excluded}
    assert sorted(left_out) == sorted([refs["linear"], refs["large"]])
    linear = left_out[refs["linear"]]
    assert linear.reason == (
        f"evaluated on events@{before[:12]}, revised rows changed since (events@{now[:12]}): +12 -3 ~1"
    )
    assert linear.command == f"mlprod eval run {refs['linear']} --set revised"
    recorded = get_leaderboard(ws, board.id)
    assert recorded.excluded == board.excluded and recorded.rows == f"events@{now[:12]}"

    stale = r"cannot be ranked on 'revised'.*\+12 -3 ~1; run `mlprod eval run"
    with pytest.raises(InvalidInputError, match=stale):
        build_leaderboard(ws, evaluation_set="revised", profile=BY_AUC, models=[refs["large"]])
    verdict = gate_models(ws, refs["large"], refs["small"], "revised", BY_AUC)
    assert verdict.decision == "inconclusive"
    assert verdict.reasons[0].startswith(
        f"not comparable: 'revised' selects other rows at events@{before[:12]} than at events@{now[:12]}: "
        "+12 -3 ~1; evaluate both"
    )

    again = reevaluate_left_out(ws, "revised", options=CHEAP)
    assert sorted(r.ref for r in again) == sorted([refs["linear"], refs["large"]])
    assert {r.dataset_commit for r in again} == {now}
    full = build_leaderboard(ws, evaluation_set="revised", profile=BY_AUC)
    assert len(full.entries) == 3 and full.excluded == ()


def test_a_version_without_a_report_is_listed_as_left_out(prepared) -> None:
    ws, refs = prepared
    _set_on_branch(ws, "partial")
    _evaluate(ws, refs, "partial", "linear")
    board = build_leaderboard(ws, evaluation_set="partial", profile=BY_AUC)
    assert [e.ref for e in board.entries] == [refs["linear"]]
    assert sorted(x.ref for x in board.excluded) == sorted([refs["small"], refs["large"]])
    for x in board.excluded:
        assert x.reason == "no report on 'partial'" and x.command == f"mlprod eval run {x.ref} --set partial"
    with pytest.raises(NotFoundError, match=r"cannot be ranked on 'partial' .*no report on 'partial'"):
        build_leaderboard(ws, evaluation_set="partial", profile=BY_AUC, models=[refs["small"]])


def test_a_set_pins_a_tag_or_commit_named_explicitly(prepared) -> None:
    ws, _ = prepared
    tables = TableStore(ws)
    train = tables.resolve("events", "train")
    by_tag = save_evaluation_set(ws, EvaluationSet("by-tag", table="events", time="ts", ref="train"))
    assert by_tag.commit == train.id
    assert by_tag.describe().startswith(f"events@train (pinned at {train.short_id})")
    by_commit = save_evaluation_set(
        ws, EvaluationSet("by-commit", table="events", time="ts", ref=train.id[:10])
    )  # fmt: skip
    assert by_commit.commit == train.id and by_commit.describe() == f"events@{train.id[:10]}, ts"
    on_main = save_evaluation_set(
        ws, EvaluationSet("main-at-train", table="events", time="ts", commit=train.id[:8])
    )  # fmt: skip
    assert on_main.commit == train.id and on_main.ref == "main"
    assert tables.resolve("events", "main").id != train.id
    loaded = load_rows(ws, get_evaluation_set(ws, "main-at-train"))
    assert loaded.commit == train.id and loaded.rows.num_rows == train.num_rows


def test_bad_pins_and_tables_are_refused_and_nothing_is_declared(prepared) -> None:
    ws, _ = prepared
    declared = (ws.root / "mlprod.toml").read_text()
    cases = [
        (EvaluationSet("x", table="events", time="ts", ref="no-such-tag"), {},
         NotFoundError, "evaluation set 'x': table 'events' has no branch, tag or commit 'no-such-tag'"),
        (EvaluationSet("x", table="events", time="ts", commit="deadbeef"), {},
         NotFoundError, "evaluation set 'x': table 'events' has no branch, tag or commit 'deadbeef'"),
        (EvaluationSet("x", table="flightz", time="ts"), {},
         NotFoundError, "evaluation set 'x': table 'flightz' not found (tables: events)"),
        (EvaluationSet("x", table="events", time="ts", ref="train"), {"follow": True},
         InvalidInputError, "only a branch can be followed, and 'train' is a tag of table 'events'"),
        (EvaluationSet("x", table="events", time="ts", commit="abcd"), {"follow": True},
         InvalidInputError, "give either a commit to pin or follow, not both"),
    ]  # fmt: skip
    for chosen, options, error, message in cases:
        with pytest.raises(error) as caught:
            save_evaluation_set(ws, chosen, **options)
        assert message in str(caught.value)
    assert (ws.root / "mlprod.toml").read_text() == declared
    with pytest.raises(NotFoundError, match="evaluation set 'gone': table 'gone' not found"):
        load_rows(ws, EvaluationSet("gone", table="gone", time="ts"))


def test_the_rows_digest_ignores_order_and_sees_every_value() -> None:
    rows = pa.table({"id": [3, 1, 2], "x": [0.5, None, 2.0], "c": ["a", "b", "c"]})
    digest = rows_digest(rows, ["id"])
    shuffled = rows.take([2, 0, 1]).select(["c", "x", "id"])
    assert rows_digest(shuffled, ["id"]) == digest
    changed = pa.table({"id": [3, 1, 2], "x": [0.5, 0.0, 2.0], "c": ["a", "b", "c"]})
    assert rows_digest(changed, ["id"]) != digest
    assert rows_digest(rows.slice(0, 2), ["id"]) != digest
    assert rows_digest(rows.slice(0, 0), ["id"]) == rows_digest(rows.slice(0, 0), ["id"])
