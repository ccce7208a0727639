"""Fair writers: several processes committing disjoint keys to one branch of one table at once.

Run: ``.venv/bin/python bench/concurrent_writers.py [--seconds 60] [--writers 8]
[--rows-per-commit 300:19,30000:1] [--table-rows 500000] [--postgres URL]``.

Each writer process owns a key range of its own and, until ``--seconds`` have passed, upserts
batches into ``main`` (four fifths new keys, one fifth keys it wrote before, with new values); each
batch's size is drawn from ``--rows-per-commit`` (``SIZE:WEIGHT`` items: by default one commit in
twenty carries 30,000 rows). The same load runs twice on fresh copies of the same table, side by
side in one run:

* **rebasing** — ``TableStore.commit`` as it is: a commit prepared while others landed is rebased
  onto them and lands under the branch's commit lock;
* **without** — ``commit(..., rebase=False)``, the behaviour before: a moved branch raises
  ``ConflictError`` and the writer prepares the whole commit again at once (as writers did).

Printed per mode: each writer's commit count and its share of the mean, its 30,000-row commits,
p50/p99/max retries per commit (rebases plus lost compare-and-swaps; without rebasing, the
``ConflictError`` s), commit latency p50/p99, rows committed, and lost / duplicated / stray rows
found by checking out the final version and comparing it with what every writer knows it committed.
Then PASS/FAIL per goal (each writer ≥ 50 % of the mean commit count, p99 retries ≤ 3, 0 lost or
duplicated rows) and the ratios between the two modes. The metadata DB is SQLite in the workspace,
or a fresh database on the PostgreSQL server of ``--postgres`` (an admin URL), dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TABLE = "events"
RANGE = 1_000_000_000
"""Writer ``w`` owns the keys ``RANGE * (w + 1)`` onwards; the initial rows are below ``RANGE``."""
GOAL_SHARE = 0.5
GOAL_P99_RETRIES = 3


def batch(ids: np.ndarray, writer: int, seq: int, rng: np.random.Generator) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "writer": pa.array(np.full(n, writer), pa.int64()),
            "seq": pa.array(np.full(n, seq), pa.int64()),
            "v": pa.array(rng.normal(size=n)),
            "s": pa.array(rng.choice(["a", "b", "c", "d"], size=n)),
        }
    )


def parse_mix(text: str) -> tuple[list[int], list[float]]:
    sizes, weights = [], []
    for item in text.split(","):
        size, _, weight = item.partition(":")
        sizes.append(int(size))
        weights.append(float(weight or 1))
    total = sum(weights)
    return sizes, [w / total for w in weights]


# ---- one writer process ------------------------------------------------------------------------


def writer_main(args: argparse.Namespace) -> None:
    from mlprod.data import TableStore
    from mlprod.errors import ConflictError
    from mlprod.workspace import Workspace

    lock_times = time_the_commit_lock()
    rng = np.random.default_rng(1000 + args.writer)
    sizes, weights = parse_mix(args.rows_per_commit)
    base = RANGE * (args.writer + 1)
    written = np.zeros(0, np.int64)
    expected: dict[int, int] = {}  # key -> seq of the commit that last wrote it
    commits: list[dict[str, Any]] = []
    with Workspace.open(args.workspace) as ws:
        tables = TableStore(ws)
        print("ready", flush=True)
        start = float(sys.stdin.readline())
        time.sleep(max(0.0, start - time.time()))
        deadline = start + args.seconds
        seq = 0
        while time.time() < deadline:
            n = int(rng.choice(sizes, p=weights))
            again = min(len(written), n // 5)
            new = np.arange(base + len(written), base + len(written) + n - again, dtype=np.int64)
            old = rng.choice(written, again, replace=False) if again else np.zeros(0, np.int64)
            ids = np.concatenate([new, old])
            rows = batch(ids, args.writer, seq, rng)
            started, retries, rebases, landed = time.perf_counter(), 0, 0, False
            while True:
                try:
                    result = tables.commit(TABLE, rows, rebase=args.mode == "rebasing")
                except ConflictError:
                    retries += 1
                    if time.time() >= deadline:
                        break  # starved until the end: this commit never landed
                    continue
                retries += result.retries
                rebases = result.rebases
                landed = True
                break
            if not landed:
                commits.append({"rows": n, "landed": False, "retries": retries})
                break
            commits.append(
                {
                    "rows": n,
                    "landed": True,
                    "retries": retries + rebases,
                    "swaps_lost": retries,
                    "rebases": rebases,
                    "seconds": time.perf_counter() - started,
                    "in_time": time.time() <= deadline,
                }
            )
            written = np.concatenate([written, new])
            for key in ids.tolist():
                expected[key] = seq
            seq += 1
    keys = np.fromiter(expected.keys(), np.int64, len(expected))
    values = np.fromiter(expected.values(), np.int64, len(expected))
    np.savez(args.expected, keys=keys, seqs=values)
    print(json.dumps({"writer": args.writer, "commits": commits, "lock": lock_times}), flush=True)


def time_the_commit_lock() -> dict[str, list[float]]:
    """Record how long each commit waited for the branch's commit lock and then held it."""
    from mlprod.data import tables as tables_module

    times: dict[str, list[float]] = {"wait": [], "hold": []}
    original = tables_module.exclusive

    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[None]:
        asked = time.perf_counter()
        with original(*args, **kwargs):
            taken = time.perf_counter()
            times["wait"].append(taken - asked)
            try:
                yield
            finally:
                times["hold"].append(time.perf_counter() - taken)

    tables_module.exclusive = timed  # type: ignore[assignment]
    return times


