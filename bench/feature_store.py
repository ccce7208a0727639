"""Point-in-time training frames: mlprod ``training_frame`` vs Feast ``get_historical_features``.

Run: ``.venv/bin/python bench/feature_store.py [--entities 100000] [--rows-per-entity 100]
[--entity-rows 1000000] [--ttl-days 3] [--skip-feast] [--feast-timeout 900] [--memory-limit-gb G]
[--repeat 1] [--work-dir DIR [--reuse-feast]]``; or ``--matrix`` for the data-shape matrix (see
``bench/feature_store_matrix.py``).

Data (fixed seed, Parquet in a work directory): ``--entities`` driver ids (``driver_id`` int64) with
``--entities x --rows-per-entity`` feature rows spread over 180 days (UTC, second resolution,
``event_timestamp``), float features ``f0`` … ``f9`` with 1 % nulls each, and ``created`` =
``event_timestamp`` + 1 s … 10 min. 1 % of the feature rows repeat an existing (id, event_timestamp)
with a later ``created`` (up to an hour later) and other values. ``--entity-rows`` entity rows
(``driver_id``, ``event_timestamp``, ``row_id``) at random times over the same period, 5 % of them in its
first week, 1 % of them with ids that have no feature rows at all.

Runs go TTL by TTL, Feast's DuckDB store then mlprod, and Feast's file store last: it is stopped at the
memory limit, and on a virtual machine the processes after a large one run slower for minutes while the
memory is handed back. Each retrieval runs in its own subprocess (peak RSS is that process's
``ru_maxrss`` from ``wait4``, so peaks never mix; the time is measured inside it around the retrieval
call alone; with ``--repeat`` the fastest time and the highest peak are kept). A run is killed past its
timeout or when its RSS passes ``--memory-limit-gb`` (default 80 % of the machine: Feast's file store
needs more than 24 GB at full size); the table then shows how long its retrieval had run, and the ratios
against it are lower bounds (">": one short of its goal shows neither PASS nor FAIL):

* Feast (its own venv ``bench/.venvs/feast``, created with ``python3 -m venv`` + ``pip install`` when
  missing; ``bench/feast_runner.py``) ``get_historical_features(entity_df, features).to_df()`` with the
  file (dask) offline store and the DuckDB offline store, for a ``--ttl-days`` TTL and no TTL
  (``ttl=timedelta(0)``, which Feast reads as "lives forever"), each with a ``--feast-timeout``;
* mlprod ``training_frame(entity_parquet, [FeatureView(..., created_time_filter=False)])`` (the
  Feast-compatible mode: ``created`` only breaks ties) and with ``created_time_filter=True`` (the default),
  both with the default ``method="auto"`` (here: the join in memory); and the Feast-compatible mode with
  ``method="asof"``, DuckDB's out-of-core ASOF JOIN, which mlprod takes when the keys do not fit in memory.

Outputs are aligned on ``row_id`` and compared cell by cell (NaN == NaN) with each other and with a numpy
reference of the point-in-time contract: rows missing from an output (Feast's file store drops entity
rows without a value), cells differing, and rows whose (id, event_timestamp) tie was resolved to an
older ``created`` than the latest. Goals printed next to the ratios: mlprod (Feast-compatible mode)
>= 3x faster than Feast DuckDB with the TTL, >= 15x without, peak memory no higher than Feast DuckDB,
>= 30x faster than Feast's file store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import feature_store_matrix as matrix
from measured_process import default_memory_limit, run_measured

BENCH = Path(__file__).resolve().parent
FEAST_VENV = BENCH / ".venvs" / "feast"
FEAST_REQUIREMENT = "feast[duckdb]==0.67.0"
FEATURES = [f"f{i}" for i in range(10)]
DAY = 86_400
PERIOD_DAYS = 180
START = 1_735_689_600  # 2025-01-01T00:00:00Z
TIME = pa.timestamp("us", tz="UTC")
MLPROD_CHILD = "--mlprod-child"


# ---------------------------------------------------------------------------------------------- data


def generate(work: Path, entities: int, per_entity: int, entity_rows: int, seed: int) -> dict[str, Any]:
    """Write ``features.parquet`` and ``entities.parquet`` into ``work``; return what was made."""
    rng = np.random.default_rng(seed)
    period = PERIOD_DAYS * DAY
    ghosts = max(1, entities // 100)
    universe = 100_000_000 + rng.choice(20 * (entities + ghosts), entities + ghosts, replace=False)
    ids, ghost_ids = universe[:entities].astype(np.int64), universe[entities:].astype(np.int64)

    total = entities * per_entity
    repeats = total // 100
    base = total - repeats
    fid = ids[rng.integers(0, entities, base)]
    fts = rng.integers(0, period, base)
    # distinct (id, ts) among the base rows: bump accidental collisions by a second until none is left
    while True:
        order = np.lexsort((fts, fid))
        same = (fid[order][1:] == fid[order][:-1]) & (fts[order][1:] == fts[order][:-1])
        if not same.any():
            break
        fts[order[1:][same]] += 1
    created = fts + rng.integers(1, 601, base)
    pick = rng.choice(base, repeats, replace=False)
    fid = np.concatenate([fid, fid[pick]])
    fts = np.concatenate([fts, fts[pick]])
    created = np.concatenate([created, created[pick] + rng.integers(1, 3601, repeats)])
    arrival = np.argsort(created, kind="stable")  # rows land in the file in the order they were created
    columns: dict[str, pa.Array] = {
        "driver_id": pa.array(fid[arrival], pa.int64()),
        "event_timestamp": pa.array((START + fts[arrival]) * 1_000_000, TIME),
        "created": pa.array((START + created[arrival]) * 1_000_000, TIME),
    }
    for name in FEATURES:
        values = np.round(rng.normal(50.0, 15.0, total), 3)[arrival]
        columns[name] = pa.array(values, pa.float64(), mask=rng.random(total) < 0.01)
    pq.write_table(pa.table(columns), work / "features.parquet", row_group_size=1_000_000)
    del columns

    ghost_rows = entity_rows // 100
    early = entity_rows // 20
    eid = np.concatenate(
        [
            ids[rng.integers(0, entities, entity_rows - ghost_rows)],
            ghost_ids[rng.integers(0, ghosts, ghost_rows)],
        ]
    )
    ets = np.concatenate([rng.integers(0, 7 * DAY, early), rng.integers(0, period, entity_rows - early)])
    shuffle = rng.permutation(entity_rows)
    entity_table = pa.table(
        {
            "driver_id": pa.array(eid[shuffle], pa.int64()),
            "event_timestamp": pa.array((START + ets) * 1_000_000, TIME),
            "row_id": pa.array(np.arange(entity_rows), pa.int64()),
        }
    )
    pq.write_table(entity_table, work / "entities.parquet")
    return {
        "ids": entities,
        "ghost_ids": ghosts,
        "feature_rows": total,
        "repeats": repeats,
        "entity_rows": entity_rows,
        "ghost_rows": ghost_rows,
        "early_rows": early,
        "parquet_bytes": (work / "features.parquet").stat().st_size,
    }


# -------------------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    """One retrieval in its own subprocess."""

    who: str  # "feast-file", "feast-duckdb", "mlprod-compat", "mlprod-default", "mlprod-asof"
    ttl_days: int  # 0 = no TTL
    status: str = "not run"  # ok | timeout | RSS>…GB | failed (exit …) | killed (SIG…), + " after …s"
    seconds: float | None = None
    peak_bytes: int | None = None
    out: Path | None = None
    reused: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def measure(cmd: list[str], run: Run, limits: argparse.Namespace, timeout: float, log: Path) -> None:
    """Run ``cmd`` as a measured step (see ``measured_process``) and fill ``run`` from it."""
    outcome = run_measured(
        cmd, started_key="retrieval_started", timeout=timeout, memory_limit_gb=limits.memory_limit_gb, log=log
    )
    run.status, run.seconds, run.peak_bytes = outcome.status, outcome.seconds, outcome.peak_bytes
    run.info["ran_for"] = outcome.ran_for


def ensure_feast() -> tuple[Path, float | None]:
    """Feast's venv python, creating the venv when missing; the install time (None: already there)."""
    python = FEAST_VENV / "bin" / "python"
    if python.exists():
        return python, None
    print(f"creating {FEAST_VENV} and installing {FEAST_REQUIREMENT} …", file=sys.stderr)
    started = time.perf_counter()
    FEAST_VENV.parent.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(FEAST_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", FEAST_REQUIREMENT],
        check=True,
    )
    return python, time.perf_counter() - started


