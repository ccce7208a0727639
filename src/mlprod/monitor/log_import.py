"""Importing predictions a deployed model logged elsewhere into a registered version's prediction log.

Another server's log (Parquet, CSV or JSON lines) names, per row, the time of the prediction, the
model's score, the request id and the model's inputs. ``import_log`` checks every column first,
then writes the rows through the prediction log's own writer (``PredictionLogWriter``, the one
serving uses: same schema, same Parquet files per day), so ``monitor report`` and ``monitor check``
read them like served predictions. Rows sharing a request id are one request (rows 0, 1, … in file
order, one time). Idempotent by request id: a request already in the log for this version is
skipped, so importing the same file again adds nothing. Without a request id column, an id is derived
from the row's content (time, score and inputs), which keeps re-imports idempotent too.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlprod.errors import PredictionLogImportError
from mlprod.models import ModelVersion
from mlprod.monitor.sources import Source, open_source
from mlprod.suggest import did_you_mean

FLUSH_ROWS = 100_000
IMPORTED_ROUTE = "imported"


@dataclass(frozen=True)
class LogColumns:
    """Which columns of the file hold the time, the score, the request id and the inputs.

    ``inputs`` None: the version's signature inputs, under their own names.
    """

    time: str
    prediction: str
    request_id: str | None = None
    latency_ms: str | None = None
    inputs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows read, rows written, and requests skipped as already logged."""

    rows: int
    written: int
    requests: int
    skipped_requests: int


def import_log(
    log_dir: Path,
    version: ModelVersion,
    source: Source,
    columns: LogColumns,
    *,
    route: str = IMPORTED_ROUTE,
) -> ImportReport:
    """Append ``source``'s predictions to the prediction log under ``log_dir`` as ``version``'s.

    Every column is checked before anything is written; a request id already logged for the
    version (by an earlier import or by serving) is skipped.
    """
    from mlprod.serve.prediction_log import PredictionLogWriter  # a sibling layer, as log_source reads it

    data = open_source(source, "import")
    inputs = columns.inputs if columns.inputs is not None else tuple(version.signature.input_names)
    table = _read(data, columns, inputs)
    ids = _request_ids(table, columns, inputs)
    times = _times(table, columns.time)
    scores = _scores(table, columns.prediction)
    latency = _floats(table, columns.latency_ms) if columns.latency_ms else np.full(table.num_rows, math.nan)
    groups = _requests(ids, times)
    logged = _logged_ids(log_dir, version)
    records = table.select(list(inputs)).to_pylist()
    writer = PredictionLogWriter(log_dir, write_ahead=False, start=False, max_buffered_rows=FLUSH_ROWS)
    written = skipped = 0
    try:
        for request_id, rows in groups.items():
            if request_id in logged:
                skipped += 1
                continue
            first = rows[0]
            writer.append(
                request_id=request_id, model=version.model, version=version.version, route=route,
                inputs=[records[i] for i in rows], predictions=[float(scores[i]) for i in rows],
                latency_ms=float(latency[first]), at=times[first],
            )  # fmt: skip
            written += len(rows)
            if writer.buffered_rows >= FLUSH_ROWS:
                writer.flush()
    finally:
        writer.close()
    return ImportReport(table.num_rows, written, len(groups), skipped)


def _read(data: ds.Dataset, columns: LogColumns, inputs: Sequence[str]) -> pa.Table:
    """The columns the import needs, all checked to be there; the file must have rows."""
    names = data.schema.names
    wanted = {"time": columns.time, "prediction": columns.prediction}
    wanted |= {"request id": columns.request_id} if columns.request_id else {}
    wanted |= {"latency": columns.latency_ms} if columns.latency_ms else {}
    for role, name in wanted.items():
        if name not in names:
            raise PredictionLogImportError(
                f"import: no {role} column {name!r}{did_you_mean(name, names)}; columns: {', '.join(names)}"
            )
    missing = [n for n in inputs if n not in names]
    if missing:
        raise PredictionLogImportError(
            f"import: the model's input column(s) {', '.join(missing)} are not in the file "
            f"(columns: {', '.join(names)}); monitoring reads the inputs from the log: add them, or "
            "name the input columns with --inputs"
        )
    read = list(dict.fromkeys([*wanted.values(), *inputs]))
    try:
        table = data.to_table(columns=read)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise PredictionLogImportError(f"import: the file does not read: {exc}") from exc
    if table.num_rows == 0:
        raise PredictionLogImportError("import: the file has no rows")
    return table


