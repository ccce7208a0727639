"""The prediction log of one model version as typed batches: time, inputs as columns, prediction, label.

The log stores each row's inputs as JSON text; DuckDB extracts the monitored features from it
(numbers as DOUBLE, categories as text), streaming record batches in time order. Late labels are
joined first with ``join_labels`` (by request id, or by entity key and time), which holds the
model's log rows in memory: about 100 bytes a row plus its inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError, NotFoundError

TIME = "time"
PREDICTION = "prediction"
LABEL = "label"
BATCH_ROWS = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    for bound, option in ((since, "since"), (until, "until")):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInputError(f"monitor: --{option} {bound} has no time zone; give a UTC time")
    if since is not None and until is not None and since >= until:
        raise InvalidInputError(f"monitor: --since {since} is not before --until {until}")
    log = _log_relation(log_dir)
    params = {
        "model": model, "version": version, "since": since, "until": until,
        "routes": list(routes) if routes else None,
    }  # fmt: skip
    rows = f"""
        SELECT * FROM ({log}) AS logged
        WHERE model = $model AND version = $version
          AND ($since IS NULL OR time >= $since) AND ($until IS NULL OR time < $until)
          AND ($routes IS NULL OR list_contains($routes, route))
    """
    extracted = [f"TRY_CAST({_json_text(n)} AS DOUBLE) AS {_identifier(n)}" for n in numeric]
    extracted += [f"{_json_text(n)} AS {_identifier(n)}" for n in categorical]
    with duckdb.connect() as conn:
        conn.register("unconverted", log.unconverted)
        if conn.execute(f"SELECT count(*) FROM ({rows})", params).fetchall() == [(0,)]:
            raise NotFoundError(f"monitor: the prediction log has no rows of {model}/{version} in that range")
        label, join = "NULL::DOUBLE", ""
        if labels is not None:
            conn.register("labels", _labels_of(conn.sql(rows, params=params), labels))
            label, join = "labels.label", "LEFT JOIN labels USING (request_id, row)"
        sql = f"""
            SELECT time, {", ".join([*extracted, ""])} prediction, {label} AS label
            FROM ({rows}) AS log {join} ORDER BY time, request_id, row
        """
        reader: pa.RecordBatchReader = conn.sql(sql, params=params).to_arrow_reader(batch_rows)
        for batch in reader:
            yield pa.Table.from_batches([batch])


def newest_logged(
    log_dir: Path, *, model: str, version: int, routes: Sequence[str] | None = None
) -> datetime:
    """The time of the newest prediction logged for ``model``/``version`` (on ``routes``)."""
    log = _log_relation(log_dir)
    params = {"model": model, "version": version, "routes": list(routes) if routes else None}
    with duckdb.connect() as conn:
        conn.register("unconverted", log.unconverted)
        (newest,) = conn.execute(
            f"""SELECT epoch_us(max(time)) FROM ({log}) AS logged
                WHERE model = $model AND version = $version
                  AND ($routes IS NULL OR list_contains($routes, route))""",
            params,
        ).fetchone() or (None,)
    if newest is None:
        raise NotFoundError(f"monitor: the prediction log has no rows of {model}/{version}")
    return _EPOCH + timedelta(microseconds=newest)


@dataclass(frozen=True)
class _Log:
    """SQL over the log's Parquet files and the rows of write-ahead segments not yet converted."""

    files: list[str]
    unconverted: pa.Table

    def __str__(self) -> str:
        parts = [f"SELECT * FROM read_parquet({_sql_list(self.files)})"] if self.files else []
        if self.unconverted.num_rows or not parts:
            parts.append("SELECT * FROM unconverted")
        return " UNION ALL BY NAME ".join(parts)


def _log_relation(log_dir: Path) -> _Log:
    # imported here: importing mlprod.serve loads the web app, which reading the log does not need
    from mlprod.serve.prediction_log import segment_rows_not_in_parquet

    files, unconverted = segment_rows_not_in_parquet(log_dir)
    if not files and unconverted.num_rows == 0:
        raise NotFoundError(f"monitor: no prediction log under {log_dir}; serve the model first")
    return _Log(files, unconverted)


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _json_text(name: str) -> str:
    """SQL for a feature's value as text, out of the ``inputs`` JSON (any name is quoted safely)."""
    path = '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "json_extract_string(inputs, '" + path.replace("'", "''") + "')"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _labels_of(log: duckdb.DuckDBPyRelation, labels: LabelSource) -> pa.Table:
    """``request_id``, ``row`` and the label (0/1 as DOUBLE) of every log row a label reached.

    Only the columns the join needs are held in memory: the request ids and, for entity-key joins,
    the inputs (which hold the keys).
    """
    # imported here: importing mlprod.serve loads the web app, which reports without labels skip
    from mlprod.serve.label_join import join_labels

    columns = ["request_id", "row", "time", "route"] + ([] if labels.on == "request_id" else ["inputs"])
    joined = join_labels(
        log.select(*columns).to_arrow_table(), labels.table, on=labels.on, label=labels.column,
        time_column=labels.time_column, tolerance=labels.tolerance,
    )  # fmt: skip
    values = joined.column(labels.column)
    try:
        numbers = pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = None
    if numbers is None or not pc.all(pc.is_in(pc.drop_null(numbers), pa.array([0.0, 1.0]))).as_py():
        sample = pc.drop_null(values).slice(0, 3).to_pylist()
        raise InvalidInputError(
            f"labels: column {labels.column!r} must hold 0/1 or booleans (null: not known yet), "
            f"got e.g. {sample}"
        )
    return pa.table({"request_id": joined.column("request_id"), "row": joined.column("row"), LABEL: numbers})
