"""Which reports a leaderboard ranks: those that measured the rows its set selects now.

A set selects the rows at its pinned commit (or at the head of the branch it follows). A report made
on another commit is ranked when the set's rows there are the same (``same_rows``), so a branch
moving on outside the set changes nothing. A report on other rows, or on an older definition of the
set, and a version of an evaluated model that has no report on the set, are left out, each with its
reason and the command that evaluates it on the current rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.evaluation import EvaluationOptions, evaluate_model
from mlprod.evaluate.evaluation_set import EvaluationSet, get_evaluation_set, set_commit
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.report_store import latest_reports
from mlprod.evaluate.same_rows import Evaluated, RowsComparer
from mlprod.meta.tables import model_versions
from mlprod.models import Registry
from mlprod.workspace import Workspace


@dataclass(frozen=True)
class LeftOut:
    """A model version a leaderboard did not rank, why, and the command that would evaluate it."""

    ref: str
    reason: str
    command: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "reason": self.reason, "command": self.command}

    @classmethod
    def from_dict(cls, data: dict[str, str] | str) -> LeftOut:
        if isinstance(data, str):  # leaderboards recorded before the reasons were structured
            ref, _, reason = data.partition(": ")
            return cls(ref, reason, "")
        return cls(data["ref"], data["reason"], data["command"])


@dataclass(frozen=True)
class Pool:
    """The set as declared now, the commit it reads, the reports on its rows and those left out."""

    evaluation_set: EvaluationSet
    commit: str
    reports: tuple[EvaluationReport, ...]
    left_out: tuple[LeftOut, ...]

    def where(self) -> str:
        return f"{self.evaluation_set.table}@{self.commit[:12]}"


def comparable_reports(
    workspace: Workspace, evaluation_set: str, models: Sequence[str] | None = None
) -> Pool:
    """The newest report of each version (all evaluated on the set and the other versions of their
    models, or those ``models`` refer to) that measured the set's current rows; the rest left out."""
    declared = get_evaluation_set(workspace, evaluation_set)
    commit = set_commit(workspace, declared)
    newest = {r.ref: r for r in latest_reports(workspace, evaluation_set)}
    if models is None:
        wanted = sorted(newest.keys() | _other_versions(workspace, newest.values()), key=_order)
    else:
        registry = Registry(workspace)
        wanted = list(dict.fromkeys(registry.get(ref).ref for ref in models))
    digests = {r.rows_digest for r in newest.values() if r.dataset_commit == commit and r.rows_digest}
    current = Evaluated(declared, commit, next(iter(digests)) if len(digests) == 1 else None)
    comparer = RowsComparer(workspace)
    ranked, left_out = [], []
    for ref in wanted:
        command = f"mlprod eval run {ref} --set {evaluation_set}"
        report = newest.get(ref)
        if report is None:
            left_out.append(LeftOut(ref, f"no report on {evaluation_set!r}", command))
            continue
        evaluated = Evaluated.of(report)
        same = comparer.compare(evaluated, current)
        if same.same:
            ranked.append(report)
        elif same.change is not None:
            since = f"{evaluation_set} rows changed since ({current.where()}): {same.change}"
            left_out.append(LeftOut(ref, f"evaluated on {evaluated.where()}, {since}", command))
        else:
            left_out.append(LeftOut(ref, f"evaluated on {evaluated.where()}: {same.reason}", command))
    return Pool(declared, commit, tuple(ranked), tuple(left_out))


def ranked_pool(workspace: Workspace, evaluation_set: str, models: Sequence[str] | None = None) -> Pool:
    """``comparable_reports``, refusing when there is nothing to rank or a named model is left out."""
    pool = comparable_reports(workspace, evaluation_set, models)
    if models is not None and pool.left_out:
        first = pool.left_out[0]
        error = NotFoundError if first.reason.startswith("no report") else InvalidInputError
        raise error(
            f"{first.ref} cannot be ranked on {evaluation_set!r} ({pool.where()}): {first.reason}; "
            f"run `{first.command}` (or rank with --reevaluate)"
        )
    if not pool.reports:
        if not any(not x.reason.startswith("no report") for x in pool.left_out):
            raise NotFoundError(
                f"no model has been evaluated on {evaluation_set!r}; "
                f"run `mlprod eval run MODEL --set {evaluation_set}`"
            )
        raise NotFoundError(
            f"no report on {evaluation_set!r} measured the rows it selects now ({pool.where()}); "
            f"left out: {'; '.join(map(str, pool.left_out))}; evaluate them again with "
            f"`mlprod eval leaderboard --set {evaluation_set} --reevaluate`"
        )
    return pool


def reevaluate_left_out(
    workspace: Workspace,
    evaluation_set: str,
    models: Sequence[str] | None = None,
    *,
    options: EvaluationOptions | None = None,
    step: Callable[[str], None] | None = None,
) -> list[EvaluationReport]:
    """Evaluate every version the set's leaderboard would leave out on the set's current rows."""
    step = step or (lambda _: None)
    reports = []
    for left_out in comparable_reports(workspace, evaluation_set, models).left_out:
        step(f"evaluating {left_out.ref} ({left_out.reason})")
        reports.append(evaluate_model(workspace, left_out.ref, evaluation_set, options=options))
    return reports


def _other_versions(workspace: Workspace, reports: Iterable[EvaluationReport]) -> set[str]:
    """Every version of the models with a report on the set."""
    names = {r.model for r in reports}
    if not names:
        return set()
    query = sa.select(model_versions.c.model, model_versions.c.version).where(
        model_versions.c.model.in_(names)
    )
    with workspace.engine.connect() as conn:
        return {f"{model}/{version}" for model, version in conn.execute(query)}


def _order(ref: str) -> tuple[str, int]:
    model, _, version = ref.rpartition("/")
    return model, int(version)
