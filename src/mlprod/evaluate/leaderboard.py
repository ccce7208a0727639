"""Leaderboards: the evaluated model versions ranked by a profile's utility, recorded for good.

A leaderboard is built from the newest report of each version on an evaluation set that measured
the rows the set selects now; the others are listed as left out, with why (``pool``). The pool its
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

from mlprod.errors import InvalidInputError
from mlprod.evaluate.pool import LeftOut, ranked_pool
from mlprod.evaluate.profiles import get_profile, load_profiles
from mlprod.evaluate.report import EvaluationReport
from mlprod.evaluate.utility import PoolSnapshot, Profile, ScoredCandidate, score
from mlprod.identity import current_user
from mlprod.meta.lookup import row_by_id_prefix
from mlprod.meta.tables import leaderboards
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
    excluded: tuple[LeftOut, ...] = ()
    warnings: tuple[str, ...] = ()
    rows: str | None = None
    """Where the ranked reports' rows are: the set's table at the commit it read (None if not recorded)."""

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
            "rows": self.rows,
            "excluded": [x.to_dict() for x in self.excluded],
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

    Only reports of the rows the set selects now are ranked: on its current definition, at its
    pinned commit or on any commit where those rows are the same (``mlprod.evaluate.pool``). The
    others, and versions of the same models without a report, are listed in ``excluded`` with the
    reason and the command that evaluates them; naming one in ``models`` is an error.
    ``record=False`` ranks without storing (e.g. for the gate's units).
    """
    chosen = _profile(workspace, profile)
    pool = ranked_pool(workspace, evaluation_set, models)
    reports, excluded = list(pool.reports), pool.left_out
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
        rows=pool.where(),
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
                    "rows": board.rows,
                    "excluded": [x.to_dict() for x in excluded],
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
        excluded=tuple(LeftOut.from_dict(x) for x in row.snapshot.get("excluded", ())),
        warnings=tuple(row.snapshot.get("warnings", ())),
        rows=row.snapshot.get("rows"),
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
