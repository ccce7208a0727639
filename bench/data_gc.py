"""What gc safety costs: the fence on every commit, commits while gc sweeps in a loop, and fsck speed.

Run: ``.venv/bin/python bench/data_gc.py [--rows 1000000] [--commits 40] [--seed 0]``.

On a generated table of ``--rows`` rows (int64 key, 4 float and 2 text columns, 64 buckets), in a
temporary workspace with SQLite metadata, prints side by side:

1. a small upsert's median time, and the fence's share of it: one read of the fence row before
   writing and one share-locked read in the branch-moving transaction (goal < 5 %);
2. the same commits while another process runs ``collect_garbage(grace_seconds=0)`` in a loop:
   median and p90 against idle, how many commits a sweep crossed (and that were recorded anyway),
   and every commit read back whole afterwards;
3. ``fsck_tables`` over every commit against the floor it cannot beat: sha256 of the same object
   files with ``hashlib`` (goal: fsck ≤ 1.5x that).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mlprod.data import TableStore, fsck_tables
from mlprod.meta.tables import data_gc_fence
from mlprod.workspace import Workspace

_NO_OP = data_gc_fence.update().where(data_gc_fence.c.id == -1).values(epoch=0)  # takes the write lock


def generate(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": pa.array(np.arange(rows), pa.int64()),
            **{f"f{i}": rng.normal(size=rows) for i in range(4)},
            "city": pa.array(rng.choice(["Oslo", "Rome", "Lima", "Pune"], size=rows)),
            "code": pa.array(rng.integers(0, 10_000, size=rows).astype(str)),
        }
    )


def upserts(tables: TableStore, base: pa.Table, commits: int, rng: np.random.Generator) -> list[float]:
    """Wall time of ``commits`` upserts of 10 random rows each (new values)."""
    times = []
    for _ in range(commits):
        rows = base.take(pa.array(rng.choice(base.num_rows, 10, replace=False)))
        rows = rows.set_column(1, "f0", pa.array(rng.normal(size=10)))
        started = time.perf_counter()
        tables.commit("t", rows)
        times.append(time.perf_counter() - started)
    return times


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p90_ms(samples: list[float]) -> float:
    return float(np.percentile(samples, 90)) * 1000


def fence_cost(tables: TableStore, repeat: int = 200) -> float:
    """Median seconds of what the fence adds to a commit: its mark, and its check in a transaction."""
    engine = tables.workspace.engine
    samples = []  # the same write transaction with and without the fence: only the fence counts
    for _ in range(repeat):
        started = time.perf_counter()
        mark = tables.fence.mark()
        with engine.begin() as conn:
            conn.execute(_NO_OP)
            tables.fence.check(conn, mark)
        samples.append(time.perf_counter() - started)
    baseline = []
    for _ in range(repeat):
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(_NO_OP)
        baseline.append(time.perf_counter() - started)
    return max(statistics.median(samples) - statistics.median(baseline), 0.0)


def with_gc_loop(root: Path, action: Callable[[], Any]) -> tuple[Any, int, int]:
    """Run ``action`` while another process sweeps in a loop; return its result, sweeps and removals."""
    loop = textwrap.dedent(
        """
        import sys, time
        from mlprod.workspace import Workspace
        from mlprod.data import TableStore, collect_garbage
        sweeps = removed = 0
        with Workspace.open(sys.argv[1]) as ws:
            tables = TableStore(ws)
            print("ready", flush=True)
            stop = __import__("pathlib").Path(sys.argv[2])
            while not stop.exists():
                removed += collect_garbage(tables, grace_seconds=0).removed
                sweeps += 1
                time.sleep(0.05)
        print(sweeps, removed, flush=True)
        """
    )
    stop = root / "stop-gc"
    proc = subprocess.Popen(
        [sys.executable, "-c", loop, str(root), str(stop)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    try:
        result = action()
    finally:  # the sweeper must be gone before the workspace is deleted, even after a failure
        stop.touch()
        out, _ = proc.communicate(timeout=600)
    sweeps, removed = map(int, out.split())
    return result, sweeps, removed


def hash_floor(tables: TableStore) -> float:
    """Seconds to sha256 every object file of the table store with hashlib (fsck's floor)."""
    started = time.perf_counter()
    for sha in tables.objects:
        digest = hashlib.sha256()
        with tables.objects.path_of(sha).open("rb") as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp, Workspace.init(Path(tmp) / "ws") as ws:
        tables = TableStore(ws)
        base = generate(args.rows, args.seed)
        tables.create("t", key=["id"], data=base, buckets=64)
        idle = upserts(tables, base, args.commits, rng)
        fence = fence_cost(tables)

        calls: list[int] = []
        original = tables.history.commit

        def counted(*a: Any, **k: Any) -> None:
            calls.append(1)
            original(*a, **k)

        tables.history.commit = counted  # type: ignore[method-assign]
        busy, sweeps, removed = with_gc_loop(ws.root, lambda: upserts(tables, base, args.commits, rng))
        tables.history.commit = original  # type: ignore[method-assign]
        crossed = len(calls) - args.commits
        whole = all(
            tables.checkout("t", c.id).num_rows == c.num_rows for c in tables.log("t", limit=args.commits)
        )

        floor = hash_floor(tables)
        started = time.perf_counter()
        report = fsck_tables(tables)
        checked = time.perf_counter() - started

    share = fence / statistics.median(idle)
    print(f"table: {args.rows:,} rows, 64 buckets; {args.commits} upserts of 10 rows per phase")
    print(f"{'figure':<52} {'value':>14}   goal")
    print(f"{'upsert median, idle':<52} {median_ms(idle):>11.1f} ms")
    print(f"{'fence cost per commit (mark + share-locked check)':<52} {fence * 1000:>11.2f} ms")
    print(f"{'fence share of an upsert':<52} {share:>13.1%}   < 5 %  {'PASS' if share < 0.05 else 'FAIL'}")
    during = f"{median_ms(busy):.1f} / {p90_ms(busy):.1f} ms"
    print(f"{'upsert median / p90 while gc sweeps in a loop':<52} {during:>14}")
    print(f"{'ratio busy / idle (median)':<52} {median_ms(busy) / median_ms(idle):>13.2f}x")
    print(f"{'gc sweeps during the busy phase / objects removed':<52} {sweeps:>7} / {removed}")
    print(f"{'commits a sweep crossed (waited, restored, recorded)':<52} {crossed:>14}")
    print(f"{'every commit reads back whole after the busy phase':<52} {whole!s:>14}")
    print(f"{f'fsck over {report.objects} objects ({report.bytes / 1e6:.1f} MB)':<52} {checked:>12.2f} s")
    print(f"{'sha256 of the same files with hashlib (floor)':<52} {floor:>12.2f} s")
    ratio = checked / floor if floor else float("nan")
    print(f"{'ratio fsck / floor':<52} {ratio:>13.2f}x   ≤ 1.5x  {'PASS' if ratio <= 1.5 else 'FAIL'}")
    if not (report.ok and whole):
        sys.exit("damage found: the benchmark's own checks failed")


if __name__ == "__main__":
    main()
