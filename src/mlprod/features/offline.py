"""Point-in-time correct training frames: every entity row sees only feature values known at its time.

A feature view with a feature time is joined in memory when that fits and, with a TTL, its shape
says so (``join_plan``) (``in_memory_join``: its source's keys sorted block by block and searched,
only the chosen rows' values read). Otherwise, and for every other view, one DuckDB query does the
work, out of core (it spills under a memory limit):
- a feature view with a TTL is an equi-join on the keys and a TTL-wide time bucket (the fewer of the
  entity and source rows doubled to meet the two buckets a row can serve), keeping the greatest
  (feature time, created time) in ``[event - ttl, event]`` (no sort of the source); when the frame
  is returned, only the rows that found a value come back, put in place by row number, and from a
  plain Parquet file they carry its row numbers, not values: the chosen rows' values are read after;
- a feature view without one is an ASOF JOIN on the entity keys and a 128-bit order key (feature
  time, then created time), so each row gets the latest value at or before its event time and ties
  on feature time go to the latest created time;
- with a created-time filter, rows whose chosen value was written after the event (late or
  backfilled data) are redone by a range join over only those rows, among values already written;
- an aggregation view unions the entity rows into the source rows and runs window aggregates over
  ``RANGE (window - 1 tick) PRECEDING`` over integer times: rows with ``event - window < time <= event``.
Times are compared as microseconds, or as nanoseconds when any time column has them (``time_unit``).
Entity rows are never dropped or reordered; a row without a value gets nulls. Their event time comes
back UTC-aware (a naive one was taken as UTC).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from mlprod.features.in_memory_join import JoinInput, Placed, codable, fits, gather_rows, join_in_memory
from mlprod.features.join_plan import in_memory_is_cheaper, measure, small
from mlprod.features.sources import (
    Registered,
    check_same_time_kind,
    connect,
    derive_columns,
    quote,
    quote_literal,
    register_rows,
)
from mlprod.features.time_unit import NANOSECONDS, TimeUnit, time_unit
from mlprod.lazy import lazy_module
from mlprod.workspace import Workspace

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
    pacsv = lazy_module("pyarrow.csv")

ROW = "__mlprod_row"
EVENT = "__mlprod_event"
PROBE = "__mlprod_probe"
TIME = "__mlprod_time_"  # + view index: the chosen row's feature time (internal; kept for the online store)
CREATED = "__mlprod_created_"
Features = FeatureSet | Sequence[View | FeatureRef]
JoinMethod = Literal["auto", "in_memory", "asof"]
# Order key: (feature time, created time) packed into one HUGEINT so one ASOF inequality orders both.
_SHIFT = "18446744073709551616"  # 2**64
_OFFSET = "9223372036854775808"  # 2**63: created microseconds made non-negative below 2**64
_PROBE_LOW = "18446744073709551615"  # 2**64 - 1: an entity row sees every created time at its feature time
_STAGE = "__mlprod_stage_0"
_SOURCE_ROW = "__mlprod_source_row"
_BUCKET_ORIGIN = 10**17  # µs added before bucketing, so times before 1970 divide like later ones


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
    method: JoinMethod = "auto",
) -> pa.Table:
    """The entity rows (same order, every column) followed by one column per feature, as of each row's time.

    ``entity_rows`` is a frame, an Arrow table, or a Parquet/CSV path; ``event_time`` names its time
    column. Sources that are versioned tables need ``workspace``. ``memory_limit`` (e.g. ``"4GB"``)
    bounds DuckDB, which spills past it. ``method`` picks how a view with a feature time is joined:
    ``"in_memory"`` sorts the source's keys in memory block by block (fastest; used whenever the key
    types allow), ``"asof"`` uses DuckDB's ASOF JOIN out of core, and ``"auto"`` takes the first when
    the entity rows' arrays fit in half the memory budget. Both give the same rows.
    """
    return training_frame_with_lineage(
        entity_rows,
        features,
        event_time=event_time,
        workspace=workspace,
        memory_limit=memory_limit,
        method=method,
    )[0]


def training_frame_with_lineage(
    entity_rows: Source,
    features: Features,
    *,
    event_time: str = "event_time",
    workspace: Workspace | None = None,
    memory_limit: str | None = None,
    method: JoinMethod = "auto",
) -> tuple[pa.Table, FrameLineage]:
    """``training_frame`` and what it was built from (for a training run's lineage)."""
    table, lineage = _run(entity_rows, features, event_time, workspace, memory_limit, method, output=None)
    assert table is not None
    return table, lineage


def write_training_frame(
    entity_rows: Source,
    features: Features,
    path: Path,
    *,
    event_time: str = "event_time",
    workspace: Workspace | None = None,
    memory_limit: str | None = None,
    method: JoinMethod = "auto",
) -> FrameLineage:
    """Like ``training_frame`` but streams the result to a Parquet file, for frames larger than memory."""
    _, lineage = _run(entity_rows, features, event_time, workspace, memory_limit, method, output=path)
    return lineage


def values_with_times(
    entity_rows: pa.Table, view: View, *, event_time: str, workspace: Workspace | None = None
) -> pa.Table:
    """Like ``training_frame`` for one view, plus the chosen row's feature and created times
    (``__mlprod_time_0`` and ``__mlprod_created_0``): what the online store keeps per key."""
    table, _ = _run(entity_rows, [view], event_time, workspace, None, "auto", output=None, keep_times=True)
    assert table is not None
    return table


def _frame_lineage(features: Features, sources: dict[str, dict[str, Any]]) -> FrameLineage:
    if isinstance(features, FeatureSet):
        return FrameLineage(features.name, features.version, sources)
    return FrameLineage(None, None, sources)


def _run(
    entity_rows: Source,
    features: Features,
    event_time: str,
    workspace: Workspace | None,
    memory_limit: str | None,
    method: JoinMethod,
    output: Path | None,
    keep_times: bool = False,
) -> tuple[pa.Table | None, FrameLineage]:
    if method not in ("auto", "in_memory", "asof"):
        raise InvalidInputError(f"method must be 'auto', 'in_memory' or 'asof', not {method!r}")
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
                source = derive_columns(conn, source, view.derived_columns)
                _check_view_source(entities, source, view, names, event_time)
                if isinstance(view, FeatureView) and view.timestamp is None:
                    _refuse_duplicate_static_keys(conn, source, view)
                times += [(source, column) for column in _time_columns(view)]
                rows = _row_counts(conn, entities, source) if _by_ttl_query(view) else None
                plans.append(_ViewPlan(index, view, names, source, rows=rows))
            check_same_time_kind(times)
            unit = time_unit(conn, ((r.relation, column, r.types[column]) for r, column in times))
            held = 0  # bytes of the values already joined in memory, which stay until the frame is built
            for at, plan in enumerate(plans):
                plans[at] = joined = _in_memory(
                    conn, entities, event_time, plan, memory_limit, method, held, keep_times, unit
                )
                if joined.found is None and output is None and _by_ttl_query(joined.view):
                    plans[at] = joined = _found_by_ttl_query(conn, entities, event_time, joined, unit)
                held += joined.found.nbytes if joined.found is not None else 0
            lineage = _frame_lineage(features, {p.view.name: p.source.lineage for p in plans})
            if output is None and all(plan.found is not None for plan in plans):
                return _assembled(conn, entities, event_time, plans, keep_times, unit), lineage
            for plan in plans:
                if plan.found is not None:
                    numbers = pa.array(np.arange(plan.found.num_rows), type=pa.int64())
                    conn.register(plan.found_relation, plan.found.append_column(ROW, numbers))
            sql = _query(entities, event_time, plans, unit, keep_times=keep_times)
            if output is None:
                return conn.sql(sql).to_arrow_table(), lineage
            conn.execute(f"COPY ({sql}) TO {quote_literal(str(output))} (FORMAT parquet)")
            return None, lineage
        finally:
            conn.close()


@dataclass(frozen=True)
class _ViewPlan:
    index: int
    view: View
    names: list[str]
    source: Registered
    found: pa.Table | None = None  # this view's values, row i for entity row i, when joined in memory
    rows: tuple[int, int] | None = None  # entity and source rows (counted for a view with a TTL)
    source_file: Path | None = None  # the TTL join carries this Parquet file's row numbers, not values

    @property
    def double_entities(self) -> bool:
        """Whether the TTL join doubles the entity rows (when fewer), not the source rows."""
        return self.rows is None or self.rows[0] <= self.rows[1]

    @property
    def alias(self) -> str:
        return f"__mlprod_view_{self.index}"

    @property
    def found_relation(self) -> str:
        return f"{self.alias}_found"


def _in_memory(
    conn: Any,
    entities: Registered,
    event_time: str,
    plan: _ViewPlan,
    memory_limit: str | None,
    method: JoinMethod,
    held: int,
    keep_times: bool,
    unit: TimeUnit,
) -> _ViewPlan:
    """``plan`` with its values joined in memory when ``method`` and the view allow it (``held``: the
    bytes earlier views joined in memory keep; ``keep_times``: with the chosen rows' times)."""
    view = plan.view
    if method == "asof" or not isinstance(view, FeatureView) or view.timestamp is None:
        return plan
    join = JoinInput(
        entities,
        ROW,
        event_time,
        view,
        plan.names,
        plan.source,
        f"{TIME}{plan.index}",
        f"{CREATED}{plan.index}",
        unit,
    )
    if not codable(join):
        return plan
    if method == "auto":
        if not fits(conn, entities, len(plan.names), memory_limit, held):
            return plan
        unmeasured = unit is NANOSECONDS or (plan.rows is not None and small(*plan.rows))
        if view.ttl_delta is not None and not unmeasured:
            shape = measure(
                conn,
                entities=entities.relation,
                entity_keys=list(view.key_columns),
                event=event_time,
                source=plan.source.relation,
                nanoseconds=unit is NANOSECONDS,
            )
            if not in_memory_is_cheaper(shape, view.ttl_delta):
                return plan
    found = join_in_memory(conn, join, keep_times=keep_times)
    return plan if found is None else replace(plan, found=found)


def _row_counts(conn: Any, entities: Registered, source: Registered) -> tuple[int, int]:
    """The entity and source rows (counts a Parquet file keeps in its metadata)."""
    ((entity_rows, source_rows),) = conn.execute(
        f"SELECT (SELECT count(*) FROM {quote(entities.relation)}), "
        f"(SELECT count(*) FROM {quote(source.relation)})"
    ).fetchall()
    return int(entity_rows), int(source_rows)


def _by_ttl_query(view: View) -> bool:
    """Whether DuckDB joins this view by its TTL equi-join (a feature view with a time and a TTL)."""
    return isinstance(view, FeatureView) and view.timestamp is not None and view.ttl_delta is not None


def _assembled(
    conn: Any, entities: Registered, event_time: str, plans: list[_ViewPlan], keep_times: bool, unit: TimeUnit
) -> pa.Table:
    """The frame when every view was joined in memory: the entity rows, then each view's columns."""
    event = quote(event_time)
    cast = unit.cast(event, entities.types[event_time])
    frame = conn.sql(f"SELECT * REPLACE ({cast} AS {event}) FROM {entities.relation}").to_arrow_table()
    # The joins give row i the values of entity row number i. A scan keeps its order unless told not
    # to (preserve_insertion_order), so the rows are reordered only when they came back otherwise.
    numbers = frame.column(ROW).to_numpy()
    if np.any(numbers != np.arange(len(numbers))):
        frame = frame.take(np.argsort(numbers))
    frame = frame.drop_columns([ROW])
    for plan in plans:
        assert plan.found is not None
        names = [*plan.names, *([f"{TIME}{plan.index}", f"{CREATED}{plan.index}"] if keep_times else [])]
        for name in names:
            frame = frame.append_column(name, plan.found.column(name))
    return frame


def _register_entities(conn: Any, rows: Source, event_time: str) -> Registered:
    """The entity rows, numbered, as ``__mlprod_entity_input``; a Parquet file is scanned, not loaded."""
    relation = "__mlprod_entity_input"
    if isinstance(rows, str | Path):
        path = Path(rows)
        if not path.exists():
            raise InvalidInputError(f"entity rows: no file {path}")
        if ".csv" in "".join(path.suffixes).lower():
            rows = pacsv.read_csv(path)
        else:
            conn.execute(
                f"CREATE OR REPLACE TEMP VIEW {relation} AS SELECT * EXCLUDE (file_row_number), "
                f"file_row_number AS {ROW} "
                f"FROM read_parquet({quote_literal(str(path))}, file_row_number = true)"
            )
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, pa.Table):
        conn.register(relation, rows.append_column(ROW, pa.array(range(rows.num_rows), type=pa.int64())))
    elif not isinstance(rows, str | Path):
        raise InvalidInputError(
            f"entity rows must be a DataFrame, an Arrow table or a file, not {type(rows)}"
        )
    types = {c: k for c, k, *_ in conn.execute(f"DESCRIBE {relation}").fetchall()}
    internal = [name for name in types if name.startswith("__mlprod_") and name != ROW]
    if internal:
        raise InvalidInputError(f"entity rows may not have columns named __mlprod_*: {internal}")
    entities = Registered(relation, "the entity rows", types, {})
    entities.require([event_time], "event-time")
    entities.time_zone_aware(event_time)
    return entities


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


INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT")  # fmt: skip


def _type_family(kind: str) -> str:
    """Types that join with each other: every number is one family (a key with nulls is often a float)."""
    if kind in INTEGER_TYPES or kind.startswith("DECIMAL") or kind in ("FLOAT", "DOUBLE"):
        return "number"
    return kind


def _query(
    entities: Registered, event_time: str, plans: list[_ViewPlan], unit: TimeUnit, *, keep_times: bool = False
) -> str:
    """Each view adds its columns to the previous stage; the last stage is put back in input order."""
    stage = _STAGE
    ctes = [_first_stage(entities, event_time, unit)]
    for plan in plans:
        if isinstance(plan.view, AggregationView):
            ctes += _aggregation_ctes(plan, plan.view, stage, unit)
        else:
            ctes += _feature_view_ctes(plan, plan.view, stage, unit)
        stage = plan.alias
    internal = [EVENT, PROBE, ROW]
    if not keep_times:
        internal += [f"{prefix}{plan.index}" for plan in plans for prefix in (TIME, CREATED)]
    return f"WITH {', '.join(ctes)} SELECT * EXCLUDE ({', '.join(internal)}) FROM {stage} ORDER BY {ROW}"


def _first_stage(entities: Registered, event_time: str, unit: TimeUnit) -> str:
    """The entity rows with their event time in the join's unit, as ``_STAGE``."""
    event = unit.cast(quote(event_time), entities.types[event_time])
    return (
        f"{_STAGE} AS (SELECT * REPLACE ({event} AS {quote(event_time)}), {event} AS {EVENT}, "
        f"({unit.epoch}({event})::HUGEINT * {_SHIFT}) + {_PROBE_LOW} AS {PROBE} "
        f"FROM {entities.relation})"
    )


