"""The serving benchmark's model and request row: trained once into a temporary mlprod workspace.

Two models, chosen with ``run.py --model``:

- ``context`` (the default): the flights LightGBM trained on the feature set ``flight-context``, as
  ``mlprod demo`` trains it: January-June arrive month by month into the versioned table ``flights``
  (a seeded sample, validated and committed), the weather and aircraft tables are committed, the
  workspace names ``mlprod.demo.features`` as its feature definitions, and the run joins the 15
  context features point-in-time. The features are then materialized into the online store (SQLite)
  as of the last departure of the data, so the server can look them up by entity key.
- ``schedule``: the schedule-only LightGBM on the full January-June (no feature set, no lookup).

Either way the version is aliased ``champion`` and exported to ONNX (parity-checked by the registry);
its LightGBM text file and ONNX file are written beside the workspace for the peers.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlprod.models import LoadedModel, ModelVersion
    from mlprod.workspace import Workspace

MODELS = ("context", "schedule")
ROUNDS = 200
SEED = 13
KEYS = ("origin", "dest", "carrier", "tailnum")  # the entity keys of flight-context
LAST_HOURS = 6  # the request row departs within this many hours before AT


@dataclass
class Model:
    """The benchmark model in every form the targets need, and the one request row."""

    kind: str  # "context" or "schedule"
    work: Path
    workspace: Path
    name: str
    version: int
    text_file: Path  # LightGBM's text model format (the registry's native artifact)
    onnx_file: Path
    prediction_log: Path  # the workspace's prediction log directory, where the server writes
    inputs: list[str]  # the model's inputs, in signature order
    row: dict[str, Any]  # the complete raw row: every input (categories as strings)
    numeric: list[float | None]  # the same row encoded by the model's signature (categories as codes)
    expected: float  # the registry's prediction for the row
    trees: int
    flight: str  # which flight the row is, for the table's title
    training_rows: int
    sample: float
    lookup_row: dict[str, Any] | None = None  # context: the non-feature-store inputs + the entity keys
    as_of: str | None = None  # context: the time of the lookup (AT), ISO-8601 with offset
    looked_up: list[str] | None = None  # context: the inputs the server takes from the online store
    preparation_seconds: float = 0.0


_PATHS = {"work", "workspace", "text_file", "onnx_file", "prediction_log"}


def prepare_model(work: Path, kind: str, *, sample: float) -> Model:
    """Train ``kind``'s model into ``work``, alias it champion, export ONNX, pick the request row.

    A ``work`` directory that already holds a prepared model (``model.json``) is reused as it is.
    """
    saved = work / "model.json"
    if saved.exists():
        values: dict[str, Any] = {
            k: Path(v) if k in _PATHS else v for k, v in json.loads(saved.read_text()).items()
        }
        known = {f.name for f in fields(Model)}
        if values.get("kind") != kind or not known.issuperset(values):
            raise SystemExit(
                f"{work} holds a {values.get('kind', 'schedule')!r} model prepared by another version of "
                f"this benchmark; use --model {values.get('kind', 'schedule')} or another --work-dir"
            )
        return Model(**values)
    started = time.perf_counter()
    model = _prepare_context(work, sample) if kind == "context" else _prepare_schedule(work)
    model.preparation_seconds = time.perf_counter() - started
    saved.write_text(json.dumps({k: str(v) if k in _PATHS else v for k, v in vars(model).items()}))
    return model


def _prepare_schedule(work: Path) -> Model:
    from mlprod.data import TableStore
    from mlprod.demo.flights import load_flights, request_rows, training_spec
    from mlprod.models import build_frame, run_training
    from mlprod.workspace import Workspace

    say(f"training the schedule-only model into {work} …")
    spec = training_spec("lightgbm", rounds=ROUNDS, context=False)
    path = work / "workspace"
    flights = load_flights(range(1, 7))
    with Workspace.init(path) as ws:
        TableStore(ws).create("flights", key=["flight_id"], data=flights)
        TableStore(ws).tag("flights", "jan-jun")
        version = run_training(ws, spec).version
        assert version is not None
        loaded, text_file, onnx_file = _publish(ws, version, work)
        log_dir = ws.prediction_log_dir
        july = build_frame(spec, load_flights([7]), extra=["flight_id"]).sample(200, random_state=1)
        candidates = request_rows(july, [*spec.features, "_extra_flight_id"])
        # a row every peer can take as plain numbers: no missing value, no category unseen in training
        row = next(r for r in candidates if np.isfinite(loaded.encoder.encode_rows([_inputs(r)])).all())
        flight_id = row.pop("_extra_flight_id")
    return _model(
        "schedule", work, path, version, loaded, (text_file, onnx_file), log_dir, row,
        flight=f"July flight {flight_id}", sample=1.0,
    )  # fmt: skip


def _prepare_context(work: Path, sample: float) -> Model:
    import pyarrow.compute as pc

    from mlprod.data import TableStore
    from mlprod.demo import features as demo_features
    from mlprod.demo.arrivals import commit_months, tag_training
    from mlprod.demo.flights import load_flights, request_rows, training_spec
    from mlprod.features.catalog import open_online_store
    from mlprod.features.online import FeatureLookup, materialize
    from mlprod.models import build_frame, run_training
    from mlprod.workspace import Workspace

    feature_set = demo_features.flight_context
    spec = training_spec("lightgbm", rounds=ROUNDS)
    schedule = training_spec("lightgbm", rounds=ROUNDS, context=False)  # the inputs a request carries
    path = work / "workspace"
    say(f"preparing the model with feature set {feature_set.name!r} in {path} (sample {sample:g}) …")
    flights = load_flights(range(1, 7), sample=sample, seed=SEED)
    with Workspace.init(path) as ws:
        tables = TableStore(ws)
        commit_months(tables, flights, range(1, 7), report=lambda line: say(f"  {line}"))
        tag_training(tables)
        demo_features.commit_reference_tables(tables)
        ws.set_config("features", "module", demo_features.__name__)
        say(f"  training {spec.model} ({ROUNDS} trees) on {feature_set.name!r} …")
        run = run_training(ws, spec, feature_set=feature_set)
        version = run.version
        assert version is not None
        loaded, text_file, onnx_file = _publish(ws, version, work)
        log_dir = ws.prediction_log_dir
        inputs = loaded.signature.input_names
        looked_up = [name for name in inputs if name in set(feature_set.feature_names)]

        at = pc.max(flights.column("time_hour")).as_py()
        say(f"  materializing {feature_set.name!r} into the online store as of {at.isoformat()} …")
        store = open_online_store(ws)
        try:
            materialize(store, feature_set, at=at, workspace=ws)
            lookup = FeatureLookup(store, feature_set)
            last = flights.filter(
                pc.greater_equal(flights.column("time_hour"), at - timedelta(hours=LAST_HOURS))
            )
            frame = build_frame(schedule, last, extra=["flight_id", "tailnum", "time_hour"]).sort_values(
                "_extra_flight_id"
            )
            extras = ["_extra_flight_id", "_extra_tailnum", "_extra_time_hour"]
            chosen = None  # the flight whose complete row has the fewest missing values
            for candidate in request_rows(frame, [*schedule.features, *extras]):
                flight_id, tailnum = candidate.pop("_extra_flight_id"), candidate.pop("_extra_tailnum")
                departure = candidate.pop("_extra_time_hour")
                lookup_row = {**candidate, "tailnum": tailnum}
                vector = lookup.get({k: lookup_row[k] for k in KEYS}, at=at)
                if vector.missing:
                    continue  # every view must know the entity: no feature miss
                row = {name: candidate[name] if name in candidate else vector.values[name] for name in inputs}
                encoded = loaded.encoder.encode_rows([row])[0]
                if (
                    not all(_present(row[name]) for name in schedule.features)
                    or not np.isfinite(encoded[[inputs.index(name) for name in schedule.features]]).all()
                ):
                    continue  # no missing schedule input, no category unseen in training
                nulls = int(np.isnan(encoded).sum())
                if chosen is None or nulls < chosen[0]:
                    chosen = nulls, f"{flight_id} departing {departure:%Y-%m-%d %H:%M} UTC", lookup_row, row
        finally:
            store.close()
        if chosen is None:
            raise SystemExit(
                f"no flight of the last {LAST_HOURS} hours is known to every view of the online store"
            )
        _, flight_id, lookup_row, row = chosen
    return _model(
        "context",
        work,
        path,
        version,
        loaded,
        (text_file, onnx_file),
        log_dir,
        row,
        flight=f"flight {flight_id} ({lookup_row['carrier']} {lookup_row['origin']}->{lookup_row['dest']}, "
        f"{lookup_row['tailnum']}), features as of {at.isoformat()}",
        sample=sample,
        lookup_row=lookup_row,
        as_of=at.isoformat(),
        looked_up=looked_up,
    )


def _model(
    kind: str,
    work: Path,
    path: Path,
    version: ModelVersion,
    loaded: LoadedModel,
    files: tuple[Path, Path],
    log_dir: Path,
    row: dict[str, Any],
    **described: Any,
) -> Model:
    """The ``Model`` of a prepared version and its request row (``described``: the kind's own fields)."""
    text_file, onnx_file = files
    return Model(
        kind=kind,
        work=work,
        workspace=path,
        name=version.model,
        version=version.version,
        text_file=text_file,
        onnx_file=onnx_file,
        prediction_log=log_dir,
        inputs=loaded.signature.input_names,
        row=row,
        numeric=_numbers(loaded.encoder.encode_rows([row])[0]),
        expected=float(loaded.predict_rows([row])[0]),
        trees=_trees(text_file),
        training_rows=int(version.lineage["train_rows"]),
        **described,
    )


def _inputs(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_extra_")}


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _numbers(encoded: np.ndarray) -> list[float | None]:
    """An encoded row as JSON numbers, a missing value as null (JSON has no NaN)."""
    return [None if math.isnan(v) else float(v) for v in encoded]


def _publish(ws: Workspace, version: ModelVersion, work: Path) -> tuple[LoadedModel, Path, Path]:
    """Alias the version ``champion``, export it to ONNX, write both files for the peers; load it."""
    from mlprod.models import Registry

    registry = Registry(ws)
    registry.set_alias(version.model, "champion", version.version)
    export = registry.export(f"{version.model}@champion")
    text_file, onnx_file = work / "model.txt", work / "model.onnx"
    text_file.write_bytes(ws.artifacts.get_bytes(version.artifact_sha256))
    onnx_file.write_bytes(ws.artifacts.get_bytes(export.artifact_sha256))
    return registry.load(version), text_file, onnx_file


def _trees(text_file: Path) -> int:
    """The number of trees in a LightGBM text model (what every target actually evaluates)."""
    import lightgbm

    return int(lightgbm.Booster(model_file=str(text_file)).num_trees())


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
