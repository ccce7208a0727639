"""Evaluation reports in the metadata database, stored with the model version they measure."""

from __future__ import annotations

import sqlalchemy as sa

from mlprod.errors import NotFoundError
from mlprod.evaluate.json_numbers import json_safe
from mlprod.evaluate.report import EvaluationReport
from mlprod.identity import current_user
from mlprod.meta.lookup import row_by_id_prefix
from mlprod.meta.tables import evaluation_reports
from mlprod.models import Registry
from mlprod.workspace import Workspace


def save_report(workspace: Workspace, report: EvaluationReport) -> None:
    data = json_safe(report.to_dict())
    with workspace.engine.begin() as conn:
        conn.execute(
            evaluation_reports.insert().values(
                id=report.id,
                model=report.model,
                version=report.version,
                evaluation_set=report.evaluation_set.name,
                set_definition=data["evaluation_set"],
                dataset_commit=report.dataset_commit,
                seed=report.seed,
                metrics=data["metrics"],
                report=data,
                created_at=report.created_at,
                who=current_user(),
            )
        )


def get_report(workspace: Workspace, report_id: str) -> EvaluationReport:
    """The report whose id starts with ``report_id`` (at least 6 characters)."""
    row = row_by_id_prefix(workspace.engine, evaluation_reports, report_id, "evaluation report")
    return EvaluationReport.from_dict(row.report)


def latest_report(workspace: Workspace, ref: str, evaluation_set: str) -> EvaluationReport:
    """The newest report of the version ``ref`` points to, on ``evaluation_set``."""
    version = Registry(workspace).get(ref)
    query = (
        evaluation_reports.select()
        .where(
            evaluation_reports.c.model == version.model,
            evaluation_reports.c.version == version.version,
            evaluation_reports.c.evaluation_set == evaluation_set,
        )
        .order_by(evaluation_reports.c.created_at.desc())
        .limit(1)
    )
    with workspace.engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(
            f"{version.ref} has no report on evaluation set {evaluation_set!r}; "
            f"run `mlprod eval run {version.ref} --set {evaluation_set}`"
        )
    return EvaluationReport.from_dict(row.report)


def latest_reports(workspace: Workspace, evaluation_set: str) -> list[EvaluationReport]:
    """The newest report of every model version evaluated on ``evaluation_set``."""
    newest = (
        sa.select(
            evaluation_reports.c.model,
            evaluation_reports.c.version,
            sa.func.max(evaluation_reports.c.created_at).label("at"),
        )
        .where(evaluation_reports.c.evaluation_set == evaluation_set)
        .group_by(evaluation_reports.c.model, evaluation_reports.c.version)
        .subquery()
    )
    query = (
        sa.select(evaluation_reports.c.report)
        .join(
            newest,
            sa.and_(
                evaluation_reports.c.model == newest.c.model,
                evaluation_reports.c.version == newest.c.version,
                evaluation_reports.c.created_at == newest.c.at,
            ),
        )
        .where(evaluation_reports.c.evaluation_set == evaluation_set)
        .order_by(evaluation_reports.c.model, evaluation_reports.c.version)
    )
    with workspace.engine.connect() as conn:
        return [EvaluationReport.from_dict(report) for report in conn.scalars(query)]
