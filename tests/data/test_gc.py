"""gc against commits in flight (exact interleavings and a multi-process stress), and damaged history."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mlprod.data import TableStore, collect_garbage
from mlprod.data import gc as gc_module
from mlprod.data.gc import live_objects
from mlprod.data.gc_fence import GcFence
from mlprod.errors import DamagedHistoryError, GcInProgressError, UnknownObjectsError
from mlprod.workspace import Workspace

OLD = time.time() - 7200  # written two hours ago: past the default one-hour grace period
RETRIED = pa.table({"id": pa.array(range(0, 400, 2), pa.int64()), "v": pa.array([7.0] * 200)})


class Killed(BaseException):
    """Stands for SIGKILL between a writer's objects and its branch move."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TableStore]:
    """A table in a workspace whose metadata DB is SQLite, then PostgreSQL (the fence differs)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with Workspace.init(tmp_path / "ws", database_url=url) as workspace:
        yield _table(workspace)


def _table(workspace: Workspace) -> TableStore:
    store = TableStore(workspace)
    rows = pa.table({"id": pa.array(range(400), pa.int64()), "v": pa.array([0.0] * 400)})
    store.create("t", key=["id"], data=rows, buckets=4)
    return store


def killed_writer_debris(tables: TableStore, batch: pa.Table) -> set[str]:
    """Run a commit that dies just before moving its branch; age its objects past the grace period."""
    before = set(tables.objects)
    original = tables.history.commit

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed

    tables.history.commit = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        tables.commit("t", batch, message="killed writer")
    tables.history.commit = original  # type: ignore[method-assign]
    debris = set(tables.objects) - before
    for sha in debris:
        os.utime(tables.objects.path_of(sha), (OLD, OLD))
    return debris


def killed_manifest(tables: TableStore, debris: set[str]) -> str:
    """Which of the killed writer's objects is its manifest (the retried commit cannot reuse that one)."""
    manifests = [sha for sha in debris if tables.objects.get_bytes(sha).startswith(b"{")]
    assert len(manifests) == 1
    return manifests[0]


def readable(tables: TableStore) -> None:
    """Every commit of every ref reads back whole: its row count, every object's sha256 checked."""
    for ref in tables.refs("t"):
        for commit in tables.log("t", ref.name):
            assert tables.checkout("t", commit.id).num_rows == commit.num_rows


