"""Did two evaluations measure the same rows? And if not, how do the rows differ?

A report records the commit it read and a digest of the rows its set selected there. Two
evaluations measured the same data when their sets agree on what they measure
(``EvaluationSet.measures``) and the commits are equal, or the digests are equal, or the keyed diff
between the two commits touches none of the rows the set selects. The diff costs what the change
costs (``mlprod.data.diff``), so ruling out a month appended after the set's rows is cheap. A digest
that differs only because its text form changed (another DuckDB version) is settled by the diff.

Examples:
    >>> str(RowsChange(added=12, removed=3, changed=0))
    '+12 -3 ~0'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from mlprod.data import TableStore, diff_versions
from mlprod.data.changes import side
from mlprod.errors import InvalidInputError, MlprodError
from mlprod.evaluate.evaluation_set import EvaluationSet, selection
from mlprod.evaluate.report import EvaluationReport
from mlprod.workspace import Workspace


@dataclass(frozen=True)
class RowsChange:
    """Rows of a set added, removed and changed (in place) from one commit to another."""

    added: int
    removed: int
    changed: int

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def __str__(self) -> str:
        return f"+{self.added} -{self.removed} ~{self.changed}"


@dataclass(frozen=True)
class Evaluated:
    """What an evaluation read: the set as defined then, the commit, and the rows' digest if known."""

    evaluation_set: EvaluationSet
    commit: str
    digest: str | None = None

    @classmethod
    def of(cls, report: EvaluationReport) -> Evaluated:
        return cls(report.evaluation_set, report.dataset_commit, report.rows_digest)

    def where(self) -> str:
        return f"{self.evaluation_set.table}@{self.commit[:12]}"


@dataclass(frozen=True)
class SameRows:
    """The answer: ``same``, why (``reason``), and the change in the set's rows when one was measured."""

    same: bool
    reason: str
    change: RowsChange | None = None


def rows_digest(rows: pa.Table, key: Sequence[str]) -> str:
    """A content hash of ``rows`` (unique by ``key``): md5 over each row's text, in key order, with
    the columns in name order, so neither the row order nor the column order of a version counts."""
    columns = ", ".join(f"{_quote(name)} := {_quote(name)}" for name in sorted(rows.column_names))
    order = ", ".join(_quote(k) for k in key)
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.register("selected", rows)
        found = conn.execute(
            f"SELECT md5(coalesce(string_agg(md5(CAST(struct_pack({columns}) AS VARCHAR)), '' "
            f"ORDER BY {order}), '')) FROM selected"
        ).fetchone()
    assert found is not None
    return str(found[0])


def compare_rows(old: Evaluated, new: Evaluated, *, workspace: Workspace | None = None) -> SameRows:
    """Whether ``old`` and ``new`` measured the same rows; without ``workspace`` only the commits and
    digests are compared (no diff is read), so rows not proven equal count as different."""
    return RowsComparer(workspace).compare(old, new)


class RowsComparer:
    """Compares evaluations, reading each diff between two commits once (a leaderboard compares many
    reports that share a few commits)."""

    def __init__(self, workspace: Workspace | None) -> None:
        self._tables = None if workspace is None else TableStore(workspace)
        self._changes: dict[tuple[str, str, str], RowsChange | str] = {}

    def compare(self, old: Evaluated, new: Evaluated) -> SameRows:
        a, b = old.evaluation_set, new.evaluation_set
        if a.name != b.name:
            return SameRows(False, f"evaluated on {a.name!r} and {b.name!r}")
        redefined = [key for key, value in a.measures().items() if b.measures()[key] != value]
        if redefined:
            changes = ", ".join(f"{key} {a.measures()[key]!r} -> {b.measures()[key]!r}" for key in redefined)
            return SameRows(False, f"set {a.name!r} defined differently ({changes})")
        if old.commit == new.commit:
            return SameRows(True, f"both read {new.where()}")
        if old.digest is not None and old.digest == new.digest:
            return SameRows(True, f"{a.name!r} selects equal rows at {old.where()} and {new.where()}")
        if self._tables is None:
            return SameRows(False, f"{a.name!r} read at {old.where()} and {new.where()}, rows not compared")
        change = self._change(b, old.commit, new.commit)
        if isinstance(change, str):
            return SameRows(
                False, f"{a.name!r} rows at {old.where()} and {new.where()} cannot be compared: {change}"
            )
        if change.empty:
            return SameRows(
                True, f"no row {a.name!r} selects changed from {old.where()} to {new.where()}", change
            )
        return SameRows(
            False, f"{a.name!r} selects other rows at {old.where()} than at {new.where()}: {change}", change
        )

    def _change(self, evaluation_set: EvaluationSet, old: str, new: str) -> RowsChange | str:
        assert self._tables is not None
        cached = (evaluation_set.table, old, new)
        if cached not in self._changes:
            try:
                diff = diff_versions(self._tables, evaluation_set.table, old, new)
                self._changes[cached] = change_in_set(evaluation_set, diff.change, diff.key, diff.schema)
            except MlprodError as exc:
                self._changes[cached] = str(exc)
        return self._changes[cached]


def change_in_set(
    evaluation_set: EvaluationSet, change: pa.Table, key: Sequence[str], schema: pa.Schema
) -> RowsChange:
    """Count the rows of a keyed change set that the set selects: a row is added when it is selected
    after but not before (new, or moved into the time range), removed in the opposite case, changed
    when selected on both sides with some value different."""
    where, bounds = selection(evaluation_set)
    keys = [_quote(k) for k in key]
    join = " AND ".join(f"b.{k} = a.{k}" for k in keys)
    values = [_quote(f.name) for f in schema if f.name not in key]
    differs = " OR ".join(f"b.{c} IS DISTINCT FROM a.{c}" for c in values) or "FALSE"
    try:
        with duckdb.connect() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            conn.register("before_rows", side(change, "before", key, schema))
            conn.register("after_rows", side(change, "after", key, schema))
            found = conn.execute(
                f"WITH b AS (SELECT *, TRUE AS __in FROM before_rows WHERE {where}), "
                f"a AS (SELECT *, TRUE AS __in FROM after_rows WHERE {where}) "
                "SELECT count(*) FILTER (WHERE b.__in IS NULL), count(*) FILTER (WHERE a.__in IS NULL), "
                f"count(*) FILTER (WHERE b.__in AND a.__in AND ({differs})) "
                f"FROM b FULL OUTER JOIN a ON {join}",
                [*bounds, *bounds],
            ).fetchone()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"evaluation set {evaluation_set.name!r} ({evaluation_set.describe()}) does not evaluate: {first}"
        ) from exc
    assert found is not None
    return RowsChange(added=int(found[0]), removed=int(found[1]), changed=int(found[2]))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
