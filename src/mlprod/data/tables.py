"""Versioned tables: create, commit (append / upsert / delete / replace), log, checkout, branch, tag.

Examples:
    >>> import tempfile, pyarrow as pa
    >>> from mlprod.workspace import Workspace
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> tables = TableStore(ws)
    >>> first = pa.table({"city": ["Oslo", "Rome"], "pop": [0.7, 2.8]})
    >>> _ = tables.create("cities", key=["city"], data=first)
    >>> result = tables.commit("cities", pa.table({"city": ["Rome"], "pop": [2.9]}), mode="upsert")
    >>> result.counts
    {'added': 0, 'removed': 0, 'changed': 1}
    >>> tables.checkout("cities").sort_by("city").to_pylist()
    [{'city': 'Oslo', 'pop': 0.7}, {'city': 'Rome', 'pop': 2.9}]
    >>> ws.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from mlprod.artifacts import ArtifactStore
from mlprod.data.changes import compare, retyped_change, side, union_schema
from mlprod.data.gc_fence import FenceMark, GcFence, KeptWrites, record_fenced
from mlprod.data.history import BRANCH, TAG, CommitInfo, History, Ref, TableInfo
from mlprod.data.ingest import to_arrow
from mlprod.data.keys import bucket_ids, check_key_columns, check_unique_keys
from mlprod.data.manifest import Manifest
from mlprod.data.rebase import (
    carried_manifest,
    changes_since,
    rebase_change,
    their_change,
    their_change_from_rows,
)
from mlprod.data.schemas import reconcile
from mlprod.data.screening import (
    Policy,
    Screened,
    quarantine_rows,
    quarantine_table,
    reference_buckets,
    screen,
    screened_features,
)
from mlprod.data.storage import (
    AFTER,
    BEFORE,
    conform,
    read_version,
    write_buckets,
    write_change,
)
from mlprod.data.validation import Expectations, infer_expectations
from mlprod.errors import AlreadyExistsError, ConflictError, InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.lazy import lazy_module
from mlprod.meta.locks import exclusive
from mlprod.names import check_name
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    duckdb = lazy_module("duckdb")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

if TYPE_CHECKING:
    from mlprod.data.poisoning import PoisoningReport

Mode = Literal["append", "upsert", "delete", "replace"]
MODES: tuple[str, ...] = ("append", "upsert", "delete", "replace")
DEFAULT_BRANCH = "main"
DEFAULT_BUCKETS = 128
COMPACT_FRACTION = 0.1
"""Buckets are rewritten once the pending change sets hold more rows than this share of the table."""
LAND_ATTEMPTS = 8
"""Attempts to move a branch before a commit gives up (each after rebasing onto the branch's new head)."""
LOCK_TIMEOUT_SECONDS = 120.0
BACKOFF_SECONDS = 0.01
BACKOFF_CAP_SECONDS = 0.5


@dataclass(frozen=True)
class CommitResult:
    """What a commit did: its id (the unchanged head when there was nothing to commit) and counts."""

    table: str
    branch: str
    commit_id: str
    committed: bool
    counts: dict[str, int]
    num_rows: int
    added_columns: tuple[str, ...] = ()
    retyped_columns: tuple[str, ...] = ()
    rewritten_buckets: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    rebases: int = 0
    """How many times the change was carried onto a branch head that moved while it was prepared."""
    retries: int = 0
    """How many attempts to move the branch failed (another writer moved it first) before this one won."""

    @property
    def short_id(self) -> str:
        return self.commit_id[:12]


@dataclass(frozen=True)
class _Prepared:
    """A commit computed against ``head``, not yet landed."""

    head: str
    parent: Manifest
    change: pa.Table
    schema: pa.Schema
    added: tuple[str, ...]
    retyped: tuple[str, ...]
    whole: bool
    """A whole-table change (``replace``, a column type change): prepared again, not rebased."""
    notes: dict[str, Any]
    rejected: pa.Table | None


@dataclass(frozen=True)
class _Writes:
    """What one commit writes: the gc fence as it stood before its first write, and the objects it
    put (their bytes kept, so that what a concurrent sweep removed can be put back)."""

    mark: FenceMark
    objects: KeptWrites


class TableStore:
    """All versioned tables of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self.history = History(workspace.engine)
        self.objects = ArtifactStore(workspace.artifacts.root / "tables")
        self.fence = GcFence(workspace.engine)
        self._manifests: dict[str, Manifest] = {}
        self._lock = threading.Lock()

    # ---- tables -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        key: Sequence[str],
        data: Any = None,
        buckets: int = DEFAULT_BUCKETS,
        label: str | None = None,
        description: str = "",
        message: str = "",
    ) -> TableInfo:
        """A new table keyed by ``key`` with an empty first commit on ``main`` (then ``data``, if given)."""
        check_name(name, "table")
        key = tuple(key)
        if not key or len(set(key)) != len(key) or not all(isinstance(k, str) and k for k in key):
            raise InvalidInputError(f"table {name!r}: the key must be one or more distinct column names")
        if not 1 <= buckets <= 65_536:
            raise InvalidInputError(f"table {name!r}: buckets must be between 1 and 65536, got {buckets}")
        batch = None if data is None else to_arrow(data)
        if batch is not None:
            check_key_columns(batch, key, what=f"table {name!r}")
            if label is not None and label not in batch.column_names:
                raise InvalidInputError(f"table {name!r}: label column {label!r} is not in the data")
        now = datetime.now(UTC)
        info = TableInfo(name, key, buckets, label, description, None, now, current_user())
        root = Manifest(
            table=name,
            key=key,
            schema=None,
            buckets=(None,) * buckets,
            bucket_rows=(0,) * buckets,
            deltas=(),
            change=None,
            parents=(),
            operation="create",
            message=message or "create table",
            author=info.author,
            created_at=now,
            num_rows=0,
        )
        writes = self._writes()
        commit_id = self._put_manifest(root, writes)
        record_fenced(
            self.fence,
            writes.mark,
            lambda guard: self.history.create_table(
                info, _commit_info(commit_id, root), DEFAULT_BRANCH, guard=guard
            ),
            lambda: writes.objects.restore([commit_id]),
        )
        if batch is not None:
            try:
                self.commit(name, batch, mode="append", message=message or "initial data")
            except BaseException:
                self.history.drop_table(name)  # a table whose first rows were refused is not created
                raise
        return info

    @property
    def workspace(self) -> Workspace:
        return self._ws

    def info(self, name: str) -> TableInfo:
        return self.history.table(name)

    def tables(self) -> list[TableInfo]:
        return self.history.tables()

    def infer_expectations(
        self, table: str, ref: str = DEFAULT_BRANCH, *, unbounded: Sequence[str] = (), **options: Any
    ) -> Expectations:
        """Infer expectations (types, nulls, ranges, categories, row band) from a version and store them.

        Columns in ``unbounded`` get no range or category check (a month number, a date part).
        """
        info = self.history.table(table)
        rows = self.checkout(table, ref)
        unknown = [name for name in unbounded if name not in rows.column_names]
        if unknown:
            raise InvalidInputError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        expectations = infer_expectations(rows, info.key, **options)
        expectations = dataclasses.replace(
            expectations,
            columns=tuple(
                dataclasses.replace(c, minimum=None, maximum=None, categories=None)
                if c.name in unbounded
                else c
                for c in expectations.columns
            ),
        )
        self.history.set_expectations(table, expectations.to_dict())
        return expectations

    def expectations(self, table: str) -> Expectations | None:
        """The table's stored expectations, if any."""
        stored = self.history.table(table).expectations
        return None if stored is None else Expectations.from_dict(stored)

    def clear_expectations(self, table: str) -> None:
        self.history.table(table)
        self.history.set_expectations(table, None)

    # ---- reading ------------------------------------------------------------------------------

    def resolve(self, table: str, ref: str = DEFAULT_BRANCH, *, as_of: datetime | None = None) -> CommitInfo:
        """The commit a branch, tag or commit id (prefix) names; with ``as_of``, the last one then."""
        self.history.table(table)
        refs = {r.name: r for r in self.history.refs(table)}
        commit_id = refs[ref].commit_id if ref in refs else self.history.get_commit(table, ref).id
        if as_of is None:
            return self.history.get_commit(table, commit_id)
        if as_of.tzinfo is None:
            raise InvalidInputError(f"as_of {as_of} has no time zone; give an aware time (UTC)")
        for commit in self.history.first_parent_chain(table, commit_id):
            if commit.created_at <= as_of:
                return commit
        raise NotFoundError(f"table {table!r} did not exist yet at {as_of.isoformat()} on {ref!r}")

    def manifest(self, commit_id: str) -> Manifest:
        """The manifest of a commit, read (and checked against its id) once per store."""
        with self._lock:
            found = self._manifests.get(commit_id)
        if found is None:
            found = Manifest.from_bytes(self.objects.get_bytes(commit_id))
            with self._lock:
                self._manifests[commit_id] = found
        return found

    def checkout(self, table: str, ref: str = DEFAULT_BRANCH, *, as_of: datetime | None = None) -> pa.Table:
        """The rows of a version as Arrow (every object's sha256 is checked on the way)."""
        return read_version(self.objects, self.manifest(self.resolve(table, ref, as_of=as_of).id))

    def checkout_pandas(self, table: str, ref: str = DEFAULT_BRANCH, *, as_of: datetime | None = None) -> Any:
        """The rows of a version as a pandas DataFrame."""
        return self.checkout(table, ref, as_of=as_of).to_pandas()

    def checkout_duckdb(
        self,
        table: str,
        ref: str = DEFAULT_BRANCH,
        *,
        as_of: datetime | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> duckdb.DuckDBPyRelation:
        """The rows of a version as a DuckDB relation (on ``connection``, or DuckDB's default one)."""
        rows = self.checkout(table, ref, as_of=as_of)
        return (connection or duckdb.default_connection()).from_arrow(rows)

    def log(self, table: str, ref: str = DEFAULT_BRANCH, *, limit: int | None = None) -> list[CommitInfo]:
        """Commits reachable from ``ref`` along first parents, newest first."""
        start = self.resolve(table, ref)
        found = []
        for commit in self.history.first_parent_chain(table, start.id):
            found.append(commit)
            if limit is not None and len(found) >= limit:
                break
        return found

    def refs(self, table: str) -> list[Ref]:
        self.history.table(table)
        return self.history.refs(table)

    # ---- branches and tags --------------------------------------------------------------------

    def branch(self, table: str, name: str, start: str = DEFAULT_BRANCH) -> Ref:
        """A new branch at ``start`` (a branch, tag or commit)."""
        check_name(name, "branch")
        commit = self.resolve(table, start)
        self.history.create_ref(table, name, BRANCH, commit.id)
        return self.history.ref(table, name)

    def tag(self, table: str, name: str, ref: str = DEFAULT_BRANCH) -> Ref:
        """A tag: a name that stays on one commit."""
        check_name(name, "tag")
        commit = self.resolve(table, ref)
        self.history.create_ref(table, name, TAG, commit.id)
        return self.history.ref(table, name)

    def delete_branch(self, table: str, name: str) -> None:
        if name == DEFAULT_BRANCH:
            raise InvalidInputError(f"table {table!r}: the {DEFAULT_BRANCH!r} branch cannot be deleted")
        self.history.table(table)
        self.history.delete_ref(table, name, BRANCH)

    # ---- writing ------------------------------------------------------------------------------

    def commit(
        self,
        table: str,
        data: Any,
        *,
        mode: Mode = "upsert",
        branch: str = DEFAULT_BRANCH,
        message: str = "",
        allow_type_change: bool = False,
        allow_lossy_cast: bool = False,
        allow_new_columns: bool = False,
        validation: Policy | None = None,
        checks: bool = False,
        rebase: bool = True,
    ) -> CommitResult:
        """Apply ``data`` to ``branch`` as one commit.

        When other commits land on the branch while this one is prepared, the change is rebased onto
        them (their keys and cells untouched here are kept) and lands after them; a cell that both
        changed differently raises ``MergeConflictError`` and commits nothing. ``rebase=False`` raises
        ``ConflictError`` instead as soon as the branch moved (the behaviour before rebasing existed).

        ``validation`` checks the rows against the table's expectations first: ``reject`` (the default
        when the table has expectations) commits nothing on a violation, ``quarantine`` commits the good
        rows and appends the bad ones to the side table ``<table>.quarantine``. ``checks`` runs the
        poisoning checks against the current version and reports them in ``notes`` (``poisoning``, and
        ``suspicious_keys`` to review or delete); it never drops rows.

        A value cast into a column's type must come back unchanged (``mlprod.data.casts``), else the
        commit is refused; ``allow_lossy_cast`` accepts rounding and truncation instead (never
        overflow, never in key columns) and lists the columns in ``notes["rounded_columns"]``.

        Columns the table does not have are refused (``NewColumnsError``, nothing committed) unless
        ``allow_new_columns`` asks for schema evolution: they are then added for good, existing rows
        reading null, and listed in ``CommitResult.added_columns``.
        """
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        info = self.history.table(table)
        batch = to_arrow(data)
        what = f"table {table!r}"
        check_key_columns(batch, info.key, what=what)
        check_unique_keys(batch, info.key, what=what)

        def prepare() -> _Prepared:
            return self._prepare(
                info,
                branch,
                batch,
                mode,
                allow_type_change,
                allow_lossy_cast,
                allow_new_columns,
                validation,
                checks,
            )

        prepared = prepare()
        if rebase:
            result, prepared = self._land(info, branch, prepared, prepare, operation=mode, message=message)
        else:
            result = self.commit_change(
                info,
                branch=branch,
                parent=prepared.parent,
                parent_id=prepared.head,
                change=prepared.change,
                schema=prepared.schema,
                operation=mode,
                message=message,
                added=prepared.added,
                retyped=prepared.retyped,
            )
        notes = dict(prepared.notes)
        if prepared.rejected is not None and prepared.rejected.num_rows:
            notes["quarantined"] = self._quarantine(info.name, prepared.rejected, result.commit_id)
        return dataclasses.replace(result, notes=notes)

    def _prepare(
        self,
        info: TableInfo,
        branch: str,
        batch: pa.Table,
        mode: str,
        allow_type_change: bool,
        allow_lossy_cast: bool,
        allow_new_columns: bool,
        validation: Policy | None,
        checks: bool,
    ) -> _Prepared:
        """The change ``batch`` makes to the branch's current head (validated, with its notes)."""
        head = self._branch_head(info.name, branch)
        parent = self.manifest(head)
        fitted = reconcile(
            info.name,
            parent.schema,
            batch,
            info.key,
            keys_only=mode == "delete",
            allow_type_change=allow_type_change,
            allow_lossy_cast=allow_lossy_cast,
            allow_new_columns=allow_new_columns,
        )
        schema = union_schema(fitted.schema, parent.schema) if mode == "delete" else fitted.schema
        screened = (
            screen(info, fitted.batch, validation, arrival=mode in ("append", "replace"))
            if mode != "delete"
            else Screened(fitted.batch, None, None)
        )
        notes: dict[str, Any] = {"rounded_columns": fitted.rounded} if fitted.rounded else {}
        if screened.report is not None:
            notes["validation"] = screened.report
        if checks and mode != "delete":
            report = self._poisoning(info, parent, screened.batch)
            notes["poisoning"] = report
            notes["suspicious_keys"] = screened.batch.select(list(info.key)).take(
                pa.array(report.suspicious_rows)
            )
        lossy = fitted.retyped if allow_lossy_cast else ()
        change = self._change(
            info, parent, screened.batch, mode, schema, rewrite=bool(fitted.retyped), lossy=lossy
        )
        whole = mode == "replace" or bool(fitted.retyped)
        return _Prepared(
            head, parent, change, schema, fitted.added, fitted.retyped, whole, notes, screened.rejected
        )

    def _land(
        self,
        info: TableInfo,
        branch: str,
        prepared: _Prepared,
        prepare: Callable[[], _Prepared],
        *,
        operation: str,
        message: str,
    ) -> tuple[CommitResult, _Prepared]:
        """Move the branch to the prepared commit, rebasing it first if the branch moved meanwhile.

        The branch's commit lock is held only from re-reading the head to moving the branch, so writers
        land in turn however long each took to prepare, and a big commit cannot lose the race to small
        ones forever. A whole-table change (``replace``, a column type change) is prepared again
        instead of rebased (under the lock if need be): it is meant to supersede what is there.
        """
        if _empty(prepared):
            return self._unchanged(info.name, branch, prepared), prepared
        writes = self._writes()
        manifest, rewritten = self._prepared_manifest(info, prepared, operation, message, writes)
        rebases = retries = 0
        lock = f"table {info.name!r} branch {branch!r}"
        for attempt in range(LAND_ATTEMPTS):
            # Catch up with the branch before taking its lock and write the manifest there, so that
            # under the lock only what landed while waiting for it is left to rebase onto.
            prepared, manifest, rewritten, moved = self._catch_up(
                info, branch, prepared, manifest, rewritten, prepare, operation, message, writes
            )
            rebases += moved
            if _empty(prepared):
                return self._unchanged(info.name, branch, prepared), prepared
            manifest = dataclasses.replace(manifest, created_at=datetime.now(UTC))
            commit_id = self._put_manifest(manifest, writes)
            writes = self._after_sweeps(writes, [commit_id, *manifest.objects()])
            with exclusive(self._ws.engine, lock, timeout=LOCK_TIMEOUT_SECONDS):
                prepared, manifest, rewritten, moved = self._catch_up(
                    info, branch, prepared, manifest, rewritten, prepare, operation, message, writes
                )
                if moved:
                    rebases += 1
                    if _empty(prepared):
                        return self._unchanged(info.name, branch, prepared), prepared
                    manifest = dataclasses.replace(manifest, created_at=datetime.now(UTC))
                    commit_id = self._put_manifest(manifest, writes)
                try:
                    self._swap_branch(info, branch, prepared.head, commit_id, manifest, writes)
                except ConflictError:
                    if self._branch_head(info.name, branch) == prepared.head:
                        raise  # not a moved branch (an object a gc sweep took could not be put back)
                    retries += 1  # moved by a writer that does not take the lock
                else:
                    result = CommitResult(
                        info.name,
                        branch,
                        commit_id,
                        True,
                        _counts(prepared.change),
                        manifest.num_rows,
                        prepared.added,
                        prepared.retyped,
                        rewritten,
                        rebases=rebases,
                        retries=retries,
                    )
                    return result, prepared
            time.sleep(random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt)))
        raise ConflictError(
            f"table {info.name!r}: branch {branch!r} kept moving while this commit was landed; gave up after "
            f"{LAND_ATTEMPTS} attempts ({rebases} rebases), nothing was committed: retry later"
        )

    def _catch_up(
        self,
        info: TableInfo,
        branch: str,
        prepared: _Prepared,
        manifest: Manifest,
        rewritten: int,
        prepare: Callable[[], _Prepared],
        operation: str,
        message: str,
        writes: _Writes,
    ) -> tuple[_Prepared, Manifest, int, bool]:
        """The prepared commit and its manifest on the branch's current head: as they are if it has not
        moved, else rebased onto it (or, for a whole-table change, prepared again); and whether it moved."""
        head = self._branch_head(info.name, branch)
        if head == prepared.head:
            return prepared, manifest, rewritten, False
        if not prepared.whole:
            prepared, manifest, reused = self._rebased(info, branch, prepared, manifest, head, writes)
            return prepared, manifest, rewritten if reused else 0, True
        prepared = prepare()
        manifest, rewritten = self._prepared_manifest(info, prepared, operation, message, writes)
        return prepared, manifest, rewritten, True

    def _prepared_manifest(
        self, info: TableInfo, prepared: _Prepared, operation: str, message: str, writes: _Writes
    ) -> tuple[Manifest, int]:
        """The manifest of a prepared commit on the head it was prepared against (objects written)."""
        return self._manifest(
            info,
            prepared.parent,
            prepared.head,
            prepared.change,
            prepared.schema,
            _counts(prepared.change),
            operation,
            message,
            writes,
            rewrite_all=bool(prepared.retyped),
        )

    def _rebased(
        self,
        info: TableInfo,
        branch: str,
        prepared: _Prepared,
        manifest: Manifest,
        head_id: str,
        writes: _Writes,
    ) -> tuple[_Prepared, Manifest, bool]:
        """The prepared commit carried onto ``head_id``, its manifest, and whether that reuses the
        prepared buckets (see ``rebase.carried_manifest``)."""
        head = self.manifest(head_id)
        key = info.key
        refs = changes_since(prepared.head, prepared.parent, head_id, head, self.manifest)
        keys = prepared.change.select(list(key))
        theirs = (
            their_change(self.objects, refs, keys, key)
            if refs is not None
            else their_change_from_rows(
                prepared.change, prepared.schema, self.rows_for_keys(head, keys, info), key, info.buckets
            )
        )
        rebased = rebase_change(
            prepared.change,
            prepared.schema,
            theirs,
            head_schema=head.schema,
            key=key,
            buckets=info.buckets,
            what=f"table {info.name!r}: a commit to branch {branch!r}",
        )
        counts = _counts(rebased.change)
        carried, reused = carried_manifest(
            writes.objects, manifest, prepared.parent, head_id, head, rebased, counts
        )
        moved = dataclasses.replace(
            prepared, head=head_id, parent=head, change=rebased.change, schema=rebased.schema
        )
        return moved, carried, reused

    @staticmethod
    def _unchanged(table: str, branch: str, prepared: _Prepared) -> CommitResult:
        counts = _counts(prepared.change)
        return CommitResult(table, branch, prepared.head, False, counts, prepared.parent.num_rows)

    def commit_change(
        self,
        info: TableInfo,
        *,
        branch: str,
        parent: Manifest,
        parent_id: str,
        change: pa.Table,
        schema: pa.Schema,
        operation: str,
        message: str,
        added: tuple[str, ...] = (),
        retyped: tuple[str, ...] = (),
        extra_parents: tuple[str, ...] = (),
    ) -> CommitResult:
        """Store a computed change set as a commit on ``branch`` (compare-and-swap from ``parent_id``)."""
        counts = _counts(change)
        if change.num_rows == 0 and not added and not retyped and not extra_parents:
            return CommitResult(info.name, branch, parent_id, False, counts, parent.num_rows)
        writes = self._writes()
        manifest, rewritten = self._manifest(
            info,
            parent,
            parent_id,
            change,
            schema,
            counts,
            operation,
            message,
            writes,
            rewrite_all=bool(retyped),
            extra_parents=extra_parents,
        )
        commit_id = self._put_manifest(manifest, writes)
        self._swap_branch(info, branch, parent_id, commit_id, manifest, writes)
        return CommitResult(
            info.name, branch, commit_id, True, counts, manifest.num_rows, added, retyped, rewritten
        )

    def _manifest(
        self,
        info: TableInfo,
        parent: Manifest,
        parent_id: str,
        change: pa.Table,
        schema: pa.Schema,
        counts: dict[str, int],
        operation: str,
        message: str,
        writes: _Writes,
        *,
        rewrite_all: bool = False,
        extra_parents: tuple[str, ...] = (),
    ) -> tuple[Manifest, int]:
        """The manifest of ``parent`` plus ``change`` (its objects written), and how many buckets were
        rewritten: the change is kept pending unless the pending change sets grew too large."""
        num_rows = parent.num_rows + counts["added"] - counts["removed"]
        pending = sum(d.rows for d in parent.deltas) + change.num_rows
        compact = rewrite_all or pending > COMPACT_FRACTION * max(num_rows, parent.num_rows)
        keep_change = change.num_rows <= COMPACT_FRACTION * max(num_rows, parent.num_rows, 1)
        change_ref = write_change(writes.objects, change) if keep_change and change.num_rows else None
        buckets, bucket_rows, rewritten = list(parent.buckets), list(parent.bucket_rows), 0
        deltas = parent.deltas + ((change_ref,) if change_ref else ())
        if compact:
            buckets, bucket_rows, rewritten = self._compacted(
                info, parent, change, schema, writes.objects, rewrite_all=rewrite_all
            )
            deltas = ()
        manifest = Manifest(
            table=info.name,
            key=info.key,
            schema=schema,
            buckets=tuple(buckets),
            bucket_rows=tuple(bucket_rows),
            deltas=deltas,
            change=change_ref,
            parents=(parent_id, *extra_parents),
            operation=operation,
            message=message,
            author=current_user(),
            created_at=datetime.now(UTC),
            num_rows=num_rows,
            counts=counts,
        )
        return manifest, rewritten

    def _writes(self) -> _Writes:
        """Start a commit's writes: mark the gc fence before the first object is written."""
        return _Writes(self.fence.mark(), KeptWrites(self.objects))

    def _after_sweeps(self, writes: _Writes, needed: list[str]) -> _Writes:
        """Before taking the branch's commit lock: if a gc sweep ran or is running since the writes
        began, wait for it to end and put back what it took, so that the lock is not held while waiting
        for a sweep (the wait also holds new sweeps off for a few seconds, see ``GcFence.wait_quiet``)."""
        now = self.fence.mark()
        if not (writes.mark.busy or now.busy or now.epoch != writes.mark.epoch):
            return writes
        mark = self.fence.wait_quiet()
        writes.objects.restore(needed)
        return _Writes(mark, writes.objects)

    def _swap_branch(
        self, info: TableInfo, branch: str, expected: str, commit_id: str, manifest: Manifest, writes: _Writes
    ) -> None:
        """Record the stored commit and move ``branch`` from ``expected`` to it (``ConflictError`` if it
        moved): the one place where a branch moves to a new commit.

        The gc fence marked before the commit's first write is checked in the same transaction, so a
        concurrent ``gc`` can never remove an object the commit needs (see ``mlprod.data.gc``).
        """
        record_fenced(
            self.fence,
            writes.mark,
            lambda guard: self.history.commit(
                info.name, branch, expected, _commit_info(commit_id, manifest), guard=guard
            ),
            lambda: writes.objects.restore([commit_id, *manifest.objects()]),
        )

    def _quarantine(self, table: str, rows: pa.Table, commit_id: str) -> dict[str, Any]:
        side_table = quarantine_table(table)
        if side_table not in self.history.table_names():
            with contextlib.suppress(AlreadyExistsError):  # a concurrent commit created it first
                self.create(side_table, key=["_row"], buckets=4, description=f"rows held back from {table}")
        held = self.commit(
            side_table,
            quarantine_rows(rows, commit_id),
            mode="append",
            message=f"held back from {commit_id[:12]}",
            allow_new_columns=True,  # the side table follows its table, whose widening was asked for
        )
        return {"table": side_table, "rows": rows.num_rows, "commit": held.commit_id}

    def check_batch(self, table: str, data: Any, ref: str = DEFAULT_BRANCH) -> PoisoningReport:
        """The poisoning checks a commit with ``checks=True`` runs, without committing anything."""
        info = self.history.table(table)
        return self._poisoning(info, self.manifest(self.resolve(table, ref).id), to_arrow(data))

    def _poisoning(self, info: TableInfo, parent: Manifest, batch: pa.Table) -> PoisoningReport:
        from mlprod.data.poisoning import check_poisoning

        reference = read_version(self.objects, parent, reference_buckets(parent)) if parent.schema else None
        if reference is None or reference.num_rows == 0:
            reference = batch
        features = screened_features(info, batch.schema, self.expectations(info.name))
        return check_poisoning(batch, reference, key=info.key, label=info.label, features=features)

    def rows_for_keys(self, manifest: Manifest, keys: pa.Table, info: TableInfo) -> pa.Table:
        """The current rows of a version for the given keys (those that exist), opening only their buckets."""
        if manifest.schema is None or keys.num_rows == 0:
            return pa.table({}) if manifest.schema is None else manifest.schema.empty_table()
        touched = set(bucket_ids(keys, info.key, info.buckets).tolist())
        return read_version(self.objects, manifest, touched, keys=keys)

    def _change(
        self,
        info: TableInfo,
        parent: Manifest,
        batch: pa.Table,
        mode: str,
        schema: pa.Schema,
        *,
        rewrite: bool,
        lossy: tuple[str, ...] = (),
    ) -> pa.Table:
        key, what = info.key, f"table {info.name!r}"
        if mode == "replace" or (rewrite and mode != "delete"):
            current = (
                read_version(self.objects, parent) if parent.schema is not None else schema.empty_table()
            )
            if mode != "replace":
                batch = pa.concat_tables(
                    [_convert(_without(current, batch, key), schema, what, key, lossy), batch],
                    promote_options="permissive",
                )
            if rewrite:
                return retyped_change(current, batch, key, schema, info.buckets)
            return compare(current, batch, key, schema, info.buckets)
        current = self.rows_for_keys(parent, batch.select(list(key)), info)
        if mode == "append" and current.num_rows:
            examples = ", ".join(str(r) for r in current.select(list(key)).slice(0, 3).to_pylist())
            raise InvalidInputError(
                f"{what}: {current.num_rows:,} key(s) already exist, e.g. {examples}; "
                "use mode upsert to update existing rows"
            )
        if mode == "delete":
            if current.num_rows < batch.num_rows:
                missing = _without(batch, current, key)
                examples = ", ".join(str(r) for r in missing.slice(0, 3).to_pylist())
                raise InvalidInputError(
                    f"{what}: {missing.num_rows:,} key(s) to delete do not exist, e.g. {examples}"
                )
            return compare(current, schema.empty_table(), key, schema, info.buckets)
        return compare(current, batch, key, schema, info.buckets)

    def _compacted(
        self,
        info: TableInfo,
        parent: Manifest,
        change: pa.Table,
        schema: pa.Schema,
        objects: ArtifactStore,
        *,
        rewrite_all: bool,
    ) -> tuple[list[str | None], list[int], int]:
        """Fold the pending change sets and ``change`` into the buckets they touch."""
        touched: set[int] = set(range(info.buckets)) if rewrite_all else set()
        for delta in parent.deltas:
            touched.update(delta.buckets)
        if change.num_rows:
            touched.update(int(b) for b in pc.unique(change.column("_bucket")).to_pylist())
        buckets, bucket_rows = list(parent.buckets), list(parent.bucket_rows)
        if not touched:
            return buckets, bucket_rows, 0
        current = read_version(self.objects, parent, touched) if parent.schema else schema.empty_table()
        if change.num_rows:
            current = (
                pa.concat_tables(
                    [
                        conform(_without(current, change, info.key), schema),
                        side(change, "after", info.key, schema),
                    ],
                    promote_options="permissive",
                )
                if current.num_rows
                else side(change, "after", info.key, schema)
            )
        shas, counts = write_buckets(objects, current.cast(schema), info.key, info.buckets)
        for bucket in touched:
            buckets[bucket], bucket_rows[bucket] = shas[bucket], counts[bucket]
        return buckets, bucket_rows, len(touched)

    def _branch_head(self, table: str, branch: str) -> str:
        refs = {r.name: r for r in self.history.refs(table)}
        found = refs.get(branch)
        if found is None or found.kind != BRANCH:
            what = "a tag, not a branch" if found is not None else "not a branch"
            branches = ", ".join(r.name for r in refs.values() if r.kind == BRANCH)
            raise NotFoundError(f"table {table!r}: {branch!r} is {what} (branches: {branches})")
        return found.commit_id

    def _put_manifest(self, manifest: Manifest, writes: _Writes) -> str:
        data = manifest.to_bytes()
        commit_id = writes.objects.put_bytes(data)
        with self._lock:
            self._manifests[commit_id] = manifest
        return commit_id


