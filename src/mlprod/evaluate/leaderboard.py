"""Leaderboards: the evaluated model versions ranked by a profile's utility, recorded for good.

A leaderboard is built from the newest report of each version on an evaluation set. The pool its
AMRS units were computed from is snapshotted and stored with it, so it can be recomputed exactly
later, and evaluating a new model never rewrites an old leaderboard: it makes a new one. To rank new
models in an old leaderboard's units (so utilities stay comparable across time), pass
``units_of=<leaderboard id>``.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.evaluation_set import get_evaluation_set
from mlprod.evaluate.profiles import get_profile, load_profiles
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.report_store import latest_reports
from mlprod.evaluate.utility import PoolSnapshot, Profile, ScoredCandidate, score
from mlprod.identity import current_user
from mlprod.meta.lookup import row_by_id_prefix
from mlprod.meta.tables import leaderboards
from mlprod.models import Registry
from mlprod.workspace import Workspace


@dataclass(frozen=True)
class LeaderboardEntry:
    ref: str
    report_id: str
    utility: float | None
    rank: int | None
    metrics: dict[str, float | None]
    failures: tuple[str, ...]
    missing: tuple[str, ...]
    pareto: bool


@dataclass(frozen=True)
class Leaderboard:
    id: str
    profile: Profile
    evaluation_set: str
    snapshot: PoolSnapshot
    entries: tuple[LeaderboardEntry, ...]
    created_at: datetime
    units_of: str | None = None
    excluded: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """The metrics shown: the profile's weighted metrics, then any only constrained."""
        constrained = [c.metric for c in self.profile.constraints]
        return list(dict.fromkeys((*self.profile.metrics, *constrained)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profile": self.profile.name,
            "profile_definition": self.profile.to_config(),
            "evaluation_set": self.evaluation_set,
            "created_at": self.created_at.isoformat(),
            "units_of": self.units_of,
            "amrs": self.snapshot.amrs,
            "notes": list(self.snapshot.notes),
            "excluded": list(self.excluded),
            "warnings": list(self.warnings),
            "entries": [_entry_dict(e) for e in self.entries],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["rank", "model", "utility", *self.columns, "pareto", "constraint_failures", "missing"]
        )
        for e in self.entries:
            writer.writerow(
                [e.rank or "", e.ref, "" if e.utility is None else e.utility]
                + ["" if e.metrics.get(c) is None else e.metrics[c] for c in self.columns]
                + [e.pareto, "; ".join(e.failures), "; ".join(e.missing)]
            )
        return out.getvalue()


def build_leaderboard(
    workspace: Workspace,
    *,
    evaluation_set: str,
    profile: str | Profile | None = None,
    models: Sequence[str] | None = None,
    units_of: str | None = None,
    record: bool = True,
) -> Leaderboard:
    """Rank the evaluated versions (all on the set, or those ``models`` refer to) and record it.

    Only reports of the same rows are ranked together: those on the set's current definition at the
    commit of the newest report. Older ones are left out and listed in ``excluded``; naming one in
    ``models`` is an error. ``record=False`` ranks without storing (e.g. for the gate's units).
    """
    chosen = _profile(workspace, profile)
    reports, excluded = _reports(workspace, evaluation_set, models)
    baseline = None
    if units_of is not None:
        previous = get_leaderboard(workspace, units_of)
        if previous.profile.definition_hash() != chosen.definition_hash():
            raise InvalidInputError(
                f"leaderboard {units_of} was ranked under a different definition of profile "
                f"{previous.profile.name!r}; its units cannot be reused for {chosen.name!r}"
            )
        baseline = previous.snapshot
    candidates = {r.ref: _candidate_metrics(r, chosen) for r in reports}
    scored, snapshot = score(candidates, chosen, snapshot=baseline)
    by_ref = {r.ref: r for r in reports}
    hosts = {json.dumps(r.host, sort_keys=True) for r in reports if r.serving is not None}
    warnings = ("serving costs were measured on different machines",) if len(hosts) > 1 else ()
    board = Leaderboard(
        id=uuid.uuid4().hex,
        profile=chosen,
        evaluation_set=evaluation_set,
        snapshot=snapshot,
        entries=tuple(_entry(s, by_ref[s.name].id, candidates[s.name]) for s in scored),
        created_at=datetime.now(UTC),
        units_of=units_of,
        excluded=excluded,
        warnings=warnings,
    )
    if not record:
        return board
    with workspace.engine.begin() as conn:
        conn.execute(
            leaderboards.insert().values(
                id=board.id,
                profile=chosen.name,
                evaluation_set=evaluation_set,
                snapshot={
                    "profile": _explicit_directions(chosen),
                    "pool": snapshot.to_dict(),
                    "units_of": units_of,
                    "excluded": list(excluded),
                    "warnings": list(warnings),
                },
                entries=[_entry_dict(e) for e in board.entries],
                created_at=board.created_at,
                who=current_user(),
            )
        )
    return board


def get_leaderboard(workspace: Workspace, leaderboard_id: str) -> Leaderboard:
    """A recorded leaderboard, recomputed from its snapshot (and checked against what was recorded)."""
    row = row_by_id_prefix(workspace.engine, leaderboards, leaderboard_id, "leaderboard")
    profile = Profile.from_config(row.profile, row.snapshot["profile"])
    snapshot = PoolSnapshot.from_dict(row.snapshot["pool"])
    recorded = {e["ref"]: e for e in row.entries}
    candidates = {ref: e["metrics"] for ref, e in recorded.items()}
    scored, _ = score(candidates, profile, snapshot=snapshot)
    entries = []
    for s in scored:
        entry = _entry(s, recorded[s.name]["report_id"], candidates[s.name])
        if _entry_dict(entry) != recorded[s.name]:
            raise InvalidInputError(
                f"leaderboard {row.id} does not recompute to what was recorded for {s.name}"
            )
        entries.append(entry)
    return Leaderboard(
        id=row.id,
        profile=profile,
        evaluation_set=row.evaluation_set,
        snapshot=snapshot,
        entries=tuple(entries),
        created_at=row.created_at,
        units_of=row.snapshot.get("units_of"),
        excluded=tuple(row.snapshot.get("excluded", ())),
        warnings=tuple(row.snapshot.get("warnings", ())),
    )


def list_leaderboards(workspace: Workspace, *, evaluation_set: str | None = None) -> list[dict[str, Any]]:
    """Recorded leaderboards, newest first: id, profile, set, time, how many entries."""
    query = leaderboards.select().order_by(leaderboards.c.created_at.desc())
    if evaluation_set is not None:
        query = query.where(leaderboards.c.evaluation_set == evaluation_set)
    with workspace.engine.connect() as conn:
        return [
            {
                "id": row.id,
                "profile": row.profile,
                "evaluation_set": row.evaluation_set,
                "created_at": row.created_at,
                "entries": len(row.entries),
            }
            for row in conn.execute(query)
        ]


def candidate_metrics(report: EvaluationReport, profile: Profile) -> dict[str, float | None]:
    """The report's values of every metric the profile weighs or constrains (None when unmeasured)."""
    return _candidate_metrics(report, profile)


def _candidate_metrics(report: EvaluationReport, profile: Profile) -> dict[str, float | None]:
    needed = dict.fromkeys((*profile.metrics, *(c.metric for c in profile.constraints)))
    measured = report.metrics
    return {name: measured.get(name) for name in needed}


def _profile(workspace: Workspace, profile: str | Profile | None) -> Profile:
    if isinstance(profile, Profile):
        return profile
    profiles = load_profiles(workspace.config.evaluate.profiles)
    return get_profile(profile or workspace.config.evaluate.profile, profiles)


def _reports(
    workspace: Workspace, evaluation_set: str, models: Sequence[str] | None
) -> tuple[list[EvaluationReport], tuple[str, ...]]:
    """The reports to rank, and the refs left out because they measured other rows."""
    reports = latest_reports(workspace, evaluation_set)
    if not reports:
        get_evaluation_set(workspace, evaluation_set)  # an undeclared set says so
        raise NotFoundError(
            f"no model has been evaluated on {evaluation_set!r}; "
            f"run `mlprod eval run MODEL --set {evaluation_set}`"
        )
    newest = max(reports, key=lambda r: r.created_at)
    same_rows = {r.ref: r for r in reports if _rows_of(r) == _rows_of(newest)}
    others = {r.ref: r for r in reports if r.ref not in same_rows}
    if models is None:
        return list(same_rows.values()), tuple(
            f"{ref}: evaluated at commit {r.dataset_commit[:12]} or on an older definition of the set"
            for ref, r in others.items()
        )
    registry = Registry(workspace)
    chosen = []
    for ref in models:
        version = registry.get(ref)
        if version.ref in others:
            raise InvalidInputError(
                f"{ref} ({version.ref}) was evaluated on other rows of {evaluation_set!r} than the "
                f"newest reports (commit {others[version.ref].dataset_commit[:12]} vs "
                f"{newest.dataset_commit[:12]}); evaluate it again with "
                f"`mlprod eval run {version.ref} --set {evaluation_set}`"
            )
        if version.ref not in same_rows:
            raise NotFoundError(
                f"{ref} ({version.ref}) has no report on {evaluation_set!r}; "
                f"run `mlprod eval run {version.ref} --set {evaluation_set}`"
            )
        chosen.append(same_rows[version.ref])
    return list({r.ref: r for r in chosen}.values()), ()


def _rows_of(report: EvaluationReport) -> tuple[str, str]:
    return report.dataset_commit, json.dumps(report.evaluation_set.definition(), sort_keys=True)


def _explicit_directions(profile: Profile) -> dict[str, Any]:
    """The profile as configured, with every metric's direction written out, so that a later change
    of the default directions cannot change how a recorded leaderboard recomputes."""
    config = profile.to_config()
    config["directions"] = {metric: profile.direction(metric) for metric in profile.metrics}
    return config


def _entry(s: ScoredCandidate, report_id: str, metrics: dict[str, float | None]) -> LeaderboardEntry:
    return LeaderboardEntry(
        ref=s.name,
        report_id=report_id,
        utility=s.utility,
        rank=s.rank,
        metrics=metrics,
        failures=s.failures,
        missing=s.missing,
        pareto=s.pareto,
    )


def _entry_dict(e: LeaderboardEntry) -> dict[str, Any]:
    return {
        "ref": e.ref,
        "report_id": e.report_id,
        "utility": e.utility,
        "rank": e.rank,
        "metrics": e.metrics,
        "failures": list(e.failures),
        "missing": list(e.missing),
        "pareto": e.pareto,
    }
