"""What the lossless-cast check costs: ``exact_cast`` vs Arrow's plain ``cast(safe=True)`` (what commits
and reads did before), and a whole commit and checkout that need casts vs the same without.

Run: ``.venv/bin/python bench/casts.py [--rows 2000000] [--repeat 5]``.

1. per cast pair, on one column of ``--rows`` values, the median time of the checked cast and of the
   plain cast side by side and their ratio. Pairs where Arrow's safe cast already refuses every changed
   value (integer widening, timestamp units, date32 -> date64, the casts reading Parquet back makes)
   skip the round trip; the others pay one cast back and one comparison;
2. an upsert of ``--rows`` rows into a 4-column table whose batch arrives as int32 / float32 / int64 /
   float64 (so every value column is cast, one by round trip) vs the same batch in the table's types,
   then a checkout of each version.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from mlprod.data import TableStore
from mlprod.data.casts import exact_cast
from mlprod.workspace import Workspace


def median_time(action: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def pairs(rows: int, rng: np.random.Generator) -> list[tuple[str, pa.ChunkedArray, pa.DataType]]:
    ints = rng.integers(-(2**30), 2**30, rows)
    cents = np.round(rng.normal(0, 1_000, rows), 2)
    seconds = rng.integers(0, 2_000_000_000, rows)
    return [
        ("int32 -> int64 (fast path)", pa.chunked_array([ints.astype(np.int32)]), pa.int64()),
        (
            "timestamp[us] -> [ns] (fast path)",
            pa.chunked_array([(seconds * 10**6).astype("datetime64[us]")]),
            pa.timestamp("ns"),
        ),
        (
            "date32 -> date64 (fast path)",
            pa.chunked_array([(seconds // 86_400).astype(np.int32)]).cast(pa.date32()),
            pa.date64(),
        ),
        ("int64 -> float64 (round trip)", pa.chunked_array([ints.astype(np.int64)]), pa.float64()),
        (
            "float64 -> float32 (round trip)",
            pa.chunked_array([(ints % 2**20 / 4).astype(np.float64)]),
            pa.float32(),
        ),
        ("float64 -> decimal128(18,2) (round trip)", pa.chunked_array([cents]), pa.decimal128(18, 2)),
        (
            "decimal128(18,2) -> float64 (round trip)",
            pa.chunked_array(
                [pa.array([Decimal(str(c)) for c in cents[: rows // 10]], pa.decimal128(18, 2))] * 10
            ),
            pa.float64(),
        ),
        (
            "timestamp[s] -> date32 (round trip)",
            pa.chunked_array([(seconds // 86_400 * 86_400).astype("datetime64[s]")]),
            pa.date32(),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    print(f"1. one column of {args.rows:,} values, median of {args.repeat} (seconds)")
    print(f"{'cast':<44}{'exact_cast':>12}{'plain cast':>12}{'ratio':>8}")
    for name, values, target in pairs(args.rows, rng):
        checked = exact_cast(values, target)
        assert isinstance(checked, pa.ChunkedArray), f"{name}: the generated values must cast exactly"
        if pa.types.is_decimal(values.type):  # correctly rounded, unlike Arrow's direct cast
            assert checked.to_pylist()[:1000] == [float(v) for v in values.to_pylist()[:1000]], name
        else:
            assert checked.equals(values.cast(target)), name
        exact = median_time(lambda v=values, t=target: exact_cast(v, t), args.repeat)
        plain = median_time(lambda v=values, t=target: v.cast(t, safe=True), args.repeat)
        print(f"{name:<44}{exact:>12.4f}{plain:>12.4f}{exact / plain:>7.1f}x")

    ids = np.arange(args.rows, dtype=np.int64)
    table_types = pa.schema(
        [("id", pa.int64()), ("a", pa.int64()), ("b", pa.float64()), ("c", pa.float64()), ("d", pa.float64())]
    )
    a = rng.integers(0, 1_000, args.rows)
    b = rng.normal(size=args.rows).astype(np.float32)
    same = pa.table(
        {
            "id": ids,
            "a": a,
            "b": b.astype(np.float64),
            "c": a.astype(np.float64),
            "d": rng.normal(size=args.rows),
        },
        schema=table_types,
    )
    cast = pa.table(
        {"id": ids, "a": a.astype(np.int32), "b": b, "c": a.astype(np.int64), "d": same.column("d")}
    )
    print(
        f"\n2. upsert of {args.rows:,} rows changing every row, then checkout "
        f"(seconds, median of {args.repeat})"
    )
    variants = {"batch in the table's types": same, "batch needing casts": cast}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    start = same.set_column(4, "d", pa.array(np.zeros(args.rows)))
    with tempfile.TemporaryDirectory() as root, Workspace.init(root) as ws:
        tables = TableStore(ws)
        tables.create("warm-up", key=["id"], buckets=4, data=same.slice(0, 1_000))  # imports, first queries
        tables.commit("warm-up", cast.slice(0, 1_000))
        tables.checkout("warm-up")
        for run in range(args.repeat):  # interleaved, so load on the machine hits both alike
            for number, (label, batch) in enumerate(variants.items()):
                name = f"t{run}-{number}"
                tables.create(name, key=["id"], buckets=64, data=start)
                started = time.perf_counter()
                result = tables.commit(name, batch)
                committed = time.perf_counter() - started
                started = time.perf_counter()
                out = tables.checkout(name)
                read = time.perf_counter() - started
                assert result.counts["changed"] == args.rows and out.sort_by("id").equals(same), label
                samples[label].append((committed, read))
    medians = {
        label: tuple(statistics.median(s[i] for s in runs) for i in (0, 1)) for label, runs in samples.items()
    }
    for label, (committed, read) in medians.items():
        print(f"{label:<44}commit {committed:>7.2f}  checkout {read:>6.2f}")
    (c0, r0), (c1, r1) = medians.values()
    print(
        f"{'ratio needing casts / in the table types':<44}commit {c1 / c0:>6.2f}x  checkout {r1 / r0:>5.2f}x"
    )


if __name__ == "__main__":
    main()
