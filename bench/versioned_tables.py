"""Versioned tables at scale: commit cost, keyed diff vs a DuckDB full scan, merge, and storage growth.

Run: ``.venv/bin/python bench/versioned_tables.py [--rows 10000000] [--commits 100] [--seed 0]``.

On a generated table of ``--rows`` rows and 20 columns (int64 key ``id``, 9 float, 5 int, 5 text
columns), in a temporary workspace, prints side by side:

1. a 1-row upsert: bytes it added to the object store as a share of the table's bucket bytes (goal
   < 1 %), and its time;
2. the diff of two versions 1,000 rows apart: ``diff_versions`` vs DuckDB ``EXCEPT`` both ways over
   the two versions already checked out as in-memory Arrow tables (checkout timed separately), with
   the results checked identical (goal: mlprod ≥ 50x faster);
3. a merge of two branches changing 10,000 rows each, 100 cells changed differently on both sides:
   the conflict error (exactly 100 conflicts), then policy ``theirs``, with the merged rows checked;
4. ``--commits`` commits of 0.1 % of the rows each: object-store bytes vs that many full copies
   (goal < 10 %, this benchmark's own bar), bucket rewrites (compactions) and total time.

Smaller tables scale the 1,000 / 10,000-row changes down (at most 1/20 and 1/10 of the rows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.data import TableStore, diff_versions, merge_branches
from mlprod.data.manifest import Manifest
from mlprod.errors import MergeConflictError
from mlprod.workspace import Workspace

TABLE = "bench"
FLOATS = [f"f{i}" for i in range(9)]
INTS = [f"i{i}" for i in range(5)]
TEXTS = [f"s{i}" for i in range(5)]
VOCABULARY = [5, 12, 50, 200, 1000]
CHUNK = 1_000_000

Figure = tuple[str, str, str, bool | None]


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call of ``action`` in seconds, and its result."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def median_time(action: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``action`` in seconds over ``repeat`` calls, and its last result."""
    samples, result = [], None
    for _ in range(repeat):
        seconds, result = timed(action)
        samples.append(seconds)
    return statistics.median(samples), result