def _found_by_ttl_query(
    conn: Any, entities: Registered, event_time: str, plan: _ViewPlan, unit: TimeUnit
) -> _ViewPlan:
    """``plan`` (a feature view with a TTL) with its values found by DuckDB's TTL equi-join and put in
    place by entity row number here: the query gives only the rows that found a value, so the frame is
    then built like an in-memory join's, without joining every entity row back and sorting the frame
    (an eighth of the query's CPU time). From a plain Parquet file the query carries each row's number
    instead of its values (the join and the choice then move three narrow columns, not every feature),
    and the chosen rows' values are read afterwards, as the join in memory reads them."""
    view = plan.view
    assert isinstance(view, FeatureView)
    ((length,),) = conn.execute(f"SELECT count(*) FROM {entities.relation}").fetchall()
    file = _plain_file(view)
    if file is not None:
        plan = replace(plan, source_file=file)
    carried = plan.names if file is None else [_SOURCE_ROW]
    ctes = [_first_stage(entities, event_time, unit), *_feature_view_ctes(plan, view, _STAGE, unit)[:-1]]
    fields = [*carried, "__mlprod_ts", "__mlprod_created"]
    names = [*carried, f"{TIME}{plan.index}", f"{CREATED}{plan.index}"]
    listed = ", ".join(f"w.{quote(f)} AS {quote(n)}" for f, n in zip(fields, names, strict=True))
    sql = f"WITH {', '.join(ctes)} SELECT {ROW}, {listed} FROM {plan.alias}_chosen"
    chosen = conn.sql(sql).to_arrow_table()
    rows = np.asarray(chosen.column(ROW).to_numpy(), dtype=np.int64)
    if file is not None:
        source_rows = np.asarray(chosen.column(_SOURCE_ROW).to_numpy(), dtype=np.int64)
        order = np.argsort(source_rows, kind="stable")
        join = JoinInput(entities, ROW, event_time, view, plan.names, plan.source, "", "", unit)
        gathered = gather_rows(conn, join, source_rows[order], rows[order], int(length))
        chosen = chosen.drop_columns([_SOURCE_ROW])
    values = chosen.drop_columns([ROW]).combine_chunks()
    placed = Placed(values.schema, int(length))
    for at, column in enumerate(values.columns):
        placed.put_column(at, rows, column.chunk(0) if column.num_chunks else pa.array([], column.type))
    found = placed.table()
    if file is not None:
        found = pa.Table.from_arrays(
            [*gathered.columns, *found.columns], [*gathered.column_names, *found.column_names]
        )
    return replace(plan, found=found)


