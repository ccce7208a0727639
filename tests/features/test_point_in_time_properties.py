"""Property tests: ``training_frame``, with either join method, agrees with the brute-force reference.

The inputs are random.
Times sit on a coarse minute grid so that ties are frequent: event time equal to feature time, equal
feature times with different created times, expiry exactly at the TTL, rows exactly one window back.
Keys are int, string or composite, with nulls on both sides and keys missing from the source. Rows
that tie fully (same key, ts and created) but differ in value are left out of the compared inputs:
the contract does not say which one wins (exact duplicate rows are kept, any of them is right).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.errors import InvalidArgument

from mlprod.errors import InvalidInputError
from tests.features.reference import RefAgg, RefAggView, RefView, py, reference_training_frame

SETTINGS = settings(
    max_examples=90, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

BASE = pd.Timestamp("2024-01-01 00:00", tz="UTC")
KEY_SETS: list[tuple[str, ...]] = [("user",), ("shop",), ("user", "shop")]
ENTITY_USERS = [1, 2, 3, 4, None]  # 4 never appears in a source
SOURCE_USERS = [1, 2, 3, None]
ENTITY_SHOPS = ["a", "b", "c", None]  # "c" never appears in a source
SOURCE_SHOPS = ["a", "b", None]
LABELS = ["p", "q", "r", None]
# (what the implementation is given, what the reference is given)
TTLS: list[tuple[str | timedelta | None, timedelta | None]] = [
    (None, None),
    ("1m", timedelta(minutes=1)),
    ("3m", timedelta(minutes=3)),
    (timedelta(minutes=2), timedelta(minutes=2)),
    ("5m", timedelta(minutes=5)),
    ("1h", timedelta(hours=1)),
]
CREATED_OFFSETS = [-1, -1, 0, 2, 6]  # created - ts (before ts is allowed: coalesce(created, ts) decides)
WINDOWS: list[tuple[str | timedelta, str, timedelta]] = [
    ("5m", "5m", timedelta(minutes=5)),
    ("1h", "1h", timedelta(hours=1)),
    (timedelta(minutes=3), "3m", timedelta(minutes=3)),
]


def features_api() -> Any:
    """``mlprod.features``, imported when a test runs so this module collects before it exists."""
    from mlprod import features

    return features


# ----------------------------------------------------------------------------------------------------
# Generated data


def minute(value: int | None) -> pd.Timestamp | None:
    return None if value is None else BASE + timedelta(minutes=value)


def time_column(values: Sequence[int | None]) -> pd.Series:
    return pd.Series([minute(v) for v in values], dtype="datetime64[us, UTC]")


def maybe_null(strategy: st.SearchStrategy[Any], null_one_in: int = 8) -> st.SearchStrategy[Any]:
    """``strategy`` with a null about one draw in ``null_one_in``."""
    return st.tuples(st.integers(1, null_one_in), strategy).map(
        lambda pair: None if pair[0] == 1 else pair[1]
    )


def entity_frame(
    draw: Callable[..., Any],
    *,
    anchors: Sequence[tuple[Any, Any, int | None]] = (),
    offsets: Sequence[int] = (0, 1),
    max_size: int = 10,
) -> pd.DataFrame:
    """Entity rows. About half copy the key of a source row (``anchors``: user, shop, minute) and sit
    exactly ``offsets`` minutes after its feature or created time: ties, and expiry exactly at a TTL
    or window bound. The others are free: any key (absent ones too), any minute, nulls."""
    free_time = maybe_null(st.integers(0, 14))
    row = st.tuples(st.sampled_from(ENTITY_USERS), st.sampled_from(ENTITY_SHOPS), free_time)
    if anchors:
        anchored = st.tuples(st.sampled_from(list(anchors)), st.sampled_from(offsets), free_time).map(
            lambda a: (a[0][0], a[0][1], a[2] if a[0][2] is None else a[0][2] + a[1])
        )
        row = st.one_of(row, anchored)
    return entity_table(draw(st.lists(row, max_size=max_size)))


def entity_table(rows: Sequence[tuple[int | None, str | None, int | None]]) -> pd.DataFrame:
    """Entity rows from ``(user, shop, event minute)`` tuples."""
    return pd.DataFrame(
        {
            "row_id": pd.Series(range(len(rows)), dtype="int64"),
            "user": pd.Series([r[0] for r in rows], dtype="Int64"),
            "shop": pd.Series([r[1] for r in rows], dtype="str"),
            "event_time": time_column([r[2] for r in rows]),
        }
    )


def key_frame(keys: Sequence[tuple[Any, Any]], key_columns: dict[str, str]) -> dict[str, pd.Series]:
    """Source key columns (both user and shop, renamed as ``key_columns`` says)."""
    return {
        key_columns["user"]: pd.Series([k[0] for k in keys], dtype="Int64"),
        key_columns["shop"]: pd.Series([k[1] for k in keys], dtype="str"),
    }


def value_column(values: Sequence[int | None], kind: str) -> pd.Series:
    if kind == "Int64":
        return pd.Series(list(values), dtype="Int64")
    return pd.Series([None if v is None else v / 2 for v in values], dtype="float64")  # NaN for null


@dataclass
class ViewCase:
    """One generated FeatureView: the reference description and the implementation's arguments."""

    ref: RefView
    ttl_given: str | timedelta | None
    features_given: dict[str, str] | list[str]
    key_columns: dict[str, str] = field(default_factory=lambda: {"user": "user", "shop": "shop"})

    def build(self, api: Any) -> Any:
        entity = api.Entity(f"{self.ref.name}_entity", list(self.ref.keys))
        return api.FeatureView(
            self.ref.name,
            entity,
            self.ref.source,
            self.features_given,
            timestamp=self.ref.timestamp,
            created=self.ref.created,
            ttl=self.ttl_given,
            created_time_filter=self.ref.created_time_filter,
            source_keys=dict(self.ref.source_keys) or None,
        )