def random_rows(ids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Rows with the given ids and fresh random values in all 19 other columns."""
    n = len(ids)
    columns: dict[str, Any] = {"id": pa.array(ids, pa.int64())}
    for name in FLOATS:
        columns[name] = pa.array(np.round(rng.normal(100.0, 30.0, n), 2))
    for name in INTS:
        columns[name] = pa.array(rng.integers(0, 1_000_000, n), pa.int64())
    for name, size in zip(TEXTS, VOCABULARY, strict=True):
        words = pa.array([f"{name}-{w}" for w in range(size)])
        columns[name] = words.take(pa.array(rng.integers(0, size, n)))
    return pa.table(columns)


def generate(rows: int, rng: np.random.Generator) -> pa.Table:
    """The benchmark table: ids 0 … rows-1, built in chunks of a million rows."""
    parts = [random_rows(np.arange(s, min(s + CHUNK, rows)), rng) for s in range(0, rows, CHUNK)]
    return pa.concat_tables(parts).combine_chunks()


def edited(base: pa.Table, ids: np.ndarray, edits: dict[str, Callable[[pa.Array], pa.Array]]) -> pa.Table:
    """The base rows of ``ids`` (id == row number) with some columns rewritten."""
    rows = base.take(pa.array(ids))
    for name, edit in edits.items():
        rows = rows.set_column(rows.schema.get_field_index(name), name, edit(rows.column(name)))
    return rows


def plus(amount: float | int) -> Callable[[pa.Array], pa.Array]:
    return lambda column: pc.add(column, amount)


def constant(value: str) -> Callable[[pa.Array], pa.Array]:
    return lambda column: pa.array([value] * len(column), pa.string())


def bucket_bytes(tables: TableStore, manifest: Manifest) -> int:
    """Bytes of a version's bucket objects (its full copy, change sets not counted)."""
    return sum(tables.objects.path_of(sha).stat().st_size for sha in manifest.buckets if sha)


def store_bytes(tables: TableStore) -> tuple[int, int]:
    """Bytes and number of every object in the table store (buckets, change sets, manifests)."""
    sizes = [tables.objects.path_of(sha).stat().st_size for sha in tables.objects]
    return sum(sizes), len(sizes)


def head_manifest(tables: TableStore, ref: str = "main") -> Manifest:
    return tables.manifest(tables.resolve(TABLE, ref).id)


def sorted_rows(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    return rows.select(schema.names).cast(schema).sort_by("id").combine_chunks()


def side_of(changed: pa.Table, prefix: str, schema: pa.Schema) -> pa.Table:
    """Rows of a diff's ``changed`` table on one side (``before`` or ``after``), in the table's schema."""
    columns = {f.name: changed.column(f.name if f.name == "id" else f"{prefix}.{f.name}") for f in schema}
    return pa.table(columns).cast(schema)


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def one_row_commit(tables: TableStore, base: pa.Table, perm: np.ndarray) -> list[Figure]:
    before = set(tables.objects)
    row = edited(base, perm[:1], {"f0": plus(1.0)})
    seconds, result = timed(lambda: tables.commit(TABLE, row, mode="upsert", message="1-row fix"))
    added = set(tables.objects) - before
    added_bytes = sum(tables.objects.path_of(sha).stat().st_size for sha in added)
    total = bucket_bytes(tables, tables.manifest(result.commit_id))
    share = added_bytes / total
    print("\n1. commit of a 1-row upsert")
    print(f"{'objects added':<34}{len(added):>14}   (change set + manifest)")
    print(f"{'bytes added':<34}{added_bytes:>14,}")
    print(f"{'table bytes (bucket objects)':<34}{total:>14,}")
    print(f"{'added / table':<34}{share:>14.5%}   goal < 1 %")
    print(f"{'commit time':<34}{seconds * 1000:>11.1f} ms")
    assert result.counts == {"added": 0, "removed": 0, "changed": 1}, result.counts
    return [
        ("1-row commit: bytes added / table", f"{share:.5%}", "< 1 %", share < 0.01),
        ("1-row commit: time", f"{seconds * 1000:.1f} ms", "-", None),
    ]


def diff_figures(
    tables: TableStore, base: pa.Table, perm: np.ndarray, rng: np.random.Generator, sizes: dict[str, int]
) -> list[Figure]:
    n, changes, moved = base.num_rows, sizes["diff"], sizes["inserts"]
    tables.tag(TABLE, "diff-old")
    changed_ids = perm[1 : 1 + changes]
    deleted_ids = perm[1 + changes : 1 + changes + moved]
    batch = pa.concat_tables(
        [
            edited(base, changed_ids, {"f1": plus(0.5), "i1": plus(7), "s1": constant("changed")}),
            random_rows(np.arange(n, n + moved), rng),
        ]
    )
    tables.commit(TABLE, batch, mode="upsert", message=f"{changes} changes, {moved} inserts")
    tables.commit(TABLE, pa.table({"id": pa.array(deleted_ids, pa.int64())}), mode="delete")
    tables.tag(TABLE, "diff-new")

    auto_s, diff = median_time(lambda: diff_versions(tables, TABLE, "diff-old", "diff-new"), 5)
    bucket_s, by_buckets = timed(
        lambda: diff_versions(tables, TABLE, "diff-old", "diff-new", method="buckets")
    )
    old_s, a = timed(lambda: tables.checkout(TABLE, "diff-old"))
    new_s, b = timed(lambda: tables.checkout(TABLE, "diff-new"))
    connection = duckdb.connect()
    connection.register("a", a)
    connection.register("b", b)

    def except_both() -> tuple[pa.Table, pa.Table]:
        gone = connection.sql("SELECT * FROM a EXCEPT SELECT * FROM b").to_arrow_table()
        new = connection.sql("SELECT * FROM b EXCEPT SELECT * FROM a").to_arrow_table()
        return gone, new

    duck_s, (a_minus_b, b_minus_a) = median_time(except_both, 3)
    connection.close()

    schema = a.schema
    mlprod_keys = np.unique(
        np.concatenate(
            [diff.added["id"].to_numpy(), diff.removed["id"].to_numpy(), diff.changed["id"].to_numpy()]
        )
    )
    duck_keys = np.unique(np.concatenate([a_minus_b["id"].to_numpy(), b_minus_a["id"].to_numpy()]))
    changed = diff.changed
    same_new = sorted_rows(
        pa.concat_tables([diff.added.cast(schema), side_of(changed, "after", schema)]), schema
    )
    same_old = sorted_rows(
        pa.concat_tables([diff.removed.cast(schema), side_of(changed, "before", schema)]), schema
    )
    identical = (
        np.array_equal(mlprod_keys, duck_keys)
        and same_new.equals(sorted_rows(b_minus_a, schema))
        and same_old.equals(sorted_rows(a_minus_b, schema))
        and by_buckets.summary() == diff.summary()
    )
    counts = f"{diff.added.num_rows} added, {diff.removed.num_rows} removed, {changed.num_rows} changed"
    speedup = duck_s / auto_s
    print(f"\n2. diff of two versions {changes:,} rows apart ({counts}) over {n:,} rows")
    print(f"{'how':<44}{'seconds':>10}{'rows read':>12}{'vs mlprod':>11}")
    auto = f"mlprod diff_versions (auto: {diff.method})"
    print(f"{auto:<44}{auto_s:>10.4f}{diff.rows_read:>12,}{1:>10.1f}x")
    print(f"{'mlprod diff_versions (buckets)':<44}{bucket_s:>10.4f}{by_buckets.rows_read:>12,}"
          f"{bucket_s / auto_s:>10.1f}x")  # fmt: skip
    print(f"{'DuckDB EXCEPT both ways (Arrow in memory)':<44}{duck_s:>10.4f}{2 * n:>12,}{speedup:>10.1f}x")
    print(f"{'  (checkout of old / new version to Arrow)':<44}{old_s:>10.2f} / {new_s:.2f}")
    print(f"{'DuckDB / mlprod (auto)':<44}{speedup:>10.1f}x  goal >= 50x")
    print(f"{'results identical (keys and values)':<44}{'yes' if identical else 'NO':>10}")
    return [
        ("diff: DuckDB EXCEPT / mlprod auto", f"{speedup:,.1f}x", ">= 50x", speedup >= 50),
        ("diff: mlprod auto time", f"{auto_s * 1000:.1f} ms", "-", None),
        ("diff: results identical to DuckDB", "yes" if identical else "NO", "yes", identical),
    ]


def merge_figures(
    tables: TableStore, base: pa.Table, perm: np.ndarray, sizes: dict[str, int]
) -> list[Figure]:
    k, clash = sizes["merge"], sizes["conflicts"]
    start = 1 + sizes["diff"] + sizes["inserts"]
    ours_ids = perm[start : start + k]
    theirs_ids = np.concatenate([ours_ids[:clash], perm[start + k : start + 2 * k - clash]])
    ours_edits = {"f0": plus(1.0), "i0": plus(1)}
    theirs_edits = {"f0": plus(2.0), "s0": constant("theirs")}
    tables.branch(TABLE, "feature", "main")
    tables.commit(TABLE, edited(base, ours_ids, ours_edits), message="main edits")
    tables.commit(TABLE, edited(base, theirs_ids, theirs_edits), branch="feature", message="feature edits")

    conflicts: list[Any] = []
    started = time.perf_counter()
    try:
        merge_branches(tables, TABLE, "feature", into="main")
    except MergeConflictError as exc:
        conflicts = list(exc.conflicts)
    refused_s = time.perf_counter() - started
    clash_ids = set(ours_ids[:clash].tolist())
    listed = {(c.key["id"], c.column) for c in conflicts}
    right_conflicts = len(conflicts) == clash and listed == {(i, "f0") for i in clash_ids}
    merge_s, merged = timed(lambda: merge_branches(tables, TABLE, "feature", into="main", policy="theirs"))

    expected = pa.concat_tables(
        [
            edited(base, ours_ids[clash:], ours_edits),
            edited(base, theirs_ids[clash:], theirs_edits),
            edited(base, ours_ids[:clash], {"f0": plus(2.0), "i0": plus(1), "s0": constant("theirs")}),
        ]
    )
    untouched = perm[start + 2 * k - clash : start + 2 * k - clash + 1000]
    expected = pa.concat_tables([expected, base.take(pa.array(untouched))])
    manifest = tables.manifest(merged.commit.commit_id)
    keys = expected.select(["id"])
    check_s, found = timed(lambda: tables.rows_for_keys(manifest, keys, tables.info(TABLE)))
    content_ok = sorted_rows(found, base.schema).equals(sorted_rows(expected, base.schema))
    print(f"\n3. merge of two branches changing {k:,} rows each, {clash} cells changed differently on both")
    print(f"{'merge without policy (refused)':<44}{refused_s:>10.2f} s   {len(conflicts)} conflicts listed")
    print(f"{'merge with policy theirs':<44}{merge_s:>10.2f} s   counts {merged.commit.counts}")
    print(f"{'merged rows checked':<44}{expected.num_rows:>10,}   {'identical' if content_ok else 'DIFFER'}"
          f" (read in {check_s:.2f} s)")  # fmt: skip
    return [
        ("merge: conflicts listed", f"{len(conflicts)}", f"{clash} (f0)", right_conflicts),
        ("merge: time, policy theirs", f"{merge_s:.2f} s", "-", None),
        ("merge: merged rows as expected", "yes" if content_ok else "NO", "yes", content_ok),
    ]


def storage_figures(
    tables: TableStore, initial_bytes: int, commits: int, rng: np.random.Generator, deleted: np.ndarray
) -> list[Figure]:
    info = tables.info(TABLE)
    alive = np.setdiff1d(np.arange(head_manifest(tables).num_rows + len(deleted)), deleted)
    per_commit = max(1, head_manifest(tables).num_rows // 1000)
    rewrites, compactions, times = 0, 0, []
    start_bytes, _ = store_bytes(tables)
    started = time.perf_counter()
    for i in range(1, commits + 1):
        ids = np.sort(rng.choice(alive, per_commit, replace=False))
        batch = random_rows(ids, rng)
        seconds, result = timed(lambda batch=batch, i=i: tables.commit(TABLE, batch, message=f"batch {i}"))
        times.append(seconds)
        rewrites += result.rewritten_buckets
        compactions += result.rewritten_buckets > 0
        if i % 10 == 0 or i == commits:
            size, _ = store_bytes(tables)
            pending = sum(d.rows for d in head_manifest(tables).deltas)
            print(f"  commit {i}/{commits}: {time.perf_counter() - started:,.1f} s, store {mb(size)}, "
                  f"{pending:,} rows pending, {rewrites} buckets rewritten", file=sys.stderr)  # fmt: skip
    total_s = time.perf_counter() - started
    size, count = store_bytes(tables)
    copies = commits * initial_bytes
    ratio = size / copies
    final = head_manifest(tables)
    print(f"\n4. {commits} commits of {per_commit:,} rows ({per_commit / final.num_rows:.2%}) each, upserts")
    print(f"{'table bytes at the start (bucket objects)':<44}{mb(initial_bytes):>14}")
    print(f"{'store bytes before these commits':<44}{mb(start_bytes):>14}")
    print(f"{'store bytes after (all objects, ' + str(count) + ')':<44}{mb(size):>14}")
    print(f"{f'{commits} full copies':<44}{mb(copies):>14}")
    print(f"{'store / full copies':<44}{ratio:>14.2%}   goal < 10 %")
    print(f"{'compactions (commits rewriting buckets)':<44}{compactions:>14}   {rewrites} bucket rewrites of "
          f"{info.buckets}")  # fmt: skip
    print(f"{'total time':<44}{total_s:>12.1f} s   per commit median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s")  # fmt: skip
    return [
        (f"storage: {commits} commits / {commits} copies", f"{ratio:.2%}", "< 10 %", ratio < 0.10),
        ("storage: compactions (bucket rewrites)", f"{compactions} ({rewrites})", "-", None),
        (f"storage: time of {commits} commits", f"{total_s:,.1f} s", "-", None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rows < 10_000:
        parser.error("--rows must be at least 10000")
    n = args.rows
    sizes = {"diff": min(1000, n // 20), "inserts": min(50, n // 200), "merge": min(10_000, n // 10)}
    sizes["conflicts"] = min(100, sizes["merge"] // 10)
    rng = np.random.default_rng(args.seed)
    generate_s, base = timed(lambda: generate(n, rng))
    perm = rng.permutation(n)
    print(f"table: {n:,} rows x {base.num_columns} columns, {base.nbytes / 1e6:,.0f} MB in memory "
          f"(generated in {generate_s:.1f} s)")  # fmt: skip
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp, Workspace.init(tmp) as ws:
        tables = TableStore(ws)
        create_s, _ = timed(lambda: tables.create(TABLE, key=["id"], data=base, buckets=128))
        initial_bytes = bucket_bytes(tables, head_manifest(tables))
        print(f"created in {create_s:.1f} s: 128 buckets, {mb(initial_bytes)} of Parquet")
        figures += one_row_commit(tables, base, perm)
        figures += diff_figures(tables, base, perm, rng, sizes)
        figures += merge_figures(tables, base, perm, sizes)
        deleted = perm[1 + sizes["diff"] : 1 + sizes["diff"] + sizes["inserts"]]
        figures += storage_figures(tables, initial_bytes, args.commits, rng, deleted)
        ws.close()

    print(f"\nsummary ({n:,} rows)")
    print(f"{'figure':<44}{'value':>14}{'goal':>12}  ok")
    for name, value, goal, ok in figures:
        mark = "-" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<44}{value:>14}{goal:>12}  {mark}")


if __name__ == "__main__":
    main()