# ---- the coordinator ---------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    writers: list[list[dict[str, Any]]]
    lock: dict[str, list[float]]
    lost: int
    duplicated: int
    stray: int
    final_rows: int
    load: tuple[float, float]

    def landed(self, w: int) -> list[dict[str, Any]]:
        return [c for c in self.writers[w] if c["landed"] and c["in_time"]]

    def counts(self) -> list[int]:
        return [len(self.landed(w)) for w in range(len(self.writers))]

    def all_landed(self) -> list[dict[str, Any]]:
        return [c for w in range(len(self.writers)) for c in self.landed(w)]

    def retries(self) -> list[int]:
        """Per commit, landed or starved: how often it had to be redone."""
        return [c["retries"] for commits in self.writers for c in commits]


def quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values, dtype=float), q)) if values else float("nan")


def make_workspace(root: Path, database_url: str | None, table_rows: int, buckets: int) -> None:
    from mlprod.data import TableStore
    from mlprod.workspace import Workspace

    rng = np.random.default_rng(0)
    with Workspace.init(root, database_url=database_url) as ws:
        initial = batch(np.arange(table_rows, dtype=np.int64), -1, -1, rng)
        TableStore(ws).create(TABLE, key=["id"], data=initial, buckets=buckets)


def run_mode(mode: str, args: argparse.Namespace, scratch: Path, database_url: str | None) -> Run:
    root = scratch / mode
    make_workspace(root, database_url, args.table_rows, args.buckets)
    load_before = os.getloadavg()[0]
    procs = []
    for w in range(args.writers):
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--mode",
            mode,
            "--workspace",
            str(root),
            "--writer",
            str(w),
            "--seconds",
            str(args.seconds),
            "--rows-per-commit",
            args.rows_per_commit,
            "--expected",
            str(scratch / f"{mode}-{w}.npz"),
        ]
        procs.append(
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        )
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start = time.time() + 0.2
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start}\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=args.seconds * 20 + 600)[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise SystemExit(f"a writer failed in mode {mode}: exit codes {[p.returncode for p in procs]}")
    load_after = os.getloadavg()[0]
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    lost, duplicated, stray, final_rows = verify(root, scratch, mode, args)
    return Run(
        mode,
        [r["commits"] for r in sorted(reports, key=lambda r: r["writer"])],
        {part: [t for r in reports for t in r["lock"][part]] for part in ("wait", "hold")},
        lost,
        duplicated,
        stray,
        final_rows,
        (load_before, load_after),
    )


def verify(root: Path, scratch: Path, mode: str, args: argparse.Namespace) -> tuple[int, int, int, int]:
    """Lost (a committed key missing or holding an older commit's values), duplicated and stray rows."""
    from mlprod.data import TableStore
    from mlprod.workspace import Workspace

    with Workspace.open(root) as ws:
        final = TableStore(ws).checkout(TABLE)
    ids = final.column("id").to_numpy()
    duplicated = len(ids) - len(np.unique(ids))
    mine = final.filter(pc.greater_equal(final.column("id"), RANGE))
    got = dict(zip(mine.column("id").to_pylist(), mine.column("seq").to_pylist(), strict=True))
    lost, known = 0, set()
    for w in range(args.writers):
        with np.load(scratch / f"{mode}-{w}.npz") as expected:
            for key, seq in zip(expected["keys"].tolist(), expected["seqs"].tolist(), strict=True):
                known.add(key)
                lost += got.get(key) != seq
    initial_left = int(pc.sum(pc.less(final.column("id"), RANGE)).as_py() or 0)
    lost += args.table_rows - initial_left  # nobody deletes the initial rows
    stray = len(set(got) - known)
    return lost, duplicated, stray, final.num_rows


def describe(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    counts = run.counts()
    mean = statistics.mean(counts) if counts else 0.0
    landed = run.all_landed()
    latencies = [c["seconds"] for c in landed]
    retries = run.retries()
    big = max(parse_mix(args.rows_per_commit)[0])
    print(
        f"\n== {run.mode}: {args.writers} writers for {args.seconds:g} s "
        f"(load average {run.load[0]:.1f} before, {run.load[1]:.1f} after)"
    )
    print(
        f"{'writer':>6} {'commits':>8} {'% of mean':>10} {f'{big:,}-row':>10} {'rows':>10} "
        f"{'retries max':>12} {'latency p50':>12} {'max':>8}"
    )
    for w, commits in enumerate(run.writers):
        mine = run.landed(w)
        share = 100 * len(mine) / mean if mean else 0.0
        print(
            f"{w:>6} {len(mine):>8} {share:>9.0f}% {sum(c['rows'] == big for c in mine):>10} "
            f"{sum(c['rows'] for c in mine):>10,} {max((c['retries'] for c in commits), default=0):>12} "
            f"{quantile([c['seconds'] for c in mine], 0.5):>11.2f}s "
            f"{max((c['seconds'] for c in mine), default=float('nan')):>7.2f}s"
        )
    starved = sum(not c["landed"] for commits in run.writers for c in commits)
    big_latency = [c["seconds"] for c in landed if c["rows"] == big]
    rows = sum(c["rows"] for c in landed)
    figures = {
        "commits": sum(counts),
        "min_share": min(counts) / mean if mean else 0.0,
        "p50_retries": quantile(retries, 0.5),
        "p99_retries": quantile(retries, 0.99),
        "max_retries": max(retries, default=0),
        "p50_latency": quantile(latencies, 0.5),
        "p99_latency": quantile(latencies, 0.99),
        "rows_per_second": rows / args.seconds,
        "lost": run.lost,
        "duplicated": run.duplicated,
        "stray": run.stray,
    }
    print(
        f"commits {sum(counts)} ({figures['rows_per_second']:,.0f} rows/s committed); "
        f"retries per commit p50 {figures['p50_retries']:g} / p99 {figures['p99_retries']:g} / max "
        f"{figures['max_retries']}; latency p50 {figures['p50_latency']:.2f} s / "
        f"p99 {figures['p99_latency']:.2f} s; "
        f"{big:,}-row commits landed {len(big_latency)} (latency max "
        f"{max(big_latency, default=float('nan')):.2f} s); given up at the deadline {starved}"
    )
    if run.mode == "rebasing":
        rebases = [c["rebases"] for c in landed]
        lost_swaps = [c["swaps_lost"] for c in landed]
        print(
            f"of which rebases p99 {quantile(rebases, 0.99):g} (max {max(rebases, default=0)}), "
            f"lost compare-and-swaps p99 {quantile(lost_swaps, 0.99):g} (max {max(lost_swaps, default=0)})"
        )
        wait, hold = run.lock["wait"], run.lock["hold"]
        print(
            f"commit lock: waited p50 {quantile(wait, 0.5):.3f} / p99 {quantile(wait, 0.99):.3f} / max "
            f"{max(wait, default=0):.3f} s, held p50 {quantile(hold, 0.5):.3f} / p99 "
            f"{quantile(hold, 0.99):.3f} / max {max(hold, default=0):.3f} s, held "
            f"{sum(hold) / args.seconds:.0%} of the time"
        )
    print(
        f"final checkout {run.final_rows:,} rows: lost {run.lost}, duplicated {run.duplicated}, "
        f"stray {run.stray}"
    )
    return figures


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument(
        "--rows-per-commit", default="300:19,30000:1", help="SIZE:WEIGHT,... (default %(default)s)"
    )
    parser.add_argument("--table-rows", type=int, default=500_000)
    parser.add_argument("--buckets", type=int, default=128)
    parser.add_argument(
        "--postgres", metavar="URL", help="admin URL of a PostgreSQL server for the metadata DB"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="run only with rebasing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--writer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        writer_main(args)
        return
    print(
        f"{args.writers} writers, {args.seconds:g} s each mode, commits of {args.rows_per_commit} rows "
        f"(SIZE:WEIGHT), table of {args.table_rows:,} rows in {args.buckets} buckets, metadata "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    modes = ["rebasing"] if args.skip_baseline else ["rebasing", "without"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mlprod-writers-") as scratch:
        for mode in modes:
            with fresh_database(args.postgres) as url:
                results[mode] = describe(run_mode(mode, args, Path(scratch), url), args)
    new = results["rebasing"]
    print("\n== goals (rebasing)")
    print(
        f"{verdict(new['min_share'] >= GOAL_SHARE)}  no writer starved: the fewest commits are "
        f"{100 * new['min_share']:.0f} % of the mean (goal ≥ {100 * GOAL_SHARE:.0f} %)"
    )
    print(
        f"{verdict(new['p99_retries'] <= GOAL_P99_RETRIES)}  p99 retries per commit {new['p99_retries']:g} "
        f"(goal ≤ {GOAL_P99_RETRIES})"
    )
    print(
        f"{verdict(new['lost'] == 0 and new['duplicated'] == 0 and new['stray'] == 0)}  rows lost "
        f"{new['lost']}, duplicated {new['duplicated']}, stray {new['stray']} (goal 0)"
    )
    if "without" in results:
        old = results["without"]
        print("\n== rebasing / without (same load, same run)")
        for name, label in [
            ("commits", "commits landed"),
            ("rows_per_second", "rows committed per second"),
            ("min_share", "fewest commits of a writer, share of the mean"),
            ("p99_retries", "p99 retries per commit"),
            ("p99_latency", "p99 commit latency"),
        ]:
            ratio = new[name] / old[name] if old[name] else float("inf")
            print(f"{label:<48} {new[name]:>10.3g} / {old[name]:<10.3g} = {ratio:.2f}x")


@contextlib.contextmanager
def fresh_database(admin_url: str | None) -> Iterator[str | None]:
    """A new PostgreSQL database for one run, dropped afterwards; None (SQLite) without a server."""
    if admin_url is None:
        yield None
        return
    from mlprod.meta.scratch import scratch_database

    with scratch_database(admin_url, prefix="mlprod_bench") as url:
        yield url


if __name__ == "__main__":
    main()
