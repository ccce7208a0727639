"""Checking versioned tables end to end: every ref, commit, manifest and object, reading only.

``fsck`` walks the metadata rows and the object store the way a reader would and reports every
piece of damage it finds instead of stopping at the first: a ref to an unknown commit, a commit
whose parent is unknown, a manifest that is missing, does not hash to its commit id, does not
parse or disagrees with its row, and an object that is missing or whose bytes no longer hash to
its name. It never writes (no fence, no touch, no repair), so it is safe on a damaged or full disk.

Examples:
    >>> import tempfile, pyarrow as pa
    >>> from mlprod.workspace import Workspace
    >>> from mlprod.data.tables import TableStore
    >>> ws = Workspace.init(tempfile.mkdtemp())
    >>> tables = TableStore(ws)
    >>> _ = tables.create("t", key=["id"], data=pa.table({"id": [1, 2]}), buckets=2)
    >>> report = fsck_tables(tables)
    >>> report.ok, report.commits, report.objects
    (True, 2, 4)
    >>> ws.close()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mlprod.data.history import CommitInfo
from mlprod.data.manifest import Manifest
from mlprod.data.tables import TableStore
from mlprod.errors import ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError

Progress = Callable[[int, int], None]
"""Called with (objects checked, objects to check) as the slow part advances."""


@dataclass(frozen=True)
class Damage:
    """One thing wrong: its kind, where (table, commit, object) and what exactly."""

    kind: str
    table: str
    commit: str | None
    object: str | None
    detail: str


@dataclass(frozen=True)
class FsckReport:
    """What was checked and every piece of damage found."""

    tables: int
    refs: int
    commits: int
    objects: int
    bytes: int
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        return not self.damage

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": {
                "tables": self.tables,
                "refs": self.refs,
                "commits": self.commits,
                "objects": self.objects,
                "bytes": self.bytes,
            },
            "damage": [asdict(d) for d in self.damage],
        }


def fsck_tables(
    store: TableStore, table: str | None = None, *, progress: Progress | None = None
) -> FsckReport:
    """Check one table (or all) and return every piece of damage found; writes nothing."""
    names = [store.history.table(table).name] if table is not None else store.history.table_names()
    damage: list[Damage] = []
    users: dict[str, tuple[str, str]] = {}  # object -> the first (table, commit) that needs it
    refs = commits = 0
    for name in names:
        known = store.history.commits(name)
        commits += len(known)
        for ref in store.history.refs(name):
            refs += 1
            if ref.commit_id not in known:
                damage.append(
                    Damage(
                        "dangling-ref", name, ref.commit_id, None, f"{ref.kind} {ref.name!r} names no commit"
                    )
                )
        for _, info in sorted(known.items()):
            damage.extend(_check_commit(store, info, known, users))
    checked = total_bytes = 0
    for sha, (name, commit_id) in sorted(users.items()):
        try:
            store.objects.verify(sha)
            total_bytes += store.objects.path_of(sha).stat().st_size
        except ArtifactNotFoundError:
            damage.append(Damage("missing-object", name, commit_id, sha, "object is missing"))
        except ArtifactCorruptedError as exc:
            damage.append(Damage("corrupt-object", name, commit_id, sha, str(exc)))
        except (ArtifactError, OSError) as exc:
            damage.append(Damage("unreadable-object", name, commit_id, sha, str(exc)))
        checked += 1
        if progress is not None:
            progress(checked, len(users))
    return FsckReport(len(names), refs, commits, checked, total_bytes, tuple(damage))


def _check_commit(
    store: TableStore, info: CommitInfo, known: dict[str, CommitInfo], users: dict[str, tuple[str, str]]
) -> list[Damage]:
    found = [
        Damage(
            "missing-parent", info.table, info.id, None, f"parent {parent[:12]} is not a commit of the table"
        )
        for parent in info.parents
        if parent not in known
    ]
    try:
        manifest = Manifest.from_bytes(store.objects.get_bytes(info.id))
    except ArtifactNotFoundError:
        return [*found, Damage("missing-manifest", info.table, info.id, info.id, "manifest is missing")]
    except ArtifactError as exc:
        return [*found, Damage("corrupt-manifest", info.table, info.id, info.id, str(exc))]
    except (ValueError, KeyError, TypeError) as exc:
        return [
            *found,
            Damage("bad-manifest", info.table, info.id, info.id, f"manifest does not parse: {exc}"),
        ]
    expected = {"table": info.table, "parents": info.parents, "num_rows": info.num_rows}
    actual = {"table": manifest.table, "parents": manifest.parents, "num_rows": manifest.num_rows}
    for field, value in expected.items():
        if actual[field] != value:
            found.append(
                Damage(
                    "manifest-mismatch",
                    info.table,
                    info.id,
                    info.id,
                    f"{field} is {actual[field]!r} in the manifest but {value!r} in the metadata DB",
                )
            )
    users.setdefault(info.id, (info.table, info.id))
    for sha in sorted(manifest.objects()):
        users.setdefault(sha, (info.table, info.id))
    return found