@dataclass
class AggCase:
    ref: RefAggView
    aggregations: list[tuple[str, str | None, str | timedelta, str | None]] = field(default_factory=list)
    key_columns: dict[str, str] = field(default_factory=lambda: {"user": "user", "shop": "shop"})

    def build(self, api: Any) -> Any:
        entity = api.Entity(f"{self.ref.name}_entity", list(self.ref.keys))
        aggregations = [api.Aggregation(f, c, w, name=n) for f, c, w, n in self.aggregations]
        return api.AggregationView(
            self.ref.name,
            entity,
            self.ref.source,
            timestamp=self.ref.timestamp,
            aggregations=aggregations,
            source_keys=dict(self.ref.source_keys) or None,
        )


def key_setup(
    draw: Callable[..., Any], prefix: str, key_sets: Sequence[tuple[str, ...]] = KEY_SETS
) -> tuple[tuple[str, ...], dict[str, str]]:
    keys = draw(st.sampled_from(key_sets))
    renamed = draw(st.booleans())
    columns = {k: (f"{prefix}_{k}_id" if renamed else k) for k in ("user", "shop")}
    return keys, columns


@st.composite
def feature_views(
    draw: Callable[..., Any],
    prefix: str = "a",
    *,
    static: bool = False,
    last_minute: int = 12,
    key_sets: Sequence[tuple[str, ...]] = KEY_SETS,
) -> ViewCase:
    """A FeatureView named ``prefix`` with a random source: ties, late rows, nulls everywhere. Feature
    times fall in minutes 0..``last_minute`` (a small value makes nearly every row tie on ts)."""
    keys, key_columns = key_setup(draw, prefix, key_sets)
    has_created = False if static else draw(st.booleans()) or last_minute < 12
    created_filter = draw(st.booleans())
    ttl_given, ttl = (None, None) if static else draw(st.sampled_from(TTLS))
    amount_kind = draw(st.sampled_from(["Int64", "float64"]))
    # Each row: key, ts, created offset from ts (None = null created), amount, label, tie-with index.
    row = st.tuples(
        st.sampled_from(SOURCE_USERS),
        st.sampled_from(SOURCE_SHOPS),
        maybe_null(st.integers(0, last_minute), 10),
        maybe_null(st.sampled_from(CREATED_OFFSETS if last_minute >= 12 else [-2, -1, -1, 1]), 3),
        maybe_null(st.integers(0, 9), 5),
        st.sampled_from(LABELS),
        maybe_null(st.integers(0, 100), 3),  # mostly: copy key and ts of an earlier row (a tie on ts)
    )
    raw = draw(st.lists(row, max_size=4 if static else 14))
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for user, shop, ts, offset, amount, label, tie in raw:
        if tie is not None and rows and not static:
            twin = rows[tie % len(rows)]
            user, shop, ts = twin["user"], twin["shop"], twin["ts"]
        created = None if ts is None or offset is None else ts + offset
        key = tuple({"user": user, "shop": shop}[k] for k in keys)
        values = (amount, label)
        if static:
            if key in seen:  # unique keys in a static source (a null part included)
                continue
            seen[key] = values
        elif ts is not None and None not in key:
            effective = created if has_created and created is not None else ts
            full_tie = (key, ts, effective)
            if seen.setdefault(full_tie, values) != values:
                continue  # same key, ts and created with another value: unspecified winner, left out
        rows.append(
            {"user": user, "shop": shop, "ts": ts, "created": created, "amount": amount, "label": label}
        )
    if draw(st.booleans()) and rows and not static:  # exact duplicate rows are fine (any of them wins)
        rows.append(dict(rows[draw(st.integers(0, len(rows) - 1))]))
    columns: dict[str, pd.Series] = key_frame([(r["user"], r["shop"]) for r in rows], key_columns)
    if not static:
        columns["feature_ts"] = time_column([r["ts"] for r in rows])
        if has_created:
            columns["created"] = time_column([r["created"] for r in rows])
    amount_column, label_column = (
        (f"{prefix}_amount", f"{prefix}_label") if prefix != "a" else ("amount", "label")
    )
    columns[amount_column] = value_column([r["amount"] for r in rows], amount_kind)
    columns[label_column] = pd.Series([r["label"] for r in rows], dtype="str")
    source = pd.DataFrame(columns)
    if prefix == "a":  # a mapping renames the columns ...
        features_given: dict[str, str] | list[str] = {"a_amount": "amount", "a_label": "label"}
    else:  # ... a list keeps the names
        features_given = [amount_column, label_column]
    mapping = features_given if isinstance(features_given, dict) else {c: c for c in features_given}
    ref = RefView(
        name=f"{prefix}_view",
        keys=keys,
        source=source,
        features=mapping,
        timestamp=None if static else "feature_ts",
        created="created" if has_created else None,
        ttl=ttl,
        created_time_filter=created_filter,
        source_keys={k: key_columns[k] for k in keys if key_columns[k] != k},
    )
    return ViewCase(ref, ttl_given, features_given, key_columns)


