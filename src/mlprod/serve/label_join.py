"""Joining labels that arrive late to the prediction log, by request id or by entity key and time.

Labels (what really happened) come long after the predictions; monitoring and retraining need them
side by side. ``join_labels`` returns every log row with its label, or null when none has come
yet (a left join on the log, in the log's row order):

- ``on="request_id"``: the labels carry the ``request_id`` the server answered with, and an
  optional ``row`` (the position of the row inside the request). A label without ``row``, or with a
  null ``row``, applies to row 0 — the usual one-row request.
- ``on=["carrier", "flight"]`` (entity keys): the labels carry entity key columns, compared as
  text with the same keys inside the log's ``inputs`` JSON, and an event time ``time_column``.
  Each label goes to the latest prediction made for that entity **at or before** its time (a
  DuckDB ``ASOF JOIN``), and only when that prediction is at most ``tolerance`` older.

Routes: every row of the log is joined, whatever its route; filter ``route`` afterwards to keep the
champion, the canary or the shadow. A shadow row mirrors a served row (same request id and row), so
it gets that row's label: the entity-key match is made on the served rows only (``route`` other than
``"shadow"``), so that a shadow answer, logged a moment later, never hides the row it mirrors.

Duplicates: when several labels land on the same prediction, the latest wins — the one with the
greatest ``time_column`` value, then the one further down the labels table (a correction appended
later). Labels matching no prediction are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlprod.errors import InvalidInputError

LABEL_TIME = "label_time"
_TIME_TYPE = pa.timestamp("us", tz="UTC")
_SHADOW = "shadow"


def join_labels(
    log: pa.Table,
    labels: pa.Table,
    *,
    on: Literal["request_id"] | Sequence[str] = "request_id",
    label: str = "label",
    time_column: str | None = None,
    tolerance: timedelta | None = None,
) -> pa.Table:
    """The log's rows, in order, with the ``label`` column of ``labels`` and ``label_time`` added.

    ``label`` keeps its type from ``labels``; ``label_time`` is the winning label's
    ``time_column`` (UTC), null without one. ``tolerance`` bounds how old the matched prediction
    may be in an entity-key join (no bound when ``None``).

    Examples:
        >>> import pyarrow as pa
        >>> from datetime import datetime, UTC
        >>> t = datetime(2013, 1, 1, tzinfo=UTC)
        >>> log = pa.table({"request_id": ["a", "b"], "row": pa.array([0, 0], pa.int32()),
        ...                 "time": pa.array([t, t], pa.timestamp("us", tz="UTC")),
        ...                 "route": ["champion", "champion"], "inputs": ["{}", "{}"],
        ...                 "prediction": [0.9, 0.2]})
        >>> labels = pa.table({"request_id": ["b"], "label": [0]})
        >>> join_labels(log, labels).column("label").to_pylist()
        [None, 0]
    """
    keys = _entity_keys(on)
    _check_log(log, label, entity=keys is not None)
    _check_labels(labels, keys, label, time_column, tolerance)
    if time_column is not None:
        _check_times(log, labels, time_column, entity=keys is not None)
    with duckdb.connect() as conn:
        conn.register("log_rows", _log_view(log, entity=keys is not None))
        conn.register("label_rows", _label_view(labels, keys, time_column))
        pairs = _by_request(conn) if keys is None else _by_entity(conn, log, keys, tolerance)
    take = _take_indices(log.num_rows, pairs)
    joined_label = labels.column(label).combine_chunks().take(take)
    if time_column is None:
        joined_time = pa.nulls(log.num_rows, _TIME_TYPE)
    else:
        joined_time = _as_utc(labels.column(time_column)).take(take)
    return log.append_column(label, joined_label).append_column(LABEL_TIME, joined_time)


def _take_indices(rows: int, pairs: dict[str, np.ndarray[Any, Any]]) -> pa.Array:
    """For each log row, the position of its label in ``labels`` (null: no label)."""
    indices = np.full(rows, -1, dtype=np.int64)
    indices[np.asarray(pairs["pos"], dtype=np.int64)] = np.asarray(pairs["lpos"], dtype=np.int64)
    return pa.array(indices, mask=indices < 0)


def _entity_keys(on: str | Sequence[str]) -> list[str] | None:
    if isinstance(on, str):
        if on != "request_id":
            raise InvalidInputError(
                f"join_labels: on={on!r} is not a join; use on='request_id', or a list of entity key "
                f"columns found in the logged inputs with a time_column, e.g. on=[{on!r}]"
            )
        return None
    keys = list(on)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise InvalidInputError(f"join_labels: on must name at least one entity key column, got {on!r}")
    if len(set(keys)) != len(keys):
        raise InvalidInputError(f"join_labels: on names a column twice: {keys!r}")
    return keys


def _check_log(log: pa.Table, label: str, *, entity: bool) -> None:
    needed = ["request_id", "row"] + (["time", "route", "inputs"] if entity else [])
    missing = [c for c in needed if c not in log.column_names]
    if missing:
        raise InvalidInputError(
            f"join_labels: the log lacks column(s) {', '.join(missing)}; pass the table "
            "read_prediction_log returns"
        )
    if label in log.column_names or label == LABEL_TIME:
        raise InvalidInputError(
            f"join_labels: label column {label!r} would clash with a column of the log; rename it in labels"
        )


def _check_labels(
    labels: pa.Table,
    keys: list[str] | None,
    label: str,
    time_column: str | None,
    tolerance: timedelta | None,
) -> None:
    if keys is None:
        needed, how = ["request_id", label], "on='request_id' needs request_id and the label"
        if tolerance is not None:
            raise InvalidInputError(
                "join_labels: tolerance applies to the entity-key join only, not to on='request_id'"
            )
    else:
        if time_column is None:
            raise InvalidInputError(
                f"join_labels: joining by entity key {keys} needs time_column, the labels' event time: "
                "each label goes to the latest prediction for its entity at or before that time"
            )
        needed, how = [*keys, label], f"on={keys} needs the entity keys and the label"
    if time_column is not None:
        needed.append(time_column)
    missing = [c for c in needed if c not in labels.column_names]
    if missing:
        raise InvalidInputError(
            f"join_labels: the labels lack column(s) {', '.join(repr(c) for c in missing)} ({how}"
            f"{', and time_column' if time_column else ''}); they have {', '.join(labels.column_names)}"
        )
    if (
        keys is None
        and "row" in labels.column_names
        and not pa.types.is_integer(labels.schema.field("row").type)
    ):
        raise InvalidInputError(
            f"join_labels: the labels' row column must hold integers, got {labels.schema.field('row').type}"
        )
    if tolerance is not None and (not isinstance(tolerance, timedelta) or tolerance < timedelta(0)):
        raise InvalidInputError(f"join_labels: tolerance must be a timedelta >= 0, got {tolerance!r}")


def _check_times(log: pa.Table, labels: pa.Table, time_column: str, *, entity: bool) -> None:
    label_type = labels.schema.field(time_column).type
    if not pa.types.is_timestamp(label_type):
        raise InvalidInputError(
            f"join_labels: time_column {time_column!r} must hold timestamps, got {label_type}"
        )
    if not entity:
        return
    log_type = log.schema.field("time").type
    if not pa.types.is_timestamp(log_type):
        raise InvalidInputError(f"join_labels: the log's time column must hold timestamps, got {log_type}")
    if (log_type.tz is None) != (label_type.tz is None):
        naive, aware = (
            ("labels' " + repr(time_column), "log's time")
            if label_type.tz is None
            else ("log's time", "labels' " + repr(time_column))
        )
        raise InvalidInputError(
            f"join_labels: cannot compare the {naive} (naive, no time zone) with the {aware} "
            f"(time zone {log_type.tz or label_type.tz}); give the naive one its zone, e.g. "
            "pyarrow.compute.assume_timezone(column, 'UTC')"
        )


def _log_view(log: pa.Table, *, entity: bool) -> pa.Table:
    columns = {
        "pos": pa.array(np.arange(log.num_rows, dtype=np.int64)),
        "request_id": log.column("request_id").cast(pa.string()),
        "row": log.column("row").cast(pa.int64()),
    }
    if entity:
        columns["t"] = _micros(log.column("time"))
        columns["route"] = log.column("route").cast(pa.string())
        columns["inputs"] = log.column("inputs").cast(pa.string())
    return pa.table(columns)


def _label_view(labels: pa.Table, keys: list[str] | None, time_column: str | None) -> pa.Table:
    n = labels.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"lpos": pa.array(np.arange(n, dtype=np.int64))}
    if keys is None:
        columns["request_id"] = labels.column("request_id").cast(pa.string())
        columns["row"] = (
            labels.column("row").cast(pa.int64()) if "row" in labels.column_names else pa.nulls(n, pa.int64())
        )
    else:
        for i, key in enumerate(keys):
            columns[f"k{i}"] = _as_text(labels.column(key))
    columns["t"] = _micros(labels.column(time_column)) if time_column is not None else pa.nulls(n, pa.int64())
    return pa.table(columns)


def _by_request(conn: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray[Any, Any]]:
    rows = conn.execute(
        """
        WITH latest AS (
            SELECT request_id, coalesce(row, 0) AS row, lpos FROM label_rows
            WHERE request_id IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY request_id, coalesce(row, 0) ORDER BY t DESC NULLS LAST, lpos DESC
            ) = 1
        )
        SELECT p.pos, l.lpos FROM log_rows p JOIN latest l USING (request_id, row)
        """
    ).fetchnumpy()
    return {"pos": rows["pos"], "lpos": rows["lpos"]}


def _by_entity(
    conn: duckdb.DuckDBPyConnection, log: pa.Table, keys: list[str], tolerance: timedelta | None
) -> dict[str, np.ndarray[Any, Any]]:
    extracted = ", ".join(f"try(json_extract_string(inputs, ?)) AS k{i}" for i in range(len(keys)))
    paths = [_json_path(k) for k in keys]
    conn.execute(
        f"CREATE TEMP TABLE served AS SELECT pos, request_id, row, t, {extracted} "
        f"FROM log_rows WHERE route IS DISTINCT FROM '{_SHADOW}'",
        paths,
    )
    _check_keys_are_logged(conn, keys, log)
    equal = " AND ".join(f"l.k{i} = p.k{i}" for i in range(len(keys)))
    within = "" if tolerance is None else f"AND l.t - p.t <= {_micros_of(tolerance)}"
    rows = conn.execute(
        f"""
        WITH matched AS (
            SELECT p.pos, p.request_id, p.row, l.lpos
            FROM (SELECT * FROM label_rows WHERE t IS NOT NULL) l
            ASOF JOIN served p ON {equal} AND l.t >= p.t
            WHERE TRUE {within}
            QUALIFY row_number() OVER (PARTITION BY p.pos ORDER BY l.t DESC, l.lpos DESC) = 1
        ),
        labelled AS (
            SELECT pos, lpos FROM matched
            UNION ALL
            SELECT s.pos, m.lpos FROM log_rows s JOIN matched m USING (request_id, row)
            WHERE s.route = '{_SHADOW}'
        )
        SELECT pos, max(lpos) AS lpos FROM labelled GROUP BY pos
        """
    ).fetchnumpy()
    return {"pos": rows["pos"], "lpos": rows["lpos"]}


def _check_keys_are_logged(conn: duckdb.DuckDBPyConnection, keys: list[str], log: pa.Table) -> None:
    counts = conn.execute(
        "SELECT count(*), " + ", ".join(f"count(k{i})" for i in range(len(keys))) + " FROM served"
    ).fetchone()
    assert counts is not None
    if counts[0] == 0:
        return
    absent = [k for k, found in zip(keys, counts[1:], strict=True) if found == 0]
    if absent:
        seen = conn.execute(
            "SELECT DISTINCT unnest(json_keys(inputs)) AS k FROM (SELECT inputs FROM log_rows "
            "WHERE json_valid(inputs) LIMIT 1000) ORDER BY k LIMIT 50"
        ).fetchall()
        raise InvalidInputError(
            f"join_labels: no logged prediction has the entity key(s) {', '.join(repr(k) for k in absent)} "
            f"in its inputs; the logged inputs have {', '.join(r[0] for r in seen) or 'no keys'}"
        )


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Entity keys compared as the JSON text of the logged inputs: 5 → "5", True → "true"."""
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    return column.cast(pa.string())


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    unit = pa.timestamp("us", tz=column.type.tz)
    return column.cast(unit).cast(pa.int64())


def _as_utc(column: pa.ChunkedArray) -> pa.Array:
    """Time as UTC microseconds; a naive time is taken as UTC (the log's own zone)."""
    tz = column.type.tz
    as_us = column.cast(pa.timestamp("us", tz=tz)).combine_chunks()
    return as_us.cast(pa.int64()).cast(_TIME_TYPE) if tz is None else as_us.cast(_TIME_TYPE)


def _micros_of(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