def feast_version(python: Path) -> str:
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('feast'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return found.stdout.strip()


def run_feast(run: Run, python: Path, work: Path, args: argparse.Namespace) -> None:
    store = run.who.removeprefix("feast-")
    name = f"{run.who}-ttl{run.ttl_days}"
    run.out = work / f"{name}.parquet"
    cmd = [str(python), str(BENCH / "feast_runner.py"), "--store", store]
    cmd += [
        "--ttl-seconds",
        str(run.ttl_days * DAY),
        "--repo",
        str(work / f"repo-{name}"),
        "--out",
        str(run.out),
    ]
    cmd += ["--features", str(work / "features.parquet"), "--entities", str(work / "entities.parquet")]
    measure(cmd, run, args, args.feast_timeout, work / f"{name}.log")


def run_mlprod(run: Run, work: Path, args: argparse.Namespace) -> None:
    name = f"{run.who}-ttl{run.ttl_days}"
    run.out = work / f"{name}.parquet"
    created_filter = "1" if run.who == "mlprod-default" else "0"
    method = "asof" if run.who == "mlprod-asof" else "auto"
    cmd = [
        sys.executable, str(Path(__file__).resolve()), MLPROD_CHILD, str(work), str(run.ttl_days),
        created_filter, str(run.out), method,
    ]  # fmt: skip
    measure(cmd, run, args, args.mlprod_timeout, work / f"{name}.log")


def mlprod_child(argv: list[str]) -> None:
    """Inside the subprocess: one timed ``training_frame`` call, its result written to Parquet."""
    work, ttl_days, created_filter, out, method = (
        Path(argv[0]),
        int(argv[1]),
        argv[2] == "1",
        Path(argv[3]),
        argv[4],
    )
    from mlprod.features import Entity, FeatureView, training_frame

    view = FeatureView(
        name="driver_stats",
        entity=Entity(name="driver", keys=["driver_id"]),
        source=work / "features.parquet",
        features=FEATURES,
        timestamp="event_timestamp",
        created="created",
        ttl=f"{ttl_days}d" if ttl_days else None,
        created_time_filter=created_filter,
    )
    print(json.dumps({"retrieval_started": time.time()}), flush=True)
    started = time.perf_counter()
    frame = training_frame(work / "entities.parquet", [view], event_time="event_timestamp", method=method)
    seconds = time.perf_counter() - started
    pq.write_table(frame, out)
    print(json.dumps({"seconds": seconds, "rows": frame.num_rows}))


# ---------------------------------------------------------------------------------------- comparison


def seconds_of(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as int64 epoch seconds."""
    return column.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy()


def float_matrix(table: pa.Table) -> np.ndarray:
    """Columns ``f0`` … ``f9`` as a float64 matrix, nulls as NaN."""
    return np.column_stack(
        [table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False) for name in FEATURES]
    ).astype(np.float64)


@dataclass
class Reference:
    """The point-in-time contract computed with numpy, for one TTL and created-time mode."""

    values: np.ndarray  # (rows, 10), NaN where no value
    found: np.ndarray  # a value row was found within the TTL
    tie: np.ndarray  # the winning (id, ts) appears more than once in the source


def reference(work: Path, ttl_days: int, created_filter: bool) -> Reference:
    feats = pq.read_table(work / "features.parquet")
    ents = pq.read_table(work / "entities.parquet")
    fid = feats.column("driver_id").to_numpy()
    fts = seconds_of(feats.column("event_timestamp"))
    fcr = seconds_of(feats.column("created"))
    eid = ents.column("driver_id").to_numpy()
    ets = seconds_of(ents.column("event_timestamp"))
    order = np.lexsort((fcr, fts, fid))
    sid, sts, scr = fid[order], fts[order], fcr[order]
    low_id = min(sid.min(), eid.min())
    low_ts = min(sts.min(), ets.min())
    span = int(max(sts.max(), ets.max()) - low_ts + 1)
    skey = (sid - low_id) * span + (sts - low_ts)
    ekey = (eid - low_id) * span + (ets - low_ts)
    idx = np.searchsorted(skey, ekey, side="right") - 1

    def matching() -> np.ndarray:
        ok = idx >= 0
        ok[ok] = sid[idx[ok]] == eid[ok]
        return ok

    found = matching()
    while created_filter:  # step back over versions created after the event time
        late = found.copy()
        late[found] = scr[idx[found]] > ets[found]
        if not late.any():
            break
        idx[late] -= 1
        found = matching()
    if ttl_days:
        found[found] = sts[idx[found]] >= ets[found] - ttl_days * DAY
    same_pair = (sid[1:] == sid[:-1]) & (sts[1:] == sts[:-1])
    in_tie = np.zeros(len(sid), bool)
    in_tie[1:] |= same_pair
    in_tie[:-1] |= same_pair
    tie = np.zeros(len(eid), bool)
    tie[found] = in_tie[idx[found]]
    values = np.full((len(eid), len(FEATURES)), np.nan)
    matrix = float_matrix(feats.select(FEATURES))
    values[found] = matrix[order[idx[found]]]
    return Reference(values, found, tie)


@dataclass
class Output:
    values: np.ndarray  # (entity rows, 10) by row_id
    present: np.ndarray  # row_id appears in the output
    rows: int
    duplicates: int  # output rows whose row_id appeared before
    wrong_keys: int  # rows whose driver_id / event_timestamp differ from the entity row's


def load_output(path: Path, entities: pa.Table) -> Output:
    table = pq.read_table(path, columns=["row_id", "driver_id", "event_timestamp", *FEATURES])
    m = entities.num_rows
    row_id = table.column("row_id").to_numpy()
    counts = np.bincount(row_id, minlength=m)
    values = np.full((m, len(FEATURES)), np.nan)
    values[row_id] = float_matrix(table)
    wrong = (table.column("driver_id").to_numpy() != entities.column("driver_id").to_numpy()[row_id]) | (
        seconds_of(table.column("event_timestamp")) != seconds_of(entities.column("event_timestamp"))[row_id]
    )
    return Output(values, counts > 0, table.num_rows, int((counts[counts > 1] - 1).sum()), int(wrong.sum()))


def differing(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cell mask where ``a`` and ``b`` differ (NaN == NaN), only on ``rows``."""
    return ~((a == b) | (np.isnan(a) & np.isnan(b))) & rows[:, None]


# ------------------------------------------------------------------------------------------- report


LABELS = {
    "feast-file": "Feast file store (dask)",
    "feast-duckdb": "Feast DuckDB store",
    "mlprod-compat": "mlprod created_time_filter=False",
    "mlprod-default": "mlprod created_time_filter=True",
    "mlprod-asof": 'mlprod =False, method="asof"',
}


def ttl_name(days: int) -> str:
    return f"{days}d" if days else "none"


def speed_ratio(base: Run | None, this: Run) -> tuple[str, float | None]:
    """``base`` time / ``this`` time as text and number; a lower bound (">") when ``base`` was stopped."""
    if base is None or this.seconds is None:
        return "-", None
    if base.seconds is not None:
        ratio = base.seconds / this.seconds
        return f"{ratio:,.1f}x", ratio
    if base.info.get("ran_for"):
        ratio = base.info["ran_for"] / this.seconds
        return f">{ratio:,.1f}x", ratio
    return "-", None


def timing_table(runs: list[Run], ttls: list[int], repeat: int) -> list[tuple[str, str, str, bool | None]]:
    by = {(r.who, r.ttl_days): r for r in runs}
    figures: list[tuple[str, str, str, bool | None]] = []
    print(
        f"\n1. retrieval time (the call alone; fastest of {repeat}) and peak RSS (whole subprocess; highest)"
    )
    head = (
        f"{'ttl':<5}{'how':<34}{'status':<22}{'seconds':>9}{'peak GB':>9}{'DuckDB/this':>13}{'file/this':>11}"
    )
    print(head + f"{'RSS this/DuckDB':>17}")
    for ttl in ttls:
        duck, file = by.get(("feast-duckdb", ttl)), by.get(("feast-file", ttl))
        for who in LABELS:
            run = by.get((who, ttl))
            if run is None:
                continue
            seconds = "-" if run.seconds is None else f"{run.seconds:,.2f}"
            peak = "-" if run.peak_bytes is None else f"{run.peak_bytes / 1e9:,.2f}"
            status = run.status + (" *" if run.reused else "")
            vs_duck, duck_ratio = speed_ratio(duck, run) if who.startswith("mlprod") else ("-", None)
            vs_file, file_ratio = speed_ratio(file, run) if who != "feast-file" else ("-", None)
            memory, mem_ratio = "-", None
            if duck and duck.peak_bytes and run.peak_bytes and who != "feast-duckdb" and duck.status == "ok":
                mem_ratio = run.peak_bytes / duck.peak_bytes
                memory = f"{mem_ratio:.2f}"
            print(f"{ttl_name(ttl):<5}{LABELS[who]:<34}{status:<22}{seconds:>9}{peak:>9}{vs_duck:>13}"
                  f"{vs_file:>11}{memory:>17}")  # fmt: skip
            if who == "mlprod-compat":
                goal = 3 if ttl else 15
                figures.append((f"ttl {ttl_name(ttl)}: Feast DuckDB / mlprod", vs_duck, f">= {goal}x",
                                None if duck_ratio is None else duck_ratio >= goal))  # fmt: skip
                figures.append((f"ttl {ttl_name(ttl)}: RSS mlprod / Feast DuckDB", memory, "<= 1",
                                None if mem_ratio is None else mem_ratio <= 1))  # fmt: skip
                figures.append((f"ttl {ttl_name(ttl)}: Feast file / mlprod", vs_file, ">= 30x",
                                goal_met(file_ratio, 30, vs_file.startswith(">"))))  # fmt: skip
    if any(r.reused for r in runs):
        print("  * figures reused from an earlier run in the same --work-dir (--reuse-feast)")
    print("  DuckDB/this, file/this: how many times faster than Feast DuckDB / Feast's file store; "
          "goals for mlprod created_time_filter=False: >= 3x DuckDB with TTL, >= 15x without, >= 30x file "
          "store, RSS this/DuckDB <= 1; a lower bound ('>') short of its goal "
          "shows nothing ('-')")  # fmt: skip
    return figures


def goal_met(ratio: float | None, goal: float, lower_bound: bool) -> bool | None:
    """Whether ``ratio`` reaches ``goal``; None when unknown: no ratio, or a lower bound short of it (the
    stopped run might have finished anywhere after)."""
    if ratio is None or (lower_bound and ratio < goal):
        return None
    return ratio >= goal


def comparison_table(runs: list[Run], ttls: list[int], work: Path) -> list[tuple[str, str, str, bool | None]]:
    entities = pq.read_table(work / "entities.parquet")
    m = entities.num_rows
    figures: list[tuple[str, str, str, bool | None]] = []
    print(f"\n2. outputs compared row for row on row_id ({m:,} entity rows; NaN == NaN)")
    print(f"{'ttl':<5}{'output':<34}{'rows':>10}{'missing':>9}{'dup':>5}{'bad key':>8}"
          f"{'cells!=compat':>14}{'rows!=ref':>11}{'wrong ties':>11}")  # fmt: skip
    for ttl in ttls:
        compat_ref = reference(work, ttl, created_filter=False)
        filter_ref = reference(work, ttl, created_filter=True)
        outputs = {r.who: load_output(r.out, entities) for r in runs
                   if r.ttl_days == ttl and r.status == "ok" and r.out and r.out.exists()}  # fmt: skip
        compat = outputs.get("mlprod-compat")
        for who in LABELS:
            out = outputs.get(who)
            if out is None:
                continue
            ref = filter_ref if who == "mlprod-default" else compat_ref
            off_ref = differing(out.values, ref.values, out.present).any(axis=1)
            cells = "-"
            if compat is not None and who != "mlprod-compat":
                both = out.present & compat.present
                cells = f"{int(differing(out.values, compat.values, both).sum()):,}"
            wrong_ties = int((off_ref & ref.tie).sum())
            print(f"{ttl_name(ttl):<5}{LABELS[who]:<34}{out.rows:>10,}{m - int(out.present.sum()):>9,}"
                  f"{out.duplicates:>5,}{out.wrong_keys:>8,}{cells:>14}{int(off_ref.sum()):>11,}"
                  f"{wrong_ties:>11,}")  # fmt: skip
            if who.startswith("mlprod"):
                exact = out.rows == m and bool(out.present.all()) and not off_ref.any() and not out.wrong_keys
                figures.append(
                    (f"ttl {ttl_name(ttl)}: {who} = reference", "yes" if exact else "NO", "yes", exact)
                )
        no_value = int((~compat_ref.found).sum())
        leak = int(differing(compat_ref.values, filter_ref.values, np.ones(m, bool)).any(axis=1).sum())
        print(f"{'':<5}reference: {no_value:,} rows without a value (all features null), "
              f"{int(compat_ref.tie.sum()):,} rows won by an (id, ts) tie, {leak:,} rows where Feast's "
              f"default takes a value created after the event time")  # fmt: skip
        default = outputs.get("mlprod-default")
        for who in ("feast-duckdb", "feast-file"):
            feast = outputs.get(who)
            if default is not None and feast is not None:
                both = feast.present & default.present
                rows = differing(feast.values, default.values, both).any(axis=1)
                late = rows & ~differing(feast.values, compat_ref.values, both).any(axis=1)
                print(f"{'':<5}{LABELS[who]} vs mlprod created_time_filter=True: {int(rows.sum()):,} rows "
                      f"differ, {int(late.sum()):,} of them a value created after the event time that Feast "
                      f"leaks")  # fmt: skip
    print(
        "  missing: entity rows absent from the output; dup: extra rows for a row_id; bad key: rows whose "
        "driver_id/event_timestamp differ from the entity row; cells!=compat: vs mlprod "
        "created_time_filter=False on rows both have; rows!=ref: vs the numpy reference (created filter "
        "on for the default mode, off otherwise); wrong ties: of those, rows won by an (id, ts) tie"
    )
    return figures


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == MLPROD_CHILD:
        mlprod_child(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == matrix.MATRIX_CHILD:
        matrix.matrix_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=100_000, help="driver ids with feature rows")
    parser.add_argument("--rows-per-entity", type=int, default=100)
    parser.add_argument("--entity-rows", type=int, help="default 1,000,000 (with --matrix: 500,000)")
    parser.add_argument("--ttl-days", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-feast", action="store_true", help="run mlprod and the reference only")
    parser.add_argument("--skip-mlprod", action="store_true", help="run Feast and the reference only")
    parser.add_argument("--feast-timeout", type=float, default=900.0, help="seconds per Feast run")
    parser.add_argument("--mlprod-timeout", type=float, default=900.0, help="seconds per mlprod run")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=default_memory_limit(), help="RSS at which a run is stopped"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each retrieval: fastest time, highest peak RSS"
    )
    parser.add_argument("--work-dir", type=Path, help="keep data and outputs here (reused if it matches)")
    parser.add_argument(
        "--reuse-feast", action="store_true", help="with --work-dir: reuse the Feast runs of an earlier run"
    )
    matrix.add_arguments(parser)
    args = parser.parse_args()
    if args.matrix:
        args.entity_rows = args.entity_rows or matrix.ENTITY_ROWS
        matrix.main_matrix(args, None if args.skip_feast else ensure_feast()[0])
        return
    args.entity_rows = args.entity_rows or 1_000_000
    if args.entities < 10 or args.rows_per_entity < 2 or args.entity_rows < 100 or args.ttl_days < 1:
        parser.error("need --entities >= 10, --rows-per-entity >= 2, --entity-rows >= 100, --ttl-days >= 1")
    if args.reuse_feast and not args.work_dir:
        parser.error("--reuse-feast needs --work-dir")

    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_all(args, work.resolve())


def run_all(args: argparse.Namespace, work: Path) -> None:
    params = {k: getattr(args, k) for k in ("entities", "rows_per_entity", "entity_rows", "seed")}
    meta_path = work / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("params") == params and (work / "features.parquet").exists():
        data = meta["data"]
        print(f"data reused from {work}")
    else:
        started = time.perf_counter()
        data = generate(work, args.entities, args.rows_per_entity, args.entity_rows, args.seed)
        data["generate_seconds"] = time.perf_counter() - started
        meta = {"params": params, "data": data}
        meta_path.write_text(json.dumps(meta, indent=1))
    print(f"data: {data['ids']:,} ids, {data['feature_rows']:,} feature rows ({data['repeats']:,} repeat an "
          f"(id, event_timestamp) with a later created), {data['parquet_bytes'] / 1e6:,.0f} MB of Parquet; "
          f"{data['entity_rows']:,} entity rows ({data['ghost_rows']:,} with {data['ghost_ids']:,} ids that "
          f"have no features, {data['early_rows']:,} in the first week); generated in "
          f"{data.get('generate_seconds', 0):.1f} s")  # fmt: skip

    ttls = [args.ttl_days, 0]
    runs: list[Run] = []
    for ttl in ttls:  # each TTL's runs after the same processes, since what follows a large one is slower
        if not args.skip_feast:
            runs += feast_runs(args, work, meta, [ttl], ["feast-duckdb"])
        if not args.skip_mlprod:
            for who in ("mlprod-compat", "mlprod-default", "mlprod-asof"):
                runs.append(repeated(who, ttl, args, lambda run: run_mlprod(run, work, args)))
    if not args.skip_feast:  # last: it is stopped at the memory limit
        runs += feast_runs(args, work, meta, ttls, ["feast-file"])

    figures = timing_table(runs, ttls, args.repeat)
    figures += comparison_table(runs, ttls, work)
    print(f"\nsummary ({data['feature_rows']:,} feature rows, {data['entity_rows']:,} entity rows)")
    print(f"{'figure':<46}{'value':>12}{'goal':>10}  ok")
    for name, value, goal, ok in figures:
        mark = "-" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<46}{value:>12}{goal:>10}  {mark}")


def repeated(who: str, ttl: int, args: argparse.Namespace, execute: Callable[[Run], None]) -> Run:
    """``args.repeat`` runs, each its own subprocess: the fastest, with the highest peak RSS of them all.

    A run that does not finish (timeout, memory limit, failure) ends the repeats and is the result.
    """
    best: Run | None = None
    peak = 0
    for attempt in range(1, args.repeat + 1):
        run = Run(who, ttl)
        timeout = args.feast_timeout if who.startswith("feast") else args.mlprod_timeout
        load = os.getloadavg()[0]
        print(f"running {LABELS[who]}, ttl {ttl_name(ttl)}, {attempt}/{args.repeat} "
              f"(timeout {timeout:.0f} s; load average {load:.2f}) …", file=sys.stderr)  # fmt: skip
        execute(run)
        peak = max(peak, run.peak_bytes or 0)
        if run.seconds is None:
            best = run
            break
        if best is None or best.seconds is None or run.seconds < best.seconds:
            best = run
    assert best is not None
    best.peak_bytes = peak
    return best


def feast_runs(
    args: argparse.Namespace, work: Path, meta: dict[str, Any], ttls: list[int], stores: list[str]
) -> list[Run]:
    python, install_s = ensure_feast()
    version = feast_version(python)
    installed = "already installed" if install_s is None else f"installed in {install_s:.0f} s"
    print(f"Feast {version} in {FEAST_VENV.relative_to(BENCH.parent)} ({installed})")
    saved_path = work / "feast_runs.json"
    saved: dict[str, Any] = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    reusable = args.reuse_feast and saved.get("params") == meta["params"] and saved.get("version") == version
    limits = [args.feast_timeout, args.memory_limit_gb]  # a stopped run is reused under limits no larger
    runs = []
    for ttl in ttls:
        for who in stores:
            key = f"{who}-ttl{ttl}"
            earlier = saved.get("runs", {}).get(key) if reusable else None
            if earlier and (earlier["status"] == "ok" or earlier["limits"] >= limits):
                out = Path(earlier["out"]) if earlier["out"] else None
                run = Run(who, ttl, earlier["status"], earlier["seconds"], earlier["peak_bytes"], out, True)
                run.info.update(ran_for=earlier["ran_for"], limits=earlier["limits"])
            else:
                run = repeated(who, ttl, args, lambda run: run_feast(run, python, work, args))
                run.info["limits"] = limits
            runs.append(run)
            saved.setdefault("runs", {})[key] = {
                "status": run.status, "seconds": run.seconds, "peak_bytes": run.peak_bytes,
                "out": str(run.out) if run.out else None, "ran_for": run.info["ran_for"],
                "limits": run.info["limits"],
            }  # fmt: skip
    saved.update(params=meta["params"], version=version)
    saved_path.write_text(json.dumps(saved, indent=1))
    return runs


if __name__ == "__main__":
    main()
