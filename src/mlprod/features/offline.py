"""Point-in-time correct training frames: every entity row sees only feature values known at its time.

One DuckDB query does the work, out of core (it spills to disk under a memory limit):
- a feature view is an ASOF JOIN on the entity keys and a 128-bit order key (feature time, then
  created time), so each row gets the latest value at or before its event time and ties on feature
  time go to the latest created time; the TTL then nulls values older than ``event - ttl``;
- with a created-time filter, rows whose chosen value was written after the event (late or
  backfilled data) are redone by a range join over only those rows, among values already written;
- an aggregation view unions the entity rows into the source rows and runs window aggregates over
  ``RANGE (window - 1 µs) PRECEDING``: rows with ``event - window < time <= event``.
Entity rows are never dropped or reordered; a row without a value gets nulls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlprod.errors import InvalidInputError
from mlprod.features.definitions import (
    AggregationView,
    FeatureRef,
    FeatureSet,
    FeatureView,
    Source,
    View,
    select_features,
)
from mlprod.features.sources import Registered, check_same_time_kind, connect, quote, register_rows
from mlprod.workspace import Workspace

ROW = "__mlprod_row"
EVENT = "__mlprod_event"
PROBE = "__mlprod_probe"
Features = FeatureSet | Sequence[View | FeatureRef]
# Order key: (feature time, created time) packed into one HUGEINT so one ASOF inequality orders both.
_SHIFT = "18446744073709551616"  # 2**64
_OFFSET = "9223372036854775808"  # 2**63: created microseconds made non-negative below 2**64
_PROBE_LOW = "18446744073709551615"  # 2**64 - 1: an entity row sees every created time at its feature time


@dataclass(frozen=True)
class FrameLineage:
    """What a training frame was built from: the feature set's version and each source's identity."""

    feature_set: str | None
    version: str | None
    sources: dict[str, dict[str, Any]]


def training_frame(
    entity_rows: Source,
    features: Features,
    *,
    event_time: str = "event_time",
    workspace: Workspace | None = None,
    memory_limit: str | None = None,
) -> pa.Table:
    """The entity rows (same order, every column) followed by one column per feature, as of each row's time.

    ``entity_rows`` is a frame, an Arrow table, or a Parquet/CSV path; ``event_time`` names its time
    column. Sources that are versioned tables need ``workspace``.
    """
    table, _ = _run(entity_rows, features, event_time, workspace, memory_limit, output=None)
    assert table is not None
    return table


def write_training_frame(
    entity_rows: Source,
    features: Features,
    path: Path,
    *,
    event_time: str = "event_time",
    workspace: Workspace | None = None,
    memory_limit: str | None = None,
) -> FrameLineage:
    """Like ``training_frame`` but streams the result to a Parquet file, for frames larger than memory."""
    _, lineage = _run(entity_rows, features, event_time, workspace, memory_limit, output=path)
    return lineage


def frame_lineage(features: Features, sources: dict[str, dict[str, Any]]) -> FrameLineage:
    if isinstance(features, FeatureSet):
        return FrameLineage(features.name, features.version, sources)
    return FrameLineage(None, None, sources)


def _run(
    entity_rows: Source,
    features: Features,
    event_time: str,
    workspace: Workspace | None,
    memory_limit: str | None,
    output: Path | None,
) -> tuple[pa.Table | None, FrameLineage]:
    selection = select_features(features.features if isinstance(features, FeatureSet) else features)
    if not selection:
        raise InvalidInputError("no features were asked for")
    with tempfile.TemporaryDirectory(prefix="mlprod-frame-") as spill:
        conn = connect(memory_limit, Path(spill))
        try:
            entities = _register_entities(conn, entity_rows, event_time)
            times: list[tuple[Registered, str]] = [(entities, event_time)]
            for view, names in selection.values():
                _refuse_taken_names(entities, view, names)
            plans = []
            for index, (view, names) in enumerate(selection.values()):
                source = register_rows(
                    conn, view.source, f"__mlprod_source_{index}", f"source of view {view.name!r}", workspace
                )
                _check_view_source(entities, source, view, names, event_time)
                if isinstance(view, FeatureView) and view.timestamp is None:
                    _refuse_duplicate_static_keys(conn, source, view)
                times += [(source, column) for column in _time_columns(view)]
                plans.append(_ViewPlan(index, view, names, source))
            check_same_time_kind(times)
            sql = _query(entities, event_time, plans)
            lineage = frame_lineage(features, {p.view.name: p.source.lineage for p in plans})
            if output is None:
                return _without_internal_columns(conn.sql(sql).to_arrow_table()), lineage
            conn.execute(f"COPY ({sql}) TO {_literal(str(output))} (FORMAT parquet)")
            return None, lineage
        finally:
            conn.close()


@dataclass(frozen=True)
class _ViewPlan:
    index: int
    view: View
    names: list[str]
    source: Registered

    @property
    def alias(self) -> str:
        return f"__mlprod_view_{self.index}"


def _register_entities(conn: Any, rows: Source, event_time: str) -> Registered:
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    elif isinstance(rows, str | Path):
        path = Path(rows)
        if not path.exists():
            raise InvalidInputError(f"entity rows: no file {path}")
        rows = _read_file(path)
    if not isinstance(rows, pa.Table):
        raise InvalidInputError(f"entity rows must be a DataFrame, an Arrow table or a file, not {type(rows)}")
    internal = [name for name in rows.column_names if name.startswith("__mlprod_")]
    if internal:
        raise InvalidInputError(f"entity rows may not have columns named __mlprod_*: {internal}")
    numbered = rows.append_column(ROW, pa.array(range(rows.num_rows), type=pa.int64()))
    conn.register("__mlprod_entity_input", numbered)
    types = {c: k for c, k, *_ in conn.execute("DESCRIBE __mlprod_entity_input").fetchall()}
    entities = Registered("__mlprod_entity_input", "the entity rows", types, {"rows": rows.num_rows})
    entities.require([event_time], "event-time")
    entities.time_zone_aware(event_time)
    return entities


def _read_file(path: Path) -> pa.Table:
    if ".csv" in "".join(path.suffixes).lower():
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    return pq.read_table(path)


def _refuse_taken_names(entities: Registered, view: View, names: list[str]) -> None:
    taken = [name for name in names if name in entities.types]
    if taken:
        raise InvalidInputError(
            f"the entity rows already have column(s) {taken}, which view {view.name!r} would add; "
            "rename them or the features"
        )


def _check_view_source(
    entities: Registered, source: Registered, view: View, names: list[str], event_time: str
) -> None:
    entities.require(view.entity.keys, f"entity-key (entity {view.entity.name!r})")
    source.require(view.key_columns.values(), "key")
    source.require(_time_columns(view), "time")
    if isinstance(view, FeatureView):
        source.require([view.feature_columns[name] for name in names], "feature")
    else:
        columns = [a.column for a in view.aggregations if a.output in names and a.column is not None]
        source.require(columns, "aggregated")
    for key, column in view.key_columns.items():
        left, right = _type_family(entities.types[key]), _type_family(source.types[column])
        if left != right:
            raise InvalidInputError(
                f"entity key {key!r} is {entities.types[key]} in the entity rows but {source.types[column]} "
                f"in column {column!r} of {source.what}; give both the same type"
            )


def _time_columns(view: View) -> list[str]:
    if isinstance(view, AggregationView):
        return [view.timestamp]
    return [c for c in (view.timestamp, view.created) if c is not None]


def _type_family(kind: str) -> str:
    if kind in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "UBIGINT"):  # fmt: skip
        return "number"
    if kind.startswith("DECIMAL") or kind in ("FLOAT", "DOUBLE"):
        return "number"
    return kind


def _query(entities: Registered, event_time: str, plans: list[_ViewPlan]) -> str:
    ctes = [
        f"__mlprod_entities AS (SELECT *, CAST({quote(event_time)} AS TIMESTAMPTZ) AS {EVENT}, "
        f"(epoch_us(CAST({quote(event_time)} AS TIMESTAMPTZ))::HUGEINT * {_SHIFT}) + {_PROBE_LOW} AS {PROBE} "
        f"FROM {entities.relation})"
    ]
    columns = [f"e.{quote(c)}" for c in entities.types if c != ROW]
    joins = []
    for plan in plans:
        if isinstance(plan.view, AggregationView):
            ctes += _aggregation_ctes(plan, plan.view)
            columns += [f"{plan.alias}.{quote(name)}" for name in plan.names]
        else:
            ctes += _feature_view_ctes(plan, plan.view)
            columns += _feature_outputs(plan, plan.view)
        joins.append(f"LEFT JOIN {plan.alias} ON {plan.alias}.{ROW} = e.{ROW}")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(columns)}, e.{ROW} FROM __mlprod_entities e "
        f"{' '.join(joins)} ORDER BY e.{ROW}"
    )


def _feature_outputs(plan: _ViewPlan, view: FeatureView) -> list[str]:
    ttl = view.ttl_delta
    if ttl is None or view.timestamp is None:
        return [f"{plan.alias}.{quote(name)}" for name in plan.names]
    bound = f"e.{EVENT} - to_microseconds({_microseconds(ttl)})"
    return [
        f"CASE WHEN {plan.alias}.__mlprod_ts >= {bound} THEN {plan.alias}.{quote(name)} END AS {quote(name)}"
        for name in plan.names
    ]


def _feature_view_ctes(plan: _ViewPlan, view: FeatureView) -> list[str]:
    keys = view.key_columns
    src = plan.source.relation
    values = ", ".join(f"{quote(view.feature_columns[name])} AS {quote(name)}" for name in plan.names)
    not_null = " AND ".join(f"{quote(column)} IS NOT NULL" for column in keys.values())
    key_select = ", ".join(f"{quote(column)} AS {quote(key)}" for key, column in keys.items())
    if view.timestamp is None:
        on = " AND ".join(f"s.{quote(k)} = e.{quote(k)}" for k in keys)
        return [
            f"{plan.alias} AS (SELECT e.{ROW}, s.* EXCLUDE ({', '.join(quote(k) for k in keys)}) "
            f"FROM __mlprod_entities e JOIN (SELECT {key_select}, {values} FROM {src} WHERE {not_null}) s ON {on})"
        ]
    ts = f"CAST({quote(view.timestamp)} AS TIMESTAMPTZ)"
    created = f"coalesce(CAST({quote(view.created)} AS TIMESTAMPTZ), {ts})" if view.created else ts
    prepared = f"{plan.alias}_source"
    on = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in keys)
    names = ", ".join(f"s.{quote(n)}" for n in plan.names)
    ctes = [
        f"{prepared} AS (SELECT {key_select}, {ts} AS __mlprod_ts, {created} AS __mlprod_created, "
        f"(epoch_us({ts})::HUGEINT * {_SHIFT}) + (epoch_us({created})::HUGEINT + {_OFFSET}) AS __mlprod_order, "
        f"{values} FROM {src} WHERE {not_null} AND {quote(view.timestamp)} IS NOT NULL)",
    ]
    latest = (
        f"SELECT e.{ROW}, e.{EVENT}, {', '.join(f'e.{quote(k)}' for k in keys)}, s.__mlprod_ts, "
        f"s.__mlprod_created, {names} FROM __mlprod_entities e ASOF LEFT JOIN {prepared} s "
        f"ON {on} AND e.{PROBE} >= s.__mlprod_order"
    )
    if not (view.created and view.created_time_filter):
        return [*ctes, f"{plan.alias} AS ({latest})"]
    # The latest value by feature time was written after the event: look again among written values.
    window = ""
    if view.ttl_delta is not None:
        window = f" AND s.__mlprod_ts >= l.{EVENT} - to_microseconds({_microseconds(view.ttl_delta)})"
    fields = ", ".join(f"{quote(n)} := s.{quote(n)}" for n in ["__mlprod_ts", *plan.names])
    late_on = " AND ".join(f"l.{quote(k)} = s.{quote(k)}" for k in keys)
    return [
        *ctes,
        f"{plan.alias}_latest AS ({latest})",
        f"{plan.alias}_rewritten AS (SELECT l.{ROW}, arg_max(struct_pack({fields}), s.__mlprod_order) AS w "
        f"FROM {plan.alias}_latest l JOIN {prepared} s ON {late_on} AND s.__mlprod_ts <= l.{EVENT} "
        f"AND s.__mlprod_created <= l.{EVENT}{window} WHERE l.__mlprod_created > l.{EVENT} GROUP BY l.{ROW})",
        f"{plan.alias} AS ("
        f"SELECT {ROW}, __mlprod_ts, {', '.join(quote(n) for n in plan.names)} FROM {plan.alias}_latest "
        f"WHERE __mlprod_created IS NULL OR __mlprod_created <= {EVENT} "
        f"UNION ALL SELECT l.{ROW}, r.w.__mlprod_ts, "
        f"{', '.join(f'r.w.{quote(n)} AS {quote(n)}' for n in plan.names)} FROM {plan.alias}_latest l "
        f"LEFT JOIN {plan.alias}_rewritten r ON r.{ROW} = l.{ROW} WHERE l.__mlprod_created > l.{EVENT})",
    ]


def _aggregation_ctes(plan: _ViewPlan, view: AggregationView) -> list[str]:
    keys = view.key_columns
    src = plan.source.relation
    chosen = [a for a in view.aggregations if a.output in plan.names]
    columns = sorted({a.column for a in chosen if a.column is not None})
    value_names = {column: f"__mlprod_value_{i}" for i, column in enumerate(columns)}
    source_values = ", ".join(f"{quote(c)} AS {value_names[c]}" for c in columns)
    probe_values = ", ".join(f"NULL AS {value_names[c]}" for c in columns)
    key_select = ", ".join(f"{quote(column)} AS {quote(key)}" for key, column in keys.items())
    not_null = " AND ".join(f"{quote(column)} IS NOT NULL" for column in keys.values())
    partition = ", ".join(quote(k) for k in keys)
    windows = sorted({a.window_delta for a in chosen})
    window_names = {w: f"__mlprod_w{i}" for i, w in enumerate(windows)}
    aggregates = []
    for a in chosen:
        argument = value_names[a.column] if a.column is not None else "__mlprod_is_row"
        function = {"mean": "avg"}.get(a.function, a.function)
        aggregates.append(f"{function}({argument}) OVER {window_names[a.window_delta]} AS {quote(a.output)}")
    window_clauses = ", ".join(
        f"{window_names[w]} AS (PARTITION BY {partition} ORDER BY __mlprod_time "
        f"RANGE BETWEEN to_microseconds({_microseconds(w) - 1}) PRECEDING AND CURRENT ROW)"
        for w in windows
    )
    extra_probe = (", " + probe_values) if probe_values else ""
    extra_source = (", " + source_values) if source_values else ""
    return [
        f"{plan.alias}_stream AS ("
        f"SELECT {ROW}, {', '.join(quote(k) for k in keys)}, {EVENT} AS __mlprod_time, "
        f"NULL::INTEGER AS __mlprod_is_row{extra_probe} FROM __mlprod_entities "
        f"UNION ALL SELECT NULL, {key_select}, CAST({quote(view.timestamp)} AS TIMESTAMPTZ), 1{extra_source} "
        f"FROM {src} WHERE {not_null} AND {quote(view.timestamp)} IS NOT NULL)",
        f"{plan.alias} AS (SELECT {ROW}, {', '.join(aggregates)} FROM {plan.alias}_stream "
        f"WINDOW {window_clauses} QUALIFY {ROW} IS NOT NULL)",
    ]


def _refuse_duplicate_static_keys(conn: Any, source: Registered, view: FeatureView) -> None:
    """A static view (no timestamp) must hold one row per key, or the join would multiply entity rows."""
    columns = list(view.key_columns.values())
    duplicate = conn.execute(
        f"SELECT {', '.join(quote(c) for c in columns)}, count(*) FROM {source.relation} "
        f"GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if duplicate is not None:
        key = dict(zip(columns, duplicate[:-1], strict=True))
        raise InvalidInputError(
            f"static view {view.name!r} has {duplicate[-1]} rows for key {key} in {source.what}; "
            "a view without a timestamp needs one row per key"
        )


def _microseconds(duration: timedelta) -> int:
    return duration // timedelta(microseconds=1)


def _without_internal_columns(table: pa.Table) -> pa.Table:
    return table.drop_columns([c for c in table.column_names if c.startswith("__mlprod_")])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