@st.composite
def aggregation_views(draw: Callable[..., Any], prefix: str = "g") -> AggCase:
    keys, key_columns = key_setup(draw, prefix)
    amount_kind = draw(st.sampled_from(["Int64", "float64"]))
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SOURCE_USERS),
                st.sampled_from(SOURCE_SHOPS),
                maybe_null(st.integers(0, 14), 10),
                maybe_null(st.integers(0, 9), 4),
            ),
            max_size=14,
        )
    )
    columns = key_frame([(u, s) for u, s, _, _ in raw], key_columns)
    columns["feature_ts"] = time_column([ts for _, _, ts, _ in raw])
    columns["amount"] = value_column([a for _, _, _, a in raw], amount_kind)
    windows = draw(st.lists(st.sampled_from(WINDOWS), min_size=1, max_size=2, unique_by=lambda w: w[1]))
    aggregations: list[tuple[str, str | None, str | timedelta, str | None]] = []
    refs: list[RefAgg] = []
    for window, label, delta in windows:
        for function, column in [("count", None), ("count", "amount"), ("sum", "amount"), ("mean", "amount"),
                                 ("min", "amount"), ("max", "amount")]:  # fmt: skip
            explicit = (
                f"{prefix}_{function}_{column or 'n'}_{label}" if isinstance(window, timedelta) else None
            )
            aggregations.append((function, column, window, explicit))
            default = f"{column or 'rows'}_{function}_{label}"  # the contract's default name
            refs.append(RefAgg(explicit or default, function, column, delta))
    ref = RefAggView(
        name=f"{prefix}_view",
        keys=keys,
        source=pd.DataFrame(columns),
        timestamp="feature_ts",
        aggregations=refs,
        source_keys={k: key_columns[k] for k in keys if key_columns[k] != k},
    )
    return AggCase(ref, aggregations, key_columns)


