"""``bench/feature_store.py --matrix``: the training-frame join on a matrix of data shapes, against Feast.

Run: ``.venv/bin/python bench/feature_store.py --matrix [--feature-rows 2000000] [--entity-rows 500000]
[--shapes base,ns,...] [--repeat 1] [--skip-feast] [--work-dir DIR]``.

One factor at a time around a base shape (microsecond times, a 2 h TTL, 100,000 integer keys drawn
uniformly, naive UTC times): time resolution s / ms / µs / ns; TTL 1 h / 2 h / 3 d / none; key
cardinality 1,000 / 100,000 / 1,000,000; a composite key (two integer columns); a string key;
time-zone-aware times (``Asia/Kolkata``); Zipf-skewed entity popularity (s = 1.1) for both the feature
rows and the entity rows. The key-1k and Zipf shapes have a tenth of the rows: Feast's DuckDB store
pairs every entity row with every feature row of its key before the TTL, minutes there at full size.
Feature rows spread over 180 days, 1 % repeat an (id, time) with a later
``created``; 1 % of the entity rows have ids without features; 5 % fall in the first week.

Each shape runs, each call in its own process (``measured_process``): Feast's DuckDB offline store
(``feast_runner.py``; never its file store, which needs > 23 GB) and mlprod ``training_frame`` with
``created_time_filter=False`` (Feast's semantics) and ``method="auto"``, ``"in_memory"`` and ``"asof"``;
``--repeat N`` runs them N times in turns and keeps each call's fastest. The order rotates from shape
to shape and turn to turn: on a virtual machine the process after a large one (Feast's) pays for fresh
memory, so no call may always be the one that follows it.
Both are timed with the same libraries loaded: Feast's runner has numpy, pyarrow and pandas (~0.3
CPU-s to import) loaded before its timer starts, so mlprod's child loads them too.
Printed per shape: the times, Feast DuckDB / auto (goal >= 1.5x), auto / the better of in_memory and
asof (goal <= 1.10), whether every output has the same values row for row (aligned on ``row_id``,
NaN == NaN), and at the end the geometric mean of Feast DuckDB / auto (goal >= 3x). Below each
line: each call's CPU-seconds and the same two ratios by CPU-seconds, steadier than wall times on a
loaded host (auto runs one path's code plus a ~10 ms estimate, so by CPU it shows the choice).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from measured_process import run_measured

BENCH = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(10)]
DAY = 86_400
PERIOD_DAYS = 180
START = 1_735_689_600  # 2025-01-01T00:00:00Z
TICKS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}  # per second
MATRIX_CHILD = "--matrix-child"
METHODS = ("auto", "in_memory", "asof")
MEMORY_LIMIT_GB = 8.0
ENTITY_ROWS = 500_000  # of the base shape


@dataclass(frozen=True)
class Shape:
    """One data shape: ``ttl`` as mlprod spells it (None: no TTL), ``zipf`` the popularity exponent."""

    name: str
    resolution: str = "us"
    ttl: str | None = "2h"
    keys: int = 100_000
    key_kind: str = "int"  # int | string | composite
    time_zone: str | None = None
    zipf: float | None = None
    scale: float = 1.0  # of the feature and entity rows: Feast joins every row of a key with every other

    def sizes(self, feature_rows: int, entity_rows: int) -> tuple[int, int]:
        return int(feature_rows * self.scale), int(entity_rows * self.scale)

    @property
    def ttl_seconds(self) -> int:
        if self.ttl is None:
            return 0
        return int(self.ttl[:-1]) * {"h": 3_600, "d": DAY}[self.ttl[-1]]

    @property
    def key_columns(self) -> list[str]:
        return ["driver_id", "region"] if self.key_kind == "composite" else ["driver_id"]

    def describe(self) -> str:
        ttl = self.ttl or "none"
        zone = self.time_zone or "naive"
        popularity = f"Zipf {self.zipf}" if self.zipf else "uniform"
        sized = f", {self.scale:g}x the rows" if self.scale != 1 else ""
        return (
            f"{self.resolution}, ttl {ttl}, {self.keys:,} {self.key_kind} keys, {zone}, {popularity}{sized}"
        )


BASE = Shape("base")
SHAPES = [
    BASE,
    replace(BASE, name="res-s", resolution="s"),
    replace(BASE, name="res-ms", resolution="ms"),
    replace(BASE, name="res-ns", resolution="ns"),
    replace(BASE, name="ttl-1h", ttl="1h"),
    replace(BASE, name="ttl-3d", ttl="3d"),
    replace(BASE, name="ttl-none", ttl=None),
    replace(BASE, name="keys-1k", keys=1_000, scale=0.1),
    replace(BASE, name="keys-1m", keys=1_000_000),
    replace(BASE, name="composite", key_kind="composite"),
    replace(BASE, name="string", key_kind="string"),
    replace(BASE, name="tz-aware", time_zone="Asia/Kolkata"),
    replace(BASE, name="zipf", zipf=1.1, scale=0.1),
]


# ---------------------------------------------------------------------------------------------- data


def _ids(rng: np.random.Generator, shape: Shape, count: int, ids: np.ndarray) -> np.ndarray:
    if shape.zipf is None:
        return ids[rng.integers(0, len(ids), count)]
    weights = 1.0 / np.arange(1, len(ids) + 1) ** shape.zipf
    return ids[rng.choice(len(ids), count, p=weights / weights.sum())]


def _key_columns(shape: Shape, ids: np.ndarray) -> dict[str, pa.Array]:
    if shape.key_kind == "string":
        return {"driver_id": pa.array(np.char.add("driver-", ids.astype("U12")).astype(object), pa.string())}
    if shape.key_kind == "composite":
        return {"driver_id": pa.array(ids // 64, pa.int64()), "region": pa.array(ids % 64, pa.int64())}
    return {"driver_id": pa.array(ids, pa.int64())}


def _times(shape: Shape, ticks: np.ndarray) -> pa.Array:
    """Ticks since ``START`` (in the shape's resolution) as a timestamp column."""
    per_second = TICKS[shape.resolution]
    if shape.resolution == "ns":
        values, unit = START * per_second + ticks, "ns"
    else:
        values, unit = (START * per_second + ticks) * (1_000_000 // per_second), "us"
    return (
        pa.array(values, pa.int64())
        .cast(pa.timestamp(unit, tz="UTC" if shape.time_zone else None))
        .cast(pa.timestamp(unit, tz=shape.time_zone))
    )


def generate(work: Path, shape: Shape, feature_rows: int, entity_rows: int, seed: int) -> None:
    """``features.parquet`` and ``entities.parquet`` of ``shape`` in ``work``."""
    rng = np.random.default_rng(seed)
    per_second = TICKS[shape.resolution]
    period = PERIOD_DAYS * DAY * per_second
    ghosts = max(1, shape.keys // 100)
    universe = rng.permutation(rng.choice(20 * (shape.keys + ghosts), shape.keys + ghosts, replace=False))
    ids, ghost_ids = universe[: shape.keys].astype(np.int64), universe[shape.keys :].astype(np.int64)
    repeats = feature_rows // 100
    base = feature_rows - repeats
    fid = _ids(rng, shape, base, ids)
    fts = rng.integers(0, period, base)
    while True:  # distinct (id, time) among the base rows
        order = np.lexsort((fts, fid))
        same = (fid[order][1:] == fid[order][:-1]) & (fts[order][1:] == fts[order][:-1])
        if not same.any():
            break
        fts[order[1:][same]] += 1
    created = fts + rng.integers(1, 601, base) * per_second + rng.integers(0, per_second, base)
    pick = rng.choice(base, repeats, replace=False)
    fid = np.concatenate([fid, fid[pick]])
    fts = np.concatenate([fts, fts[pick]])
    created = np.concatenate([created, created[pick] + rng.integers(1, 3601, repeats) * per_second])
    arrival = np.argsort(created, kind="stable")
    columns = _key_columns(shape, fid[arrival])
    columns["event_timestamp"] = _times(shape, fts[arrival])
    columns["created"] = _times(shape, created[arrival])
    for name in FEATURES:
        values = np.round(rng.normal(50.0, 15.0, feature_rows), 3)[arrival]
        columns[name] = pa.array(values, pa.float64(), mask=rng.random(feature_rows) < 0.01)
    pq.write_table(pa.table(columns), work / "features.parquet", row_group_size=1_000_000)
    del columns
    ghost_rows = entity_rows // 100
    early = entity_rows // 20
    eid = np.concatenate(
        [_ids(rng, shape, entity_rows - ghost_rows, ids), ghost_ids[rng.integers(0, ghosts, ghost_rows)]]
    )
    ets = np.concatenate(
        [rng.integers(0, 7 * DAY * per_second, early), rng.integers(0, period, entity_rows - early)]
    )
    shuffle = rng.permutation(entity_rows)
    table = pa.table(
        {**_key_columns(shape, eid[shuffle]), "event_timestamp": _times(shape, ets[shuffle]),
         "row_id": pa.array(np.arange(entity_rows), pa.int64())}
    )  # fmt: skip
    pq.write_table(table, work / "entities.parquet")


# -------------------------------------------------------------------------------------- subprocesses


@dataclass
class Timing:
    status: str = "not run"
    seconds: float | None = None
    peak_bytes: int | None = None
    out: Path | None = None
    cpu_seconds: float | None = None  # of the whole process (every thread) during the call


@dataclass
class ShapeResult:
    shape: Shape
    load: float
    timings: dict[str, Timing] = field(default_factory=dict)
    same: dict[str, int | None] = field(
        default_factory=dict
    )  # rows differing from auto's (None: not compared)


def run_step(cmd: list[str], out: Path, log: Path, timeout: float, repeat: int) -> Timing:
    """The fastest of ``repeat`` runs of ``cmd`` (each its own process), with the highest peak RSS."""
    best = Timing()
    peak = 0
    for _ in range(repeat):
        outcome = run_measured(
            cmd, started_key="retrieval_started", timeout=timeout, memory_limit_gb=MEMORY_LIMIT_GB, log=log
        )
        peak = max(peak, outcome.peak_bytes)
        if outcome.seconds is None:
            best = Timing(outcome.status)
            break
        if best.seconds is None or outcome.seconds < best.seconds:
            best = Timing("ok", outcome.seconds, None, out, outcome.result.get("cpu_seconds"))
    best.peak_bytes = peak
    return best


def rotated(names: list[str], by: int) -> list[str]:
    """``names`` started at position ``by`` (modulo their count)."""
    start = by % len(names)
    return names[start:] + names[:start]


def faster(best: Timing | None, timing: Timing) -> Timing:
    """The faster of two timings of one call, with the higher peak; a failed run ends the call's runs."""
    if best is None or timing.seconds is None:
        return timing
    fastest = timing if best.seconds is None or timing.seconds < best.seconds else best
    return replace(fastest, peak_bytes=max(best.peak_bytes or 0, timing.peak_bytes or 0))


def feast_command(python: Path, shape: Shape, work: Path, out: Path) -> list[str]:
    kinds = {"driver_id": "string" if shape.key_kind == "string" else "int64", "region": "int64"}
    keys = ",".join(f"{column}:{kinds[column]}" for column in shape.key_columns)
    return [
        str(python), str(BENCH / "feast_runner.py"), "--store", "duckdb",
        "--ttl-seconds", str(shape.ttl_seconds), "--repo", str(work / "repo"), "--out", str(out),
        "--features", str(work / "features.parquet"), "--entities", str(work / "entities.parquet"),
        "--keys", keys,
    ]  # fmt: skip


def mlprod_command(shape: Shape, work: Path, out: Path, method: str) -> list[str]:
    spec = {"work": str(work), "ttl": shape.ttl, "keys": shape.key_columns, "method": method, "out": str(out)}
    return [sys.executable, str(BENCH / "feature_store.py"), MATRIX_CHILD, json.dumps(spec)]


def matrix_child(argv: list[str]) -> None:
    """Inside the subprocess: one timed ``training_frame`` call, its result written to Parquet."""
    spec = json.loads(argv[0])
    work = Path(spec["work"])
    import pandas  # noqa: F401  loaded before the timer, as in Feast's runner (its entity frame is one)

    from mlprod.features import Entity, FeatureView, training_frame

    view = FeatureView(
        name="driver_stats",
        entity=Entity(name="driver", keys=spec["keys"]),
        source=work / "features.parquet",
        features=FEATURES,
        timestamp="event_timestamp",
        created="created",
        ttl=spec["ttl"],
        created_time_filter=False,
    )
    print(json.dumps({"retrieval_started": time.time()}), flush=True)
    started, cpu = time.perf_counter(), time.process_time()
    frame = training_frame(
        work / "entities.parquet", [view], event_time="event_timestamp", method=spec["method"]
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    pq.write_table(frame.select(["row_id", *FEATURES]), spec["out"])
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "rows": frame.num_rows}))


# ---------------------------------------------------------------------------------------- comparison


def values_by_row(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 10) feature values placed by ``row_id`` (NaN: null), and which row_ids were present."""
    table = pq.read_table(path, columns=["row_id", *FEATURES])
    row_id = table.column("row_id").to_numpy()
    values = np.full((rows, len(FEATURES)), np.nan)
    values[row_id] = np.column_stack(
        [table.column(n).cast(pa.float64()).to_numpy(zero_copy_only=False) for n in FEATURES]
    )
    present = np.zeros(rows, bool)
    present[row_id] = True
    return values, present


def rows_differing(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> int:
    (va, pa_), (vb, pb) = a, b
    cells = ~((va == vb) | (np.isnan(va) & np.isnan(vb)))
    return int((cells.any(axis=1) | (pa_ != pb)).sum())


# --------------------------------------------------------------------------------------------- report


def ratio(numerator: Timing | None, denominator: Timing | None) -> float | None:
    if numerator is None or denominator is None or not numerator.seconds or not denominator.seconds:
        return None
    return numerator.seconds / denominator.seconds


def cpu_ratio(numerator: float | None, *denominators: float | None) -> str:
    """``numerator`` over the least of ``denominators`` (CPU-seconds: on a loaded host a steadier
    comparison of the two mlprod paths than their wall times), or "-"."""
    known = [d for d in denominators if d]
    return "-" if numerator is None or not known else f"{numerator / min(known):.2f}"


def mark(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def print_head() -> None:
    print("feature-store shape matrix: seconds of the retrieval call alone (each its own process)")
    head = (
        f"{'shape':<11}{'load':>5}{'Feast':>8}{'auto':>7}{'in_mem':>8}{'asof':>7}{'Feast/auto':>11}"
        f"{'>=1.5x':>7}{'auto/best':>10}{'<=1.10':>7}  {'rows !=auto: in_mem asof Feast':<31}{'same':>5}"
    )
    print(head, flush=True)


def print_row(result: ShapeResult) -> float | None:
    """The shape's line of the table; returns Feast DuckDB / auto."""
    t = result.timings
    cells = []
    for who in ("feast", *METHODS):
        run = t.get(who)
        cells.append("-" if run is None or run.seconds is None else f"{run.seconds:.2f}")
    vs_feast = ratio(t.get("feast"), t.get("auto"))
    paths = [t[m] for m in ("in_memory", "asof") if m in t and t[m].seconds]
    best = min(paths, key=lambda run: run.seconds or math.inf) if paths else None
    vs_best = ratio(t.get("auto"), best)
    differing = [result.same.get(who) for who in ("in_memory", "asof", "feast")]
    same = all(d == 0 for d in differing if d is not None) and any(d is not None for d in differing)
    diff_text = " ".join("-" if d is None else f"{d:,}" for d in differing)
    print(
        f"{result.shape.name:<11}{result.load:>5.1f}{cells[0]:>8}{cells[1]:>7}{cells[2]:>8}{cells[3]:>7}"
        f"{'-' if vs_feast is None else f'{vs_feast:.2f}x':>11}"
        f"{mark(None if vs_feast is None else vs_feast >= 1.5):>7}"
        f"{'-' if vs_best is None else f'{vs_best:.2f}':>10}"
        f"{mark(None if vs_best is None else vs_best <= 1.10):>7}"
        f"  {diff_text:<31}{'yes' if same else 'NO':>5}"
    )
    cpu = [t[w].cpu_seconds if w in t else None for w in ("feast", *METHODS)]
    named = zip(("Feast", *METHODS), cpu, strict=True)
    seconds = " ".join(f"{w} {'-' if c is None else f'{c:.2f}'}" for w, c in named)
    ratios = f"Feast/auto {cpu_ratio(cpu[0], cpu[1])}, auto/best {cpu_ratio(cpu[1], *cpu[2:])}"
    print(f"{'':<11}CPU s: {seconds}; by CPU: {ratios}")
    failed = [f"{who} {run.status}" for who, run in t.items() if run.seconds is None]
    if failed:
        print(f"{'':<11}not timed: {', '.join(failed)}")
    sys.stdout.flush()
    return vs_feast


def report(results: list[ShapeResult], feast_ratios: list[float]) -> None:
    if feast_ratios:
        mean = math.exp(sum(math.log(r) for r in feast_ratios) / len(feast_ratios))
        print(f"geometric mean of Feast DuckDB / auto over {len(feast_ratios)} shapes: {mean:.2f}x "
              f"(goal >= 3x): {mark(mean >= 3)}")  # fmt: skip
    print("shapes: " + "; ".join(f"{r.shape.name}: {r.shape.describe()}" for r in results))
    print("load: 1-minute load average before the shape ran (2 cores here); auto/best: auto's time "
          "over the faster of in_memory and asof; rows !=auto: rows whose values differ from auto's "
          "(by row_id)")  # fmt: skip


def run_matrix(args: argparse.Namespace, feast_python: Path | None) -> None:
    """Each shape of ``args.shapes`` (all by default): its data, then Feast (unless ``feast_python`` is
    None) and the three mlprod methods; the table at the end."""
    chosen = [s for s in SHAPES if not args.shapes or s.name in args.shapes.split(",")]
    unknown = set(args.shapes.split(",")) - {s.name for s in SHAPES} if args.shapes else set()
    if unknown:
        raise SystemExit(f"unknown shapes {sorted(unknown)}; known: {', '.join(s.name for s in SHAPES)}")
    results, feast_ratios = [], []
    print_head()
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        root = (args.work_dir or Path(tmp)).resolve()
        for index, shape in enumerate(chosen):
            work = root / shape.name
            work.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            feature_rows, entity_rows = shape.sizes(args.feature_rows, args.entity_rows)
            generate(work, shape, feature_rows, entity_rows, args.seed)
            result = ShapeResult(shape, os.getloadavg()[0])
            print(f"{shape.name}: {shape.describe()}; data in {time.perf_counter() - started:.1f} s; "
                  f"load {result.load:.2f}", file=sys.stderr, flush=True)  # fmt: skip
            steps: dict[str, tuple[list[str], Path, Path, float]] = {}
            if feast_python is not None:
                out = work / "feast.parquet"
                steps["feast"] = (feast_command(feast_python, shape, work, out), out, work / "feast.log",
                                  args.feast_timeout)  # fmt: skip
            for method in METHODS:
                out = work / f"{method}.parquet"
                steps[method] = (mlprod_command(shape, work, out, method), out, work / f"{method}.log",
                                 args.mlprod_timeout)  # fmt: skip
            for turn in range(args.repeat):  # rotated: no call always runs right after the same one
                for who in rotated(list(steps), index + turn):
                    if who not in result.timings or result.timings[who].seconds is not None:
                        result.timings[who] = faster(result.timings.get(who), run_step(*steps[who], 1))
            auto = result.timings["auto"]
            if auto.out is not None:
                base = values_by_row(auto.out, entity_rows)
                for who, run in result.timings.items():
                    if who != "auto" and run.out is not None:
                        result.same[who] = rows_differing(base, values_by_row(run.out, entity_rows))
            results.append(result)
            vs_feast = print_row(result)
            if vs_feast is not None:
                feast_ratios.append(vs_feast)
            if args.work_dir is None:
                shutil.rmtree(work)
    report(results, feast_ratios)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--matrix")
    group.add_argument(
        "--matrix", action="store_true", help="run the shape matrix (see bench/feature_store_matrix.py)"
    )
    group.add_argument("--feature-rows", type=int, default=2_000_000, help="feature rows of the base shape")
    group.add_argument("--shapes", help=f"comma-separated subset of {', '.join(s.name for s in SHAPES)}")


def main_matrix(args: argparse.Namespace, feast_python: Path | None) -> None:
    if args.feature_rows < 1_000 or args.entity_rows < 100:
        raise SystemExit("--matrix needs --feature-rows >= 1000 and --entity-rows >= 100")
    run_matrix(args, feast_python)