def _plain_file(view: FeatureView) -> Path | None:
    """The view's source when it is one Parquet file without derived columns (so that DuckDB numbers
    its rows as they are read back)."""
    source = view.source
    if not isinstance(source, str | Path) or view.derived_columns:
        return None
    path = Path(source)
    return path if path.suffix.lower() == ".parquet" and path.is_file() else None


def _chosen_outputs(index: int, names: list[str], value: str, time: str, created: str) -> list[str]:
    """The chosen values as outputs (``value`` formats a column name); the chosen feature and created
    times ride along as internal columns (the online store keeps them)."""
    outputs = {quote(name): value.format(quote(name)) for name in names}
    outputs |= {f"{TIME}{index}": time, f"{CREATED}{index}": created}
    return [f"{expression} AS {alias}" for alias, expression in outputs.items()]


def _feature_view_ctes(plan: _ViewPlan, view: FeatureView, stage: str, unit: TimeUnit) -> list[str]:
    if plan.found is not None:
        found = ", ".join(
            f"f.{quote(name)}" if name in plan.found.column_names else f"NULL AS {quote(name)}"
            for name in [*plan.names, f"{TIME}{plan.index}", f"{CREATED}{plan.index}"]
        )
        return [
            f"{plan.alias} AS (SELECT p.*, {found} FROM {stage} p "
            f"LEFT JOIN {plan.found_relation} f ON f.{ROW} = p.{ROW})"
        ]
    keys = view.key_columns
    src = plan.source.relation
    values = ", ".join(f"{quote(view.feature_columns[name])} AS {quote(name)}" for name in plan.names)
    if plan.source_file is not None:
        src = f"read_parquet({quote_literal(str(plan.source_file))}, file_row_number = true)"
        values = f"file_row_number AS {_SOURCE_ROW}"
    not_null = " AND ".join(f"{quote(column)} IS NOT NULL" for column in keys.values())
    key_select = ", ".join(f"{quote(column)} AS {quote(key)}" for key, column in keys.items())
    on = " AND ".join(f"p.{quote(k)} = s.{quote(k)}" for k in keys)
    if view.timestamp is None:
        return [
            f"{plan.alias} AS (SELECT p.*, {', '.join(f's.{quote(n)}' for n in plan.names)}, "
            f"CASE WHEN s.__mlprod_found THEN p.{EVENT} END AS {TIME}{plan.index}, "
            f"CASE WHEN s.__mlprod_found THEN p.{EVENT} END AS {CREATED}{plan.index} FROM {stage} p "
            f"LEFT JOIN (SELECT {key_select}, {values}, TRUE AS __mlprod_found FROM {src} "
            f"WHERE {not_null}) s ON {on})"
        ]
    types = plan.source.types
    ts = unit.cast(quote(view.timestamp), types[view.timestamp])
    created = f"coalesce({unit.cast(quote(view.created), types[view.created])}, {ts})" if view.created else ts
    prepared = f"{plan.alias}_source"
    # Without a created column the feature time alone orders rows (and rows tying on it are duplicates).
    order, probe = (
        (f"({unit.epoch}({ts})::HUGEINT * {_SHIFT}) + ({unit.epoch}({created})::HUGEINT + {_OFFSET})", PROBE)
        if view.created
        else (ts, EVENT)
    )
    ctes = [
        f"{prepared} AS (SELECT {key_select}, {ts} AS __mlprod_ts, {created} AS __mlprod_created, "
        f"{order} AS __mlprod_order, {values} FROM {src} "
        f"WHERE {not_null} AND {quote(view.timestamp)} IS NOT NULL)",
    ]
    if view.ttl_delta is not None:
        return [*ctes, *_within_ttl_ctes(plan, view, stage, prepared, unit)]
    asof = f"FROM {stage} p ASOF LEFT JOIN {prepared} s ON {on} AND p.{probe} >= s.__mlprod_order"
    if not (view.created and view.created_time_filter):
        outputs = _chosen_outputs(plan.index, plan.names, "s.{}", "s.__mlprod_ts", "s.__mlprod_created")
        return [*ctes, f"{plan.alias} AS (SELECT p.*, {', '.join(outputs)} {asof})"]
    # The latest value by feature time may have been written after the event (late or backfilled
    # data): for those rows only, look again among the values already written at the event time.
    latest = f"{plan.alias}_latest"
    names = ", ".join(f"s.{quote(n)}" for n in plan.names)
    fields = ", ".join(
        f"{quote(n)} := s.{quote(n)}" for n in ["__mlprod_ts", "__mlprod_created", *plan.names]
    )
    late_on = " AND ".join(f"l.{quote(k)} = s.{quote(k)}" for k in keys)
    is_late = f"l.__mlprod_late_created > l.{EVENT}"
    outputs = _chosen_outputs(
        plan.index,
        plan.names,
        f"CASE WHEN {is_late} THEN r.w.{{0}} ELSE l.{{0}} END",
        f"CASE WHEN {is_late} THEN r.w.__mlprod_ts ELSE l.__mlprod_late_ts END",
        f"CASE WHEN {is_late} THEN r.w.__mlprod_created ELSE l.__mlprod_late_created END",
    )
    dropped = ", ".join(["__mlprod_late_ts", "__mlprod_late_created", *(quote(n) for n in plan.names)])
    return [
        *ctes,
        f"{latest} AS (SELECT p.*, s.__mlprod_ts AS __mlprod_late_ts, "
        f"s.__mlprod_created AS __mlprod_late_created, {names} {asof})",
        f"{plan.alias}_rewritten AS (SELECT l.{ROW}, arg_max(struct_pack({fields}), s.__mlprod_order) AS w "
        f"FROM {latest} l JOIN {prepared} s ON {late_on} AND s.__mlprod_ts <= l.{EVENT} "
        f"AND s.__mlprod_created <= l.{EVENT} WHERE {is_late} GROUP BY l.{ROW})",
        f"{plan.alias} AS (SELECT l.* EXCLUDE ({dropped}), {', '.join(outputs)} FROM {latest} l "
        f"LEFT JOIN {plan.alias}_rewritten r ON r.{ROW} = l.{ROW})",
    ]