Anchor = tuple[Any, Any, int | None]


def anchors_of(cases: Sequence[ViewCase | AggCase]) -> list[Anchor]:
    """``(user, shop, minute)`` of every source row, for its feature time and its created time."""
    anchors: set[Anchor] = set()
    for case in cases:
        source = case.ref.source
        keys = list(zip(source[case.key_columns["user"]], source[case.key_columns["shop"]], strict=True))
        times = [source[c] for c in ("feature_ts", "created") if c in source.columns]
        for i, (user, shop) in enumerate(keys):
            for column in times or [pd.Series([None] * len(source), dtype=object)]:
                stamp = py(column.iloc[i])
                anchors.add(
                    (py(user), py(shop), None if stamp is None else (stamp - BASE) // timedelta(minutes=1))
                )
    return sorted(anchors, key=repr)


@st.composite
def scenarios(
    draw: Callable[..., Any], *views: st.SearchStrategy[ViewCase | AggCase], max_rows: int = 10
) -> tuple[Any, ...]:
    """``(entity rows, *view cases)``: the views are drawn first, the event times anchored on them."""
    cases = [draw(view) for view in views]
    offsets = {0, 1}  # ties with a feature or created time, and just after
    for case in cases:  # ... and exactly at the TTL / window bound
        if isinstance(case.ref, RefView) and case.ref.ttl is not None:
            offsets.add(case.ref.ttl // timedelta(minutes=1))
        if isinstance(case.ref, RefAggView):
            offsets.update(agg.window // timedelta(minutes=1) for agg in case.ref.aggregations)
    rows = entity_frame(draw, anchors=anchors_of(cases), offsets=sorted(offsets), max_size=max_rows)
    return (rows, *cases)


# ----------------------------------------------------------------------------------------------------
# Running and comparing


def run(
    rows: pd.DataFrame, cases: Sequence[ViewCase | AggCase], *, as_arrow: bool = False, method: str = "auto"
) -> pd.DataFrame:
    api = features_api()
    given: pa.Table | pd.DataFrame = pa.Table.from_pandas(rows, preserve_index=False) if as_arrow else rows
    views = [case.build(api) for case in cases]
    result = api.training_frame(given, views, event_time="event_time", method=method)
    assert isinstance(result, pa.Table), (
        f"training_frame returned {type(result).__name__}, not a pyarrow Table"
    )
    return result.to_pandas()


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """One comparable dtype per column kind: float64 (NaN) for numbers, datetime64[us] (tz kept) for
    times, object (None) for the rest; a column without any value becomes all-None object."""
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name].reset_index(drop=True)
        if (
            pd.api.types.is_numeric_dtype(column)
            and not pd.api.types.is_bool_dtype(column)
            and column.notna().any()
        ):
            out[name] = pd.Series(column.to_numpy(dtype="float64", na_value=np.nan))
            continue
        values = [py(v) for v in column.astype(object).tolist()]
        present = [v for v in values if v is not None]
        if not present:
            out[name] = pd.Series([None] * len(values), dtype=object)
        elif pd.api.types.is_datetime64_any_dtype(column):
            tz = getattr(column.dtype, "tz", None)
            out[name] = column.astype(f"datetime64[us, {tz}]" if tz is not None else "datetime64[us]")
        elif all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in present):
            out[name] = pd.Series([float("nan") if v is None else float(v) for v in values], dtype="float64")
        else:
            out[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def say(text: Callable[[], str]) -> None:
    """``text()`` printed with the failing example (hypothesis ``note``), right away outside ``@given``."""
    try:
        context = current_build_context()
    except InvalidArgument:
        print(text())
        return
    if context.is_final:  # only the replay of the failing example reports: skip formatting otherwise
        note(text())


def show(title: str, frame: pd.DataFrame) -> None:
    say(lambda: f"{title}:\n{frame.to_string()}")


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    show("expected (reference)", expected)
    show("actual (training_frame)", actual)
    assert len(actual) == len(expected), "row count changed"
    assert list(actual.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        normalise(actual), normalise(expected), check_exact=False, rtol=1e-9, atol=1e-9
    )


def show_inputs(rows: pd.DataFrame, cases: Sequence[ViewCase | AggCase]) -> None:
    show("entity rows", rows)
    for case in cases:
        ref = case.ref
        extra = ""
        if isinstance(ref, RefView):
            extra = f" ttl={ref.ttl} created={ref.created} created_time_filter={ref.created_time_filter}"
        say(
            lambda ref=ref, extra=extra: (
                f"view {ref.name}: keys={list(ref.keys)} source_keys={dict(ref.source_keys)}{extra}"
            )
        )
        show(f"source of {ref.name}", ref.source)


def check(
    rows: pd.DataFrame, cases: Sequence[ViewCase | AggCase], *, as_arrow: bool = False, method: str = "auto"
) -> None:
    show_inputs(rows, cases)
    expected = reference_training_frame(rows, [case.ref for case in cases])
    assert_same(run(rows, cases, as_arrow=as_arrow, method=method), expected)


def strip_tz(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].dt.tz_localize(None)
    return out


def with_source(case: ViewCase | AggCase, source: pd.DataFrame) -> ViewCase | AggCase:
    """The same view over another source."""
    return replace(case, ref=replace(case.ref, source=source))


def naive_case(case: ViewCase | AggCase) -> ViewCase | AggCase:
    return with_source(case, strip_tz(case.ref.source))


# ----------------------------------------------------------------------------------------------------
# Hand-written examples, always run first (``@example``): the boundaries the contract spells out


def hand_view(
    rows: Sequence[tuple[int, int, int | None, int | None]],
    *,
    ttl: tuple[str | None, timedelta | None] = (None, None),
    created_time_filter: bool = True,
) -> ViewCase:
    """A view keyed on user from ``(user, ts minute, created minute, amount)`` rows (label = str(amount))."""
    source = pd.DataFrame(
        {
            "user": pd.Series([r[0] for r in rows], dtype="Int64"),
            "shop": pd.Series(["a"] * len(rows), dtype="str"),
            "feature_ts": time_column([r[1] for r in rows]),
            "created": time_column([r[2] for r in rows]),
            "amount": pd.Series([r[3] for r in rows], dtype="Int64"),
            "label": pd.Series([None if r[3] is None else str(r[3]) for r in rows], dtype="str"),
        }
    )
    features = {"a_amount": "amount", "a_label": "label"}
    ref = RefView("a_view", ("user",), source, features, "feature_ts", "created", ttl[1], created_time_filter)
    return ViewCase(ref, ttl[0], features)


def hand_aggregation(rows: Sequence[tuple[int, int, int | None]]) -> AggCase:
    """Sum and counts of ``(user, ts minute, amount)`` rows over 5 minutes and 1 hour."""
    source = pd.DataFrame(
        {
            "user": pd.Series([r[0] for r in rows], dtype="Int64"),
            "shop": pd.Series(["a"] * len(rows), dtype="str"),
            "feature_ts": time_column([r[1] for r in rows]),
            "amount": pd.Series([r[2] for r in rows], dtype="Int64"),
        }
    )
    given: list[tuple[str, str | None, str | timedelta, str | None]] = []
    refs: list[RefAgg] = []
    for window, label, delta in WINDOWS[:2]:
        for function, column in [("count", None), ("count", "amount"), ("sum", "amount"), ("mean", "amount")]:
            given.append((function, column, window, None))
            refs.append(RefAgg(f"{column or 'rows'}_{function}_{label}", function, column, delta))
    return AggCase(RefAggView("g_view", ("user",), source, "feature_ts", refs), given)


# user 1: null created vs created one minute before ts (coalesce: the null one wins);
# user 2: created after ts is hidden at ts with the filter, then wins the tie.
TIES = (
    entity_table([(1, "a", 5), (2, "a", 1), (2, "a", 2), (3, "a", 1)]),
    hand_view(
        [(1, 1, None, 10), (1, 1, 0, 20), (2, 1, 2, 30), (2, 1, None, 40), (3, 1, 1, None), (3, 0, 0, 1)]
    ),
)
# Expiry exactly at the TTL (kept) and one minute later (null), for 5 minutes and 1 hour.
TTL_BOUNDS = [
    (
        entity_table([(1, "a", 5), (1, "a", 6), (1, "a", 4)]),
        hand_view([(1, 0, None, 7)], ttl=("5m", TTLS[4][1])),
    ),
    (entity_table([(1, "a", 60), (1, "a", 61)]), hand_view([(1, 0, 0, 7)], ttl=("1h", TTLS[5][1]))),
]
# Rows exactly one window back are out, rows at the event time are in.
WINDOW_BOUNDS = (
    entity_table(
        [(1, "a", 4), (1, "a", 5), (1, "a", 6), (1, "a", 11), (1, "a", 60), (1, "a", 61), (2, "a", 5)]
    ),
    hand_aggregation([(1, 0, 1), (1, 5, 10), (1, 6, 100), (1, 7, None), (2, 9, 3)]),
)


# ----------------------------------------------------------------------------------------------------
# Properties


METHODS = st.sampled_from(["in_memory", "asof"])


@settings(SETTINGS, max_examples=150)
@given(scenario=scenarios(feature_views()), as_arrow=st.booleans(), method=METHODS)
@example(scenario=TTL_BOUNDS[0], as_arrow=False, method="in_memory")
@example(scenario=TTL_BOUNDS[1], as_arrow=True, method="in_memory")
@example(scenario=TTL_BOUNDS[0], as_arrow=False, method="asof")
@example(scenario=TTL_BOUNDS[1], as_arrow=True, method="asof")
def test_one_feature_view_matches_reference(scenario: tuple[Any, ...], as_arrow: bool, method: str) -> None:
    """Both join methods: sorting in memory and DuckDB's ASOF JOIN."""
    rows, view = scenario
    check(rows, [view], as_arrow=as_arrow, method=method)


@settings(SETTINGS, max_examples=150)
@given(scenario=scenarios(feature_views()), naive=st.booleans())
@example(scenario=TIES, naive=False)
def test_a_parquet_file_source_matches_reference(scenario: tuple[Any, ...], naive: bool) -> None:
    """The source as a Parquet file, joined in memory: its feature values are taken from the file's row
    groups with pyarrow."""
    rows, view = scenario
    if naive:
        rows, view = strip_tz(rows), naive_case(view)
    show_inputs(rows, [view])
    expected = reference_training_frame(rows, [view.ref])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "source.parquet"
        table = pa.Table.from_pandas(view.ref.source, preserve_index=False)
        # Strings as DuckDB types them (pandas writes large strings): the values are then taken with pyarrow
        strings = [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
        pq.write_table(table.cast(pa.schema(strings)), path)
        in_file = replace(view, ref=replace(view.ref, source=path))
        assert_same(run(rows, [in_file], method="in_memory"), expected)


@settings(SETTINGS, max_examples=60)
@given(scenario=scenarios(feature_views(last_minute=1, key_sets=[("user",)])), method=METHODS)
@example(scenario=TIES, method="in_memory")
@example(scenario=TIES, method="asof")
def test_ties_on_feature_time_are_broken_by_created(scenario: tuple[Any, ...], method: str) -> None:
    """Feature times in minutes 0..1 only: the winner is nearly always decided by coalesce(created, ts)."""
    rows, view = scenario
    check(rows, [view], method=method)


@settings(SETTINGS, max_examples=70)
@given(scenario=scenarios(aggregation_views()))
@example(scenario=WINDOW_BOUNDS)
def test_aggregation_view_matches_reference(scenario: tuple[Any, ...]) -> None:
    rows, view = scenario
    check(rows, [view])


@settings(SETTINGS, max_examples=70)
@given(scenario=scenarios(feature_views("a"), feature_views("b"), aggregation_views()), method=METHODS)
def test_two_views_and_aggregations_in_one_call(scenario: tuple[Any, ...], method: str) -> None:
    """With ``in_memory`` the feature views are joined in memory and the aggregation in DuckDB."""
    rows, first, second, aggregated = scenario
    check(rows, [first, second, aggregated], method=method)


@settings(SETTINGS, max_examples=50)
@given(scenario=scenarios(feature_views("s", static=True), feature_views("a")))
def test_static_view_next_to_a_timed_view(scenario: tuple[Any, ...]) -> None:
    """A static view is a plain left join on the key; read here as ignoring the event time altogether,
    so a row with a null event time still gets its static features (the reference's reading)."""
    rows, static, timed = scenario
    check(rows, [static, timed])


@settings(SETTINGS, max_examples=40)
@given(
    scenario=scenarios(feature_views(), aggregation_views(), max_rows=14),
    repeat=st.lists(st.integers(0, 13), max_size=6),
    extra=st.lists(st.tuples(st.integers(0, 13), st.integers(0, 9)), max_size=6),
)
def test_row_count_and_entity_columns_never_change(
    scenario: tuple[Any, ...], repeat: list[int], extra: list[tuple[int, int]]
) -> None:
    """Repeated entity rows and fully tied source rows with different values: still one output row each."""
    rows, view, aggregated = scenario
    if len(rows):
        rows = pd.concat([rows, rows.iloc[[i % len(rows) for i in repeat]]], ignore_index=True)
    source = view.ref.source
    if len(source) and extra:  # full ties (key, ts, created) with different values
        twins = source.iloc[[i % len(source) for i, _ in extra]].copy()
        twins[view.ref.features["a_amount"]] = value_column([v for _, v in extra], "Int64").astype(
            source[view.ref.features["a_amount"]].dtype
        )
        source = pd.concat([source, twins], ignore_index=True)
    tied = with_source(view, source)
    show_inputs(rows, [tied, aggregated])
    out = run(rows, [tied, aggregated])
    assert len(out) == len(rows)
    assert list(out.columns) == [
        *rows.columns,
        "a_amount",
        "a_label",
        *[a.name for a in aggregated.ref.aggregations],
    ]
    pd.testing.assert_frame_equal(normalise(out[list(rows.columns)]), normalise(rows))


@settings(SETTINGS, max_examples=25)
@given(scenario=scenarios(feature_views(), aggregation_views()))
def test_all_naive_inputs_equal_the_aware_result(scenario: tuple[Any, ...]) -> None:
    rows, view, aggregated = scenario
    naive_rows, naive_cases = strip_tz(rows), [naive_case(view), naive_case(aggregated)]
    show_inputs(naive_rows, naive_cases)
    naive = run(naive_rows, naive_cases)
    aware = run(rows, [view, aggregated])
    pd.testing.assert_frame_equal(normalise(strip_tz(naive)), normalise(strip_tz(aware)), check_exact=False)
    expected = reference_training_frame(naive_rows, [case.ref for case in naive_cases])
    assert_same(strip_tz(naive), strip_tz(expected))  # the time zone itself: the test below


def test_output_timestamps_are_utc_aware_for_naive_inputs() -> None:
    """Contract: "all-naive inputs are taken as UTC. Output timestamps are UTC-aware." """
    rows = pd.DataFrame({"user": pd.Series([1, 1], dtype="Int64"), "event_time": time_column([5, 0])})
    source = pd.DataFrame(
        {"user": pd.Series([1], dtype="Int64"), "feature_ts": time_column([1]), "amount": pd.Series([5])}
    )
    api = features_api()
    view = api.FeatureView(
        "v", api.Entity("e", ["user"]), strip_tz(source), ["amount"], timestamp="feature_ts"
    )
    out = api.training_frame(strip_tz(rows), [view])
    assert out.column("amount").to_pylist() == [5, None]
    event_type = out.schema.field("event_time").type
    assert pa.types.is_timestamp(event_type), out.schema
    assert event_type.tz in ("UTC", "+00:00", "Etc/UTC"), out.schema


@settings(SETTINGS, max_examples=30)
@given(
    scenario=scenarios(st.one_of(feature_views(), aggregation_views())),
    naive_side=st.sampled_from(["entity rows", "source"]),
)
def test_mixing_naive_and_aware_times_is_refused(scenario: tuple[Any, ...], naive_side: str) -> None:
    rows, view = scenario
    if naive_side == "entity rows":
        rows = strip_tz(rows)
    else:
        view = naive_case(view)
    show_inputs(rows, [view])
    with pytest.raises(InvalidInputError) as raised:
        run(rows, [view])
    message = str(raised.value)
    assert "event_time" in message
    assert "feature_ts" in message


def test_empty_entity_rows_and_empty_sources() -> None:
    """The smallest cases, spelled out: no rows in, no rows out; an empty source gives nulls and zeros."""
    rows = pd.DataFrame(
        {
            "row_id": pd.Series([0, 1], dtype="int64"),
            "user": pd.Series([1, None], dtype="Int64"),
            "shop": pd.Series(["a", "b"], dtype="str"),
            "event_time": time_column([3, 4]),
        }
    )
    source = pd.DataFrame(
        {
            "user": pd.Series([1], dtype="Int64"),
            "shop": pd.Series(["a"], dtype="str"),
            "feature_ts": time_column([1]),
            "amount": pd.Series([5], dtype="Int64"),
            "label": pd.Series(["p"], dtype="str"),
        }
    )
    view = ViewCase(
        RefView("a_view", ["user"], source, {"a_amount": "amount", "a_label": "label"}, "feature_ts"),
        None,
        {"a_amount": "amount", "a_label": "label"},
    )
    aggregated = AggCase(
        RefAggView(
            "g_view", ["user"], source, "feature_ts",
            [RefAgg("rows_count_1h", "count", None, timedelta(hours=1)),
             RefAgg("amount_mean_1h", "mean", "amount", timedelta(hours=1))],
        ),
        [("count", None, "1h", None), ("mean", "amount", "1h", None)],
    )  # fmt: skip
    for entity, src in [(rows.iloc[:0], source), (rows, source.iloc[:0]), (rows.iloc[:0], source.iloc[:0])]:
        check(entity.reset_index(drop=True), [with_source(view, src), with_source(aggregated, src)])