def _empty(prepared: _Prepared) -> bool:
    return prepared.change.num_rows == 0 and not prepared.added and not prepared.retyped


def _counts(change: pa.Table) -> dict[str, int]:
    if change.num_rows == 0:
        return {"added": 0, "removed": 0, "changed": 0}
    was, now = change.column(BEFORE), change.column(AFTER)
    return {
        "added": int(pc.sum(pc.and_(pc.invert(was), now)).as_py() or 0),
        "removed": int(pc.sum(pc.and_(was, pc.invert(now))).as_py() or 0),
        "changed": int(pc.sum(pc.and_(was, now)).as_py() or 0),
    }


def _without(rows: pa.Table, other: pa.Table, key: Sequence[str]) -> pa.Table:
    from mlprod.data.changes import without_keys

    return without_keys(rows, other, key)


def _convert(
    rows: pa.Table, schema: pa.Schema, what: str, key: Sequence[str], lossy: tuple[str, ...]
) -> pa.Table:
    """Existing rows in a changed schema, or a clear error naming a row whose value would change."""
    hint = "existing rows keep their values: pass allow_lossy_cast=True (--allow-lossy-cast) to round them"
    try:
        return conform(rows, schema, what=what, key=key, allow_lossy=lossy, hint=hint)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"{what}: existing values cannot take the new column type: {exc}") from exc


def _commit_info(commit_id: str, manifest: Manifest) -> CommitInfo:
    return CommitInfo(
        id=commit_id,
        table=manifest.table,
        parents=manifest.parents,
        operation=manifest.operation,
        message=manifest.message,
        author=manifest.author,
        created_at=manifest.created_at,
        num_rows=manifest.num_rows,
        changes=manifest.counts,
    )
