"""Named evaluation sets: the rows of a versioned table at a ref, within a time range.

A set is declared in ``mlprod.toml`` (``[evaluate.sets.NAME]``) with the columns to slice by and the
group columns for fairness. Loading it resolves the ref to a commit, and the commit id is what a
report records, so an evaluation can be reproduced after the branch has moved on.

Examples:
    >>> july = EvaluationSet("july", table="flights", time="time_hour", start="2013-07-01", end="2013-08-01")
    >>> july.describe()
    "flights@main, time_hour in ['2013-07-01', '2013-08-01')"
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlprod.config import EvaluationSetSection
from mlprod.data import TableStore
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
        return f"{self.table}@{self.ref}, {self.time}{bounds}"

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


def save_evaluation_set(workspace: Workspace, evaluation_set: EvaluationSet) -> None:
    """Declare (or replace) a set in ``mlprod.toml``; its table and ref must exist."""
    TableStore(workspace).resolve(evaluation_set.table, evaluation_set.ref)
    definition = evaluation_set.definition()
    definition.pop("name")
    sets = {name: section.model_dump() for name, section in workspace.config.evaluate.sets.items()}
    workspace.set_config("evaluate", "sets", sets | {evaluation_set.name: definition})


def load_rows(workspace: Workspace, evaluation_set: EvaluationSet) -> LoadedRows:
    """The set's rows, read at the commit its ref points to now."""
    tables = TableStore(workspace)
    commit = tables.resolve(evaluation_set.table, evaluation_set.ref)
    table = tables.checkout(evaluation_set.table, commit.id)
    conditions = []
    if evaluation_set.start:
        conditions.append(f"({evaluation_set.time}) >= CAST(? AS TIMESTAMPTZ)")
    if evaluation_set.end:
        conditions.append(f"({evaluation_set.time}) < CAST(? AS TIMESTAMPTZ)")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    bounds = [b for b in (evaluation_set.start, evaluation_set.end) if b]
    try:
        with duckdb.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            conn.register("source", table)
            rows: pa.Table = conn.sql(f"SELECT * FROM source{where}", params=bounds).to_arrow_table()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} ({evaluation_set.describe()}) does not evaluate: {first}"
        ) from exc
    if rows.num_rows == 0:
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} selects no rows ({evaluation_set.describe()}, "
            f"commit {commit.id[:12]})"
        )
    return LoadedRows(rows, commit.id)


def _from_section(name: str, section: EvaluationSetSection) -> EvaluationSet:
    return EvaluationSet.from_definition({"name": name, **section.model_dump()})