def _within_ttl_ctes(
    plan: _ViewPlan, view: FeatureView, stage: str, prepared: str, unit: TimeUnit
) -> list[str]:
    """With a TTL, only rows in ``[event - ttl, event]`` can win: an equi-join on the keys and a time
    bucket one TTL wide finds them without sorting the source, and the winner is the greatest (feature
    time, created time) among those known at the event. A source row in bucket ``b`` can serve events
    in buckets ``b`` and ``b + 1``: the smaller side is doubled to meet both (usually the entity rows,
    narrowed to their number, keys and time: then the wide source rows are hashed and probed once)."""
    assert view.ttl_delta is not None
    width, ttl = unit.ticks(view.ttl_delta), view.ttl_delta // timedelta(microseconds=1)
    origin = _BUCKET_ORIGIN * unit.per_microsecond // width * width
    widened = "::HUGEINT" if unit.per_microsecond > 1 else ""  # nanoseconds plus the origin pass BIGINT
    bucket = f"({unit.epoch}({{}}){widened} + {origin}) // {width}"
    keys = view.key_columns
    on = " AND ".join(f"p.{quote(k)} = s.{quote(k)}" for k in keys)
    known = f" AND s.__mlprod_created <= p.{EVENT}" if view.created and view.created_time_filter else ""
    carried = plan.names if plan.source_file is None else [_SOURCE_ROW]
    fields = ", ".join(f"{quote(n)} := s.{quote(n)}" for n in ["__mlprod_ts", "__mlprod_created", *carried])
    epoch = unit.epoch
    order = (
        f"({epoch}(s.__mlprod_ts)::HUGEINT * {_SHIFT}) + ({epoch}(s.__mlprod_created)::HUGEINT + {_OFFSET})"
    )
    if plan.source_file is not None:  # full ties go to the last row, as in the join in memory
        order = f"struct_pack(o := {order}, r := s.{_SOURCE_ROW})"
    outputs = [f"c.w.{quote(n)} AS {quote(n)}" for n in plan.names]
    outputs += [f"c.w.__mlprod_ts AS {TIME}{plan.index}", f"c.w.__mlprod_created AS {CREATED}{plan.index}"]
    doubled = f"{plan.alias}_buckets"
    shifts = "(VALUES (0), (1)) AS shifts(shift)"
    if plan.double_entities:
        listed = ", ".join(f"p.{quote(k)}" for k in keys)
        doubled_cte = (
            f"{doubled} AS (SELECT p.{ROW}, {listed}, p.{EVENT}, "
            f"{bucket.format(f'p.{EVENT}')} - shift AS __mlprod_bucket FROM {stage} p, {shifts})"
        )
        joined = (
            f"{doubled} p JOIN {prepared} s ON {on} AND p.__mlprod_bucket = {bucket.format('s.__mlprod_ts')}"
        )
    else:
        doubled_cte = (
            f"{doubled} AS (SELECT s.*, {bucket.format('s.__mlprod_ts')} + shift AS __mlprod_bucket "
            f"FROM {prepared} s, {shifts})"
        )
        joined = f"{stage} p JOIN {doubled} s ON {on} AND {bucket.format(f'p.{EVENT}')} = s.__mlprod_bucket"
    return [
        doubled_cte,
        f"{plan.alias}_chosen AS (SELECT p.{ROW}, arg_max(struct_pack({fields}), {order}) AS w "
        f"FROM {joined} "
        f"WHERE s.__mlprod_ts <= p.{EVENT} AND s.__mlprod_ts >= p.{EVENT} - to_microseconds({ttl}){known} "
        f"GROUP BY p.{ROW})",
        f"{plan.alias} AS (SELECT p.*, {', '.join(outputs)} FROM {stage} p "
        f"LEFT JOIN {plan.alias}_chosen c ON c.{ROW} = p.{ROW})",
    ]