def _times(table: pa.Table, name: str) -> list[datetime]:
    try:
        times = pc.cast(table.column(name), pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PredictionLogImportError(
            f"import: time column {name!r} ({table.column(name).type}) does not read as times; give "
            "timestamps or ISO-8601 text such as 2024-05-01T12:00:00Z"
        ) from exc
    if times.null_count:
        raise PredictionLogImportError(
            f"import: time column {name!r} has {times.null_count:,} null(s); every prediction needs its time"
        )
    moments: list[datetime] = times.to_pylist()
    return moments


def _floats(table: pa.Table, name: str) -> np.ndarray:
    try:
        values = pc.cast(table.column(name), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PredictionLogImportError(
            f"import: column {name!r} ({table.column(name).type}) must hold numbers"
        ) from exc
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _scores(table: pa.Table, name: str) -> np.ndarray:
    scores = _floats(table, name)
    bad = np.isnan(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        example = scores[bad][0]
        raise PredictionLogImportError(
            f"import: prediction column {name!r} has {int(bad.sum()):,} value(s) missing or outside [0, 1] "
            f"(e.g. {example:g}); the log holds the model's probability of class 1"
        )
    return scores


def _request_ids(table: pa.Table, columns: LogColumns, inputs: Sequence[str]) -> list[str]:
    """The request id of each row: the column's, as text, or a digest of the row's content."""
    if columns.request_id is None:
        keys = table.select([columns.time, columns.prediction, *inputs]).to_pylist()
        return [
            "import-" + hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()[:32]
            for row in keys
        ]
    ids = pc.cast(table.column(columns.request_id), pa.string())
    if ids.null_count:
        raise PredictionLogImportError(
            f"import: request id column {columns.request_id!r} has {ids.null_count:,} null(s); "
            "every row needs its request id (or leave --request-id out to derive ids from the rows)"
        )
    return [str(v) for v in ids.to_pylist()]


def _requests(ids: list[str], times: list[datetime]) -> dict[str, list[int]]:
    """Row positions per request id, in file order; a request's rows must share one time."""
    groups: dict[str, list[int]] = {}
    for position, request_id in enumerate(ids):
        rows = groups.setdefault(request_id, [])
        if rows and times[rows[0]] != times[position]:
            raise PredictionLogImportError(
                f"import: request id {request_id!r} is on rows with different times ({times[rows[0]]} and "
                f"{times[position]}); the rows of one request share its time: give each prediction its own id"
            )
        rows.append(position)
    return groups


def _logged_ids(log_dir: Path, version: ModelVersion) -> set[str]:
    """The request ids already in the log for ``version`` (any route)."""
    from mlprod.serve.prediction_log import SCHEMA, segment_rows_not_in_parquet

    files, unconverted = segment_rows_not_in_parquet(log_dir)
    mine = (pc.field("model") == version.model) & (pc.field("version") == version.version)
    ids: set[str] = set()
    if files:
        logged = ds.dataset(files, schema=SCHEMA, format="parquet").to_table(
            columns=["request_id"], filter=mine
        )
        ids.update(logged.column("request_id").to_pylist())
    if unconverted.num_rows:
        ids.update(
            ds.dataset(unconverted).to_table(columns=["request_id"], filter=mine).column(0).to_pylist()
        )
    return ids
