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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.profiles import get_profile, load_profiles
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.report_store import latest_reports
from mlprod.evaluate.utility import PoolSnapshot, Profile, ScoredCandidate, score
from mlprod.identity import current_user
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
) -> Leaderboard:
    """Rank the evaluated versions (all on the set, or those ``models`` refer to) and record it."""
    chosen = _profile(workspace, profile)
    reports = _reports(workspace, evaluation_set, models)
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
    board = Leaderboard(
        id=uuid.uuid4().hex,
        profile=chosen,
        evaluation_set=evaluation_set,
        snapshot=snapshot,
        entries=tuple(_entry(s, {r.ref: r for r in reports}, candidates) for s in scored),
        created_at=datetime.now(UTC),
        units_of=units_of,
    )
    with workspace.engine.begin() as conn:
        conn.execute(
            leaderboards.insert().values(
                id=board.id,
                profile=chosen.name,
                evaluation_set=evaluation_set,
                snapshot={"profile": chosen.to_config(), "pool": snapshot.to_dict(), "units_of": units_of},
                entries=[_entry_dict(e) for e in board.entries],
                created_at=board.created_at,
                who=current_user(),
            )
        )
    return board


def get_leaderboard(workspace: Workspace, leaderboard_id: str) -> Leaderboard:
    """A recorded leaderboard, recomputed from its snapshot (and checked against what was recorded)."""
    if len(leaderboard_id) < 6:
        raise InvalidInputError(f"leaderboard id {leaderboard_id!r} is too short: give at least 6 characters")
    query = leaderboards.select().where(leaderboards.c.id.startswith(leaderboard_id)).limit(2)
    with workspace.engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        raise NotFoundError(f"leaderboard {leaderboard_id!r} not found")
    if len(rows) > 1:
        raise InvalidInputError(f"leaderboard id {leaderboard_id!r} is ambiguous: give more characters")
    row = rows[0]
    profile = Profile.from_config(row.profile, row.snapshot["profile"])
    snapshot = PoolSnapshot.from_dict(row.snapshot["pool"])
    recorded = {e["ref"]: e for e in row.entries}
    candidates = {ref: e["metrics"] for ref, e in recorded.items()}
    scored, _ = score(candidates, profile, snapshot=snapshot)
    entries = []
    for s in scored:
        entry = LeaderboardEntry(
            ref=s.name,
            report_id=recorded[s.name]["report_id"],
            utility=s.utility,
            rank=s.rank,
            metrics=candidates[s.name],
            failures=s.failures,
            missing=s.missing,
            pareto=s.pareto,
        )
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
) -> list[EvaluationReport]:
    reports = latest_reports(workspace, evaluation_set)
    if not reports:
        raise NotFoundError(
            f"no model has been evaluated on {evaluation_set!r}; "
            f"run `mlprod eval run MODEL --set {evaluation_set}`"
        )
    if models is None:
        return reports
    registry = Registry(workspace)
    by_ref = {r.ref: r for r in reports}
    chosen = []
    for ref in models:
        version = registry.get(ref)
        if version.ref not in by_ref:
            raise NotFoundError(
                f"{ref} ({version.ref}) has no report on {evaluation_set!r}; "
                f"run `mlprod eval run {version.ref} --set {evaluation_set}`"
            )
        chosen.append(by_ref[version.ref])
    return list({r.ref: r for r in chosen}.values())


def _entry(
    s: ScoredCandidate, reports: dict[str, EvaluationReport], candidates: dict[str, dict[str, float | None]]
) -> LeaderboardEntry:
    return LeaderboardEntry(
        ref=s.name,
        report_id=reports[s.name].id,
        utility=s.utility,
        rank=s.rank,
        metrics=candidates[s.name],
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
