"""The prediction log of one model version as typed batches: time, inputs as columns, prediction, label.

The log stores each row's inputs as JSON text; DuckDB extracts the monitored features from it
(numbers as DOUBLE, categories as text), streaming record batches in time order. Late labels are
joined first with ``join_labels`` (by request id, or by entity key and time), which holds the
model's log rows in memory: about 100 bytes a row plus its inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from mlprod.errors import InvalidInputError, NotFoundError

TIME = "time"
PREDICTION = "prediction"
LABEL = "label"
BATCH_ROWS = 100_000


@dataclass(frozen=True)
class LabelSource:
    """Labels to join to the log: a table, how to match it, and which column holds the label."""

    table: pa.Table
    on: Literal["request_id"] | Sequence[str] = "request_id"
    column: str = LABEL
    time_column: str | None = None
    tolerance: timedelta | None = None


def logged_rows(
    log_dir: Path,
    *,
    model: str,
    version: int,
    numeric: Sequence[str],
    categorical: Sequence[str],
    labels: LabelSource | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    routes: Sequence[str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Batches of ``time``, the features, ``prediction`` and ``label`` (null when not known), by time.

    ``since`` is inclusive and ``until`` exclusive; ``routes`` keeps only those routes (all by default:
    a shadow's predictions describe its version as well as a champion's do).
    """
    for name in [*numeric, *categorical]:
        if '"' in name or "\\" in name:
            raise InvalidInputError(f"monitor: feature name {name!r} cannot be read from the log's JSON")
    files = sorted(str(p) for p in log_dir.rglob("part-*.parquet")) if log_dir.is_dir() else []
    if not files:
        raise NotFoundError(f"monitor: no prediction log under {log_dir}; serve the model first")
    with duckdb.connect() as conn:
        log = _model_log(conn, files, model, version, since, until, routes)
        if labels is not None:
            log = _with_labels(log, labels)
        conn.register("log", log)
        extracted = [
            f'TRY_CAST(json_extract_string(inputs, \'$."{n}"\') AS DOUBLE) AS "{n}"' for n in numeric
        ]
        extracted += [f'json_extract_string(inputs, \'$."{n}"\') AS "{n}"' for n in categorical]
        label = "TRY_CAST(label AS DOUBLE)" if labels is not None else "NULL::DOUBLE"
        sql = f"""
            SELECT time, {", ".join([*extracted, ""])} prediction, {label} AS label
            FROM log ORDER BY time, request_id, row
        """
        reader: pa.RecordBatchReader = conn.sql(sql).to_arrow_reader(batch_rows)
        for batch in reader:
            yield pa.Table.from_batches([batch])


def _model_log(
    conn: duckdb.DuckDBPyConnection,
    files: list[str],
    model: str,
    version: int,
    since: datetime | None,
    until: datetime | None,
    routes: Sequence[str] | None,
) -> pa.Table:
    for bound, name in ((since, "since"), (until, "until")):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInputError(f"monitor: --{name} {bound} has no time zone; give a UTC time")
    sql = """
        SELECT request_id, row, time, model, version, route, inputs, prediction, latency_ms
        FROM read_parquet($files)
        WHERE model = $model AND version = $version
          AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time < $until)
          AND ($routes IS NULL OR list_contains($routes, route))
    """
    params = {
        "files": files, "model": model, "version": version, "since": since, "until": until,
        "routes": list(routes) if routes else None,
    }  # fmt: skip
    table: pa.Table = conn.sql(sql, params=params).to_arrow_table()
    if table.num_rows == 0:
        raise NotFoundError(f"monitor: the prediction log has no rows of {model}/{version} in that range")
    return table


def _with_labels(log: pa.Table, labels: LabelSource) -> pa.Table:
    # imported here: importing mlprod.serve loads the web app, which commands without labels skip
    from mlprod.serve.label_join import join_labels

    joined = join_labels(
        log, labels.table, on=labels.on, label=labels.column, time_column=labels.time_column,
        tolerance=labels.tolerance,
    )  # fmt: skip
    if labels.column != LABEL:
        joined = joined.rename_columns([LABEL if n == labels.column else n for n in joined.column_names])
    return joined
