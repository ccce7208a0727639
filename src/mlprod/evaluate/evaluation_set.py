"""Named evaluation sets: the rows of a versioned table at a ref, within a time range.

A set is declared in ``mlprod.toml`` (``[evaluate.sets.NAME]``) with the columns to slice by and the
group columns for fairness. Declaring it pins it: the commit its ref names at that moment is recorded
as ``commit``, and every evaluation reads the rows there, so reports made after the branch moved on
still measure the same rows. A set declared with ``follow`` keeps no commit and reads the branch's
head each time (reports on other commits then compare by their rows, see ``same_rows``). Every report
records the commit it read.

Examples:
    >>> july = EvaluationSet("july", table="flights", time="time_hour", start="2013-07-01", end="2013-08-01")
    >>> july.describe()
    "flights@main, time_hour in ['2013-07-01', '2013-08-01')"
    >>> EvaluationSet("july", table="flights", time="time_hour", commit="1a2b3c4d5e6f7a8b").describe()
    'flights@main (pinned at 1a2b3c4d5e6f), time_hour'
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlprod.config import EvaluationSetSection
from mlprod.data import CommitInfo, TableStore
from mlprod.data.history import BRANCH
from mlprod.errors import InvalidInputError, NotFoundError
from mlprod.evaluate.slices import PERIODS
from mlprod.lazy import lazy_module
from mlprod.names import check_name
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    pa = lazy_module("pyarrow")


@dataclass(frozen=True)
class EvaluationSet:
    """Which rows a model is evaluated on, and how they are sliced."""

    name: str
    table: str
    time: str
    ref: str = "main"
    start: str | None = None
    end: str | None = None
    period: str = "week"
    slices: tuple[str, ...] = field(default_factory=tuple)
    fairness: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    commit: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "evaluation set")
        if self.period not in PERIODS:
            raise InvalidInputError(
                f"evaluation set {self.name!r}: period {self.period!r} is not one of {', '.join(PERIODS)}"
            )
        if not self.table or not self.time:
            raise InvalidInputError(f"evaluation set {self.name!r} needs a table and a time column")

    def describe(self) -> str:
        bounds = f" in [{self.start!r}, {self.end!r})" if self.start or self.end else ""
        pin = (
            f" (pinned at {self.commit[:12]})" if self.commit and not self.commit.startswith(self.ref) else ""
        )
        return f"{self.table}@{self.ref}{pin}, {self.time}{bounds}"

    def measures(self) -> dict[str, Any]:
        """What decides a report's figures besides the data: the rows selected and how they are cut.

        Two reports whose set agrees on these, read on equal rows, measured the same thing; the ref,
        the pinned commit and the description do not matter.
        """
        keys = ("table", "time", "start", "end", "period", "slices", "fairness")
        definition = self.definition()
        return {key: definition[key] for key in keys}

    def definition(self) -> dict[str, Any]:
        """The set as plain data (recorded in every report)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_definition(cls, data: dict[str, Any]) -> EvaluationSet:
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class LoadedRows:
    """An evaluation set's rows and the commit they were read at."""

    rows: pa.Table
    commit: str


def evaluation_sets(workspace: Workspace) -> dict[str, EvaluationSet]:
    """Every set declared in the workspace's ``mlprod.toml``."""
    return {name: _from_section(name, section) for name, section in workspace.config.evaluate.sets.items()}


def get_evaluation_set(workspace: Workspace, name: str) -> EvaluationSet:
    sets = evaluation_sets(workspace)
    if name not in sets:
        known = ", ".join(sorted(sets)) or "none; declare one under [evaluate.sets.NAME] in mlprod.toml"
        raise NotFoundError(f"evaluation set {name!r} is not declared (sets: {known})")
    return sets[name]