def before_branch_move(tables: TableStore, action: Callable[[], None]) -> list[int]:
    """Run ``action`` once, right before the commit's first attempt to record itself; count attempts."""
    original = tables.history.commit
    attempts: list[int] = []

    def hooked(*args: Any, **kwargs: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            action()
        original(*args, **kwargs)

    tables.history.commit = hooked  # type: ignore[method-assign]
    return attempts


def test_gc_between_reuse_and_branch_move_cannot_rob_the_commit(tables: TableStore) -> None:
    """The issue's race: a retried commit reuses a killed writer's old objects, gc runs before the move."""
    debris = killed_writer_debris(tables, RETRIED)
    reports = []
    attempts = before_branch_move(
        tables, lambda: reports.append(collect_garbage(TableStore(tables._ws), grace_seconds=0))
    )
    result = tables.commit("t", RETRIED, message="retried")
    manifest = tables.manifest(result.commit_id)
    reused = debris & manifest.objects()
    assert reused, "the retried commit did not reuse the killed writer's objects: the test proves nothing"
    removed = {g.sha256 for g in reports[0].objects}
    assert reused <= removed  # gc really deleted what the commit had reused (and its fresh manifest)
    assert result.commit_id in removed
    assert tables.resolve("t").id == result.commit_id
    assert all(tables.objects.exists(sha) for sha in manifest.objects() | {result.commit_id})
    readable(tables)
    assert len(attempts) == 2  # the first branch move was called off by the fence, the second made it
    rows = tables.checkout("t").to_pydict()
    assert {i for i, v in zip(rows["id"], rows["v"], strict=True) if v == 7.0} == set(range(0, 400, 2))


def test_gc_between_deciding_and_unlinking_cannot_rob_a_commit(
    tables: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc has computed its live set and picked the old object; the commit reuses it, then gc unlinks."""
    debris = killed_writer_debris(tables, RETRIED)
    at_unlink, go = threading.Event(), threading.Event()
    real_remove = gc_module._remove

    reusable = debris - {killed_manifest(tables, debris)}

    def paused_remove(path: Path) -> None:
        if path.parent.name + path.name in reusable and not at_unlink.is_set():
            at_unlink.set()
            assert go.wait(30)
        real_remove(path)

    monkeypatch.setattr(gc_module, "_remove", paused_remove)
    reports: list[Any] = []
    sweeper = threading.Thread(
        target=lambda: reports.append(collect_garbage(TableStore(tables._ws), grace_seconds=3600))
    )
    sweeper.start()
    assert at_unlink.wait(30)  # gc decided: a bucket or change set of the killed writer is garbage
    head = tables.resolve("t").id
    waiting = threading.Event()
    real_wait = tables.fence.wait_quiet

    def wait_quiet(*args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(tables.fence, "wait_quiet", wait_quiet)
    attempts = before_branch_move(tables, lambda: None)
    results: list[Any] = []
    committer = threading.Thread(target=lambda: results.append(tables.commit("t", RETRIED)))
    committer.start()
    assert waiting.wait(30)  # the commit reused the objects (touching them) and waits for the sweep
    time.sleep(0.3)
    assert not results and tables.resolve("t").id == head  # held at the fence: main has not moved
    go.set()
    sweeper.join(30)
    committer.join(60)
    assert not committer.is_alive() and results, "the commit did not finish"
    result = results[0]
    manifest = tables.manifest(result.commit_id)
    removed = {g.sha256 for g in reports[0].objects}
    robbed = debris & manifest.objects() & removed
    assert robbed  # gc unlinked an object it had picked before the commit reused it ...
    assert all(tables.objects.exists(sha) for sha in robbed)  # ... and the commit put it back
    assert all(tables.objects.exists(sha) for sha in manifest.objects())
    assert tables.resolve("t").id == result.commit_id
    readable(tables)
    assert len(attempts) == 1  # it waited for the sweep before taking the branch lock, then moved main once


def test_a_commit_recorded_before_the_sweep_started_is_live_for_it(tables: TableStore) -> None:
    debris = killed_writer_debris(tables, RETRIED)
    result = tables.commit("t", RETRIED)
    report = collect_garbage(tables, grace_seconds=0)
    assert not {g.sha256 for g in report.objects} & (tables.manifest(result.commit_id).objects())
    assert {g.sha256 for g in report.objects} == debris - tables.manifest(result.commit_id).objects()
    readable(tables)


def test_one_sweep_at_a_time_and_a_killed_sweep_frees_its_lease(tables: TableStore) -> None:
    fence = GcFence(tables._ws.engine, lease_seconds=1.0)
    with (
        fence.sweep("host-a pid 1"),
        pytest.raises(GcInProgressError, match=r"another data gc \(host-a pid 1\) has been sweeping since"),
    ):
        collect_garbage(tables, grace_seconds=0)
    fence.sweep("host-b pid 2")  # never ended: the process was killed
    with pytest.raises(GcInProgressError, match="if it was killed, its lease ends at"):
        collect_garbage(tables, grace_seconds=0)
    time.sleep(1.1)
    assert collect_garbage(tables, grace_seconds=0).removed == 0  # the lease expired: gc runs again


def test_a_sweep_that_lost_its_lease_stops_deleting(tables: TableStore) -> None:
    fence = GcFence(tables._ws.engine, lease_seconds=0.4)
    sweep = fence.sweep("paused gc")
    time.sleep(0.5)  # stalled past its lease
    with pytest.raises(GcInProgressError, match=r"lost its sweep lease .* stopped deleting"):
        sweep.hold()


def test_a_commit_waits_for_a_running_sweep_and_gives_up_cleanly(tables: TableStore) -> None:
    tables.fence = GcFence(tables._ws.engine, lease_seconds=30)
    sweep = tables.fence.sweep("slow gc")
    head = tables.resolve("t").id
    released = threading.Timer(0.5, sweep.end)
    released.start()
    result = tables.commit("t", RETRIED)  # recorded only once the sweep ended
    assert result.committed and tables.resolve("t").id == result.commit_id
    stuck = tables.fence.sweep("stuck gc")
    original_wait = tables.fence.wait_quiet
    tables.fence.wait_quiet = lambda timeout=0.3: original_wait(timeout)  # type: ignore[method-assign]
    with pytest.raises(
        GcInProgressError, match=r"a data gc \(stuck gc\) has been sweeping since .* recorded nothing"
    ):
        tables.commit("t", pa.table({"id": pa.array([1], pa.int64()), "v": [9.0]}))
    assert tables.resolve("t").id == result.commit_id != head
    stuck.end()


def test_gc_with_a_missing_manifest_deletes_nothing_and_names_it(tables: TableStore) -> None:
    debris = killed_writer_debris(tables, RETRIED)
    second = tables.commit("t", pa.table({"id": pa.array([1], pa.int64()), "v": [3.0]}))
    tables.objects.path_of(second.commit_id).unlink()
    with pytest.raises(DamagedHistoryError) as caught:
        collect_garbage(tables, grace_seconds=0)
    message = str(caught.value)
    assert message.startswith("gc deleted nothing: 1 commit(s) cannot be read completely")
    assert f"t commit {second.commit_id[:12]}: artifact {second.commit_id} not found" in message
    assert "mlprod data fsck" in message
    assert all(tables.objects.exists(sha) for sha in debris)
    with pytest.raises(DamagedHistoryError):
        collect_garbage(tables, grace_seconds=0, dry_run=True)


def test_gc_with_a_corrupted_manifest_deletes_nothing(tables: TableStore) -> None:
    debris = killed_writer_debris(tables, RETRIED)
    head = tables.resolve("t").id
    tables.objects.path_of(head).write_bytes(b'{"table": "t"}')
    with pytest.raises(DamagedHistoryError, match=f"t commit {head[:12]}: artifact {head} .* is corrupted"):
        collect_garbage(tables, grace_seconds=0)
    assert all(tables.objects.exists(sha) for sha in debris)


def test_dry_run_lists_the_garbage_and_writes_nothing(tables: TableStore) -> None:
    debris = killed_writer_debris(tables, RETRIED)
    epoch = tables.fence.mark().epoch
    dry = collect_garbage(tables, grace_seconds=3600, dry_run=True)
    assert {g.sha256 for g in dry.objects} == debris
    assert all(g.age_seconds > 7000 and g.size > 0 for g in dry.objects)
    assert dry.removed_bytes == sum(g.size for g in dry.objects)
    assert tables.fence.mark().epoch == epoch and all(tables.objects.exists(sha) for sha in debris)
    assert {g.sha256 for g in collect_garbage(tables, grace_seconds=3600).objects} == debris
    assert tables.fence.mark().epoch == epoch + 1
    assert not any(tables.objects.exists(sha) for sha in debris)


STRESS_COMMITTER = textwrap.dedent(
    """
    import sys, time, pyarrow as pa
    from mlprod.errors import ConflictError, GcInProgressError
    from mlprod.workspace import Workspace
    from mlprod.data import TableStore
    root, writer, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    done = retried = 0
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        print("ready", flush=True)
        sys.stdin.readline()
        until = time.time() + seconds
        i = 0
        while time.time() < until:
            # values cycle, so commits keep recreating objects that earlier, lost attempts left behind
            ids = pa.array(range(writer, 400, 2), pa.int64())
            batch = pa.table({"id": ids, "v": pa.array([float(i % 3)] * len(ids))})
            try:
                done += tables.commit("t", batch, message=f"w{writer} {i}").committed
            except (ConflictError, GcInProgressError) as exc:
                print(type(exc).__name__, exc, file=sys.stderr)
                retried += 1
            i += 1
    print(done, retried, flush=True)
    """
)

STRESS_GC = textwrap.dedent(
    """
    import sys, time
    from mlprod.errors import GcInProgressError
    from mlprod.workspace import Workspace
    from mlprod.data import TableStore, collect_garbage
    root, seconds = sys.argv[1], float(sys.argv[2])
    sweeps = removed = 0
    with Workspace.open(root) as ws:
        tables = TableStore(ws)
        print("ready", flush=True)
        sys.stdin.readline()
        until = time.time() + seconds
        while time.time() < until:
            removed += collect_garbage(tables, grace_seconds=0).removed
            sweeps += 1
            time.sleep(0.02)
    print(sweeps, removed, flush=True)
    """
)


def test_stress_gc_in_a_loop_against_committers_loses_nothing(tables: TableStore) -> None:
    root, seconds = str(tables._ws.root), "15"
    scripts = [[STRESS_COMMITTER, root, "0", seconds], [STRESS_COMMITTER, root, "1", seconds]]
    scripts.append([STRESS_GC, root, seconds])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in scripts
    ]
    for proc in procs:  # start the clock once all three have imported and opened the workspace
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outputs]
    (c0, _), (c1, _), (sweeps, removed) = (tuple(map(int, o.split())) for o, _ in outputs)
    # it really interleaved (a commit a sweep crossed holds new sweeps off for a few seconds, so fewer sweeps)
    assert c0 + c1 >= 10 and sweeps >= 5 and removed > 0, outputs
    with Workspace.open(root) as ws:
        fresh = TableStore(ws)
        readable(fresh)
        assert len(fresh.log("t", limit=10_000)) == c0 + c1 + 2
        collect_garbage(fresh, grace_seconds=0)
        readable(fresh)
        assert collect_garbage(fresh, grace_seconds=0).removed == 0


def test_a_crossed_commit_that_did_not_keep_the_bytes_fails_cleanly(
    tables: TableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the in-memory budget a removed object cannot be put back: nothing is committed, retry works."""
    from mlprod.data import gc_fence
    from mlprod.errors import ConflictError

    monkeypatch.setattr(gc_fence, "KEEP_BYTES", 0)
    head = tables.resolve("t").id
    before_branch_move(tables, lambda: collect_garbage(TableStore(tables._ws), grace_seconds=0))
    with pytest.raises(
        ConflictError,
        match=r"a concurrent data gc removed object [0-9a-f]{64} that this commit "
        r"wrote, and the commit did not keep its bytes .* nothing was committed; retry the commit",
    ):
        tables.commit("t", RETRIED)
    assert tables.resolve("t").id == head
    readable(tables)
    monkeypatch.undo()
    assert tables.commit("t", RETRIED).committed  # the retry (no sweep now) goes through
    readable(tables)


def test_gc_refuses_to_delete_more_objects_than_the_database_knows(tables: TableStore) -> None:
    tables.create("u", key=["id"], data=pa.table({"id": [1], "v": [1.0]}), buckets=1)
    tables.history.drop_table("t")  # stands for a database that is not the one t was written with
    unknown = {sha for sha in tables.objects} - live_objects(tables)
    sizes = sum(tables.objects.path_of(sha).stat().st_size for sha in unknown)
    assert len(unknown) == 6 and len(live_objects(tables)) == 3
    epoch = tables.fence.mark().epoch
    with pytest.raises(UnknownObjectsError) as caught:
        collect_garbage(tables, grace_seconds=0)
    assert str(caught.value).startswith(
        f"gc deleted nothing: it would delete 6 object(s) ({sizes:,} bytes) from {tables.objects.root}, "
        f"more than the 3 the metadata database {tables.workspace.redacted_database_url} knows."
    )
    assert "`mlprod data gc --yes-delete-unknown` (yes_delete_unknown=True)" in str(caught.value)
    assert all(tables.objects.exists(sha) for sha in unknown)
    assert tables.fence.mark().epoch == epoch + 1 and not tables.fence.mark().busy  # the lease was let go
    dry = collect_garbage(tables, grace_seconds=0, dry_run=True)
    assert dry.exceeds_known and (dry.removed, dry.known, dry.removed_bytes) == (6, 3, sizes)
    done = collect_garbage(tables, grace_seconds=0, yes_delete_unknown=True)
    assert done.removed == 6 and not any(tables.objects.exists(sha) for sha in unknown)
    assert tables.checkout("u").num_rows == 1


def test_gc_deletes_as_many_objects_as_the_database_knows_without_asking(tables: TableStore) -> None:
    debris = killed_writer_debris(tables, RETRIED)
    known = len(live_objects(tables))
    assert len(debris) <= known  # a killed writer's debris: ordinary garbage, no confirmation needed
    report = collect_garbage(tables, grace_seconds=0)
    assert report.removed == len(debris) and report.known == known and not report.exceeds_known