def _aggregation_ctes(plan: _ViewPlan, view: AggregationView, stage: str, unit: TimeUnit) -> list[str]:
    keys = view.key_columns
    source_types = plan.source.types
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
        aggregate = f"{function}({argument}) OVER {window_names[a.window_delta]}"
        if a.function == "sum" and a.column is not None and source_types[a.column] in INTEGER_TYPES:
            aggregate = f"CAST({aggregate} AS BIGINT)"  # DuckDB sums integers to HUGEINT (decimal in Arrow)
        aggregates.append(f"{aggregate} AS {quote(a.output)}")
    window_clauses = ", ".join(
        f"{window_names[w]} AS (PARTITION BY {partition} ORDER BY {unit.epoch}(__mlprod_time) "
        f"RANGE BETWEEN {unit.ticks(w) - 1} PRECEDING AND CURRENT ROW)"
        for w in windows
    )
    extra_probe = (", " + probe_values) if probe_values else ""
    source_time = unit.cast(quote(view.timestamp), source_types[view.timestamp])
    extra_source = (", " + source_values) if source_values else ""
    return [
        f"{plan.alias}_stream AS ("
        f"SELECT {ROW}, {', '.join(quote(k) for k in keys)}, {EVENT} AS __mlprod_time, "
        f"NULL::INTEGER AS __mlprod_is_row{extra_probe} FROM {stage} "
        f"UNION ALL SELECT NULL, {key_select}, {source_time}, 1{extra_source} "
        f"FROM {src} WHERE {not_null} AND {quote(view.timestamp)} IS NOT NULL)",
        f"{plan.alias}_values AS (SELECT {ROW}, {', '.join(aggregates)} FROM {plan.alias}_stream "
        f"WINDOW {window_clauses} QUALIFY {ROW} IS NOT NULL)",
        f"{plan.alias} AS (SELECT p.*, {', '.join(f'a.{quote(n)}' for n in plan.names)}, "
        f"p.{EVENT} AS {TIME}{plan.index}, p.{EVENT} AS {CREATED}{plan.index} FROM {stage} p "
        f"LEFT JOIN {plan.alias}_values a ON a.{ROW} = p.{ROW})",
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