def save_evaluation_set(
    workspace: Workspace, evaluation_set: EvaluationSet, *, follow: bool = False
) -> EvaluationSet:
    """Declare (or replace) a set in ``mlprod.toml`` and return it as declared.

    The set is pinned to the commit its ``commit`` (when given) or its ref names now; with ``follow``
    its ref must be a branch, and the set reads the branch's head at every evaluation.
    """
    if follow and evaluation_set.commit is not None:
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r}: give either a commit to pin or follow, not both"
        )
    tables = TableStore(workspace)
    resolved = _resolve(tables, evaluation_set, evaluation_set.commit or evaluation_set.ref)
    if follow:
        kinds = {ref.name: ref.kind for ref in tables.refs(evaluation_set.table)}
        if kinds.get(evaluation_set.ref) != BRANCH:
            what = f"a {kinds[evaluation_set.ref]}" if evaluation_set.ref in kinds else "a commit"
            raise InvalidInputError(
                f"evaluation set {evaluation_set.name!r}: only a branch can be followed, and "
                f"{evaluation_set.ref!r} is {what} of table {evaluation_set.table!r}, which never moves"
            )
    declared = dataclasses.replace(evaluation_set, commit=None if follow else resolved.id)
    definition = declared.definition()
    definition.pop("name")
    sets = {name: section.model_dump() for name, section in workspace.config.evaluate.sets.items()}
    workspace.set_config("evaluate", "sets", sets | {declared.name: definition})
    return declared


def set_commit(workspace: Workspace, evaluation_set: EvaluationSet) -> str:
    """The commit the set reads now: the pinned one, or the head of the ref it follows."""
    tables = TableStore(workspace)
    return _resolve(tables, evaluation_set, evaluation_set.commit or evaluation_set.ref).id


def selection(evaluation_set: EvaluationSet) -> tuple[str, list[str]]:
    """The SQL condition (with its parameters) that selects the set's rows from a table's rows."""
    conditions = []
    if evaluation_set.start:
        conditions.append(f"({evaluation_set.time}) >= CAST(? AS TIMESTAMPTZ)")
    if evaluation_set.end:
        conditions.append(f"({evaluation_set.time}) < CAST(? AS TIMESTAMPTZ)")
    bounds = [b for b in (evaluation_set.start, evaluation_set.end) if b]
    return " AND ".join(conditions) or "TRUE", bounds


def select_rows(evaluation_set: EvaluationSet, table: pa.Table) -> pa.Table:
    """The rows of ``table`` (a version of the set's table) that the set selects."""
    where, bounds = selection(evaluation_set)
    try:
        with duckdb.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            conn.register("source", table)
            rows: pa.Table = conn.sql(f"SELECT * FROM source WHERE {where}", params=bounds).to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} ({evaluation_set.describe()}) does not evaluate: {first}"
        ) from exc
    return rows


def load_rows(workspace: Workspace, evaluation_set: EvaluationSet) -> LoadedRows:
    """The set's rows, read at its pinned commit (or the head of the branch it follows)."""
    tables = TableStore(workspace)
    commit = _resolve(tables, evaluation_set, evaluation_set.commit or evaluation_set.ref)
    rows = select_rows(evaluation_set, tables.checkout(evaluation_set.table, commit.id))
    if rows.num_rows == 0:
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} selects no rows ({evaluation_set.describe()}, "
            f"commit {commit.id[:12]})"
        )
    return LoadedRows(rows, commit.id)


def _resolve(tables: TableStore, evaluation_set: EvaluationSet, ref: str) -> CommitInfo:
    """The commit ``ref`` names in the set's table; an unknown table or ref names the set."""
    try:
        return tables.resolve(evaluation_set.table, ref)
    except (NotFoundError, InvalidInputError) as exc:
        raise type(exc)(f"evaluation set {evaluation_set.name!r}: {exc}") from exc


def _from_section(name: str, section: EvaluationSetSection) -> EvaluationSet:
    return EvaluationSet.from_definition({"name": name, **section.model_dump()})
