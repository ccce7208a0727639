"""The prediction service behind every HTTP route: route, fill features, predict, log, mirror to shadows.

Both the native API and the Open Inference Protocol call ``PredictionService.predict``; neither
touches the registry, the metadata database or pandas per request. Routing plans are kept in memory
and re-read in the background every ``refresh_seconds`` (and at once when changed through this
server's admin API).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from mlprod.errors import InvalidInputError, MlprodError, NotFoundError, PayloadTooLargeError
from mlprod.features.catalog import load_catalog, open_online_store
from mlprod.features.online_store import OnlineStore
from mlprod.models import ModelVersion, Registry, parse_ref
from mlprod.serve.access_log import note_prediction
from mlprod.serve.micro_batch import MicroBatcher
from mlprod.serve.model_pool import ModelPool, Served
from mlprod.serve.online_inputs import OnlineInputs
from mlprod.serve.prediction_log import PredictionLogWriter
from mlprod.serve.route_store import RouteChange, RouteStore
from mlprod.serve.routing import CHAMPION, DIRECT, SHADOW, RoutePlan
from mlprod.workspace import Workspace

log = logging.getLogger(__name__)
ShadowObserver = Callable[[str, int | None, Exception | None, float], None]
"""Called after each shadow copy: model, version (None if it failed before loading), error, seconds."""
ShadowDropObserver = Callable[[str, int | None], None]
"""Called for each shadow copy dropped: model, version (None for an alias not loaded)."""
INLINE_ROWS = 64  # larger requests are predicted on a worker thread, off the event loop
MAX_PENDING_SHADOWS = 256  # past this, shadow copies are dropped (and counted) rather than queued


@dataclass(frozen=True)
class ServeOptions:
    """How a server loads, batches and refreshes (``[serve]`` in mlprod.toml)."""

    model_format: str = "auto"
    memory_budget_bytes: int = 2048 * 1024**2
    refresh_seconds: float = 2.0
    micro_batch_max_wait_ms: float = 0.0
    micro_batch_max_rows: int = 256
    max_rows_per_request: int = 10_000
    online_features: bool = True

    @classmethod
    def from_config(cls, workspace: Workspace, **overrides: Any) -> ServeOptions:
        section = workspace.config.serve
        options = cls(
            model_format=section.model_format,
            memory_budget_bytes=section.memory_budget_mb * 1024**2,
            refresh_seconds=section.refresh_seconds,
            micro_batch_max_wait_ms=section.micro_batch_max_wait_ms,
            micro_batch_max_rows=section.micro_batch_max_rows,
            max_rows_per_request=section.max_rows_per_request,
        )
        return cls(**{**options.__dict__, **overrides})


@dataclass(frozen=True)
class Routed:
    """Where a request goes: the reference that answers, the route's name, the plan followed."""

    ref: str
    route: str
    plan: RoutePlan | None


@dataclass(frozen=True)
class Prediction:
    """One answered request."""

    model: str
    version: int
    route: str
    request_id: str
    predictions: list[float]
    feature_misses: list[list[str]] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)


class PredictionService:
    """Answers prediction requests for the models of one workspace."""

    def __init__(
        self, workspace: Workspace, options: ServeOptions, prediction_log: PredictionLogWriter
    ) -> None:
        self.workspace = workspace
        self.options = options
        self.prediction_log = prediction_log
        self.registry = Registry(workspace)
        self.route_store = RouteStore(workspace)
        self.pool = ModelPool(
            self.registry,
            self._load,
            memory_budget_bytes=options.memory_budget_bytes,
            refresh_seconds=options.refresh_seconds,
        )
        self._routes: dict[str, tuple[int, RoutePlan]] = {}
        self._routes_read_at = 0.0
        self._routes_refreshing = threading.Lock()
        self._online_store: OnlineStore | None = None
        self._store_lock = threading.Lock()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.shadows_dropped = 0
        self.shadow_observer: ShadowObserver | None = None  # the app counts shadow copies in its metrics
        self.shadow_drop_observer: ShadowDropObserver | None = None  # and the dropped ones

    # -- requests -----------------------------------------------------------------------------------

    async def predict(
        self,
        target: str,
        payload: Mapping[str, Any],
        *,
        request_id: str | None = None,
        route_key: str | None = None,
        routed: Routed | None = None,
        served: Served | None = None,
    ) -> Prediction:
        """Answer ``payload`` (``rows`` or ``columns``, optional ``as_of``) for ``target``.

        ``target`` is a bare model name (follows its routing plan), ``name@alias`` or ``name/version``;
        ``routed`` is the choice ``route`` already made for this request, and ``served`` the model
        ``served(routed.ref)`` gave for it, if the caller needed them (the model is looked up once).
        """
        started = time.perf_counter()
        count = _row_count(payload, self.options.max_rows_per_request)  # before any per-value work
        if routed is None or served is None:
            routed = routed or self.route(target, payload, route_key)
            served = await self.served(routed.ref)
        large = count > INLINE_ROWS  # its per-row work goes to a worker thread: the loop keeps serving
        if large:
            rows, misses = await run_in_threadpool(self._prepare, served, payload)
            predictions = await run_in_threadpool(served.model.predict_rows, rows)
        else:
            rows, misses = await self._rows(served, payload)
            matrix = served.model.encoder.encode_rows(rows)
            batcher: MicroBatcher | None = served.extras.get("batcher")
            if batcher is not None:
                predictions = await batcher.predict(matrix)
            else:
                predictions = served.model.predict_matrix(matrix)
        request_id = request_id or _new_request_id()
        answer = Prediction(
            served.version.model,
            served.version.version,
            routed.route,
            request_id,
            predictions.tolist(),
            misses if any(misses) else None,
            rows,
        )
        note_prediction(answer.model, answer.version, request_id)
        latency_ms = (time.perf_counter() - started) * 1000
        if large:
            logged = await run_in_threadpool(self._log, answer, latency_ms)
        else:
            logged = self._log(answer, latency_ms)
        await self.prediction_log.synced(logged)  # with prediction_log.fsync = "always"
        if routed.plan is not None and routed.plan.shadows:
            self._mirror(routed.plan, rows, request_id)
        return answer

    def route(self, target: str, payload: Mapping[str, Any], route_key: str | None = None) -> Routed:
        """Choose who answers: a bare name follows its plan (by default ``@champion`` alone); an
        alias or a version answers directly."""
        if "@" in target or "/" in target:
            return Routed(target, DIRECT, None)
        plan = self.plan(target)
        if plan is None:
            return Routed(f"{target}@{CHAMPION}", CHAMPION, None)
        key = route_key if route_key is not None else _sticky_value(plan, payload)
        chosen, route = plan.choose(key)
        return Routed(f"{target}{chosen}", route, plan)

    async def served(self, ref: str) -> Served:
        """The loaded model for ``ref``, loading it off the event loop when needed."""
        served = self.pool.peek(ref)
        if served is None:
            served = await run_in_threadpool(self.pool.get, ref)
        return served

    async def _rows(
        self, served: Served, payload: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[list[str]]]:
        online: OnlineInputs | None = served.extras.get("online")
        if online is not None and not online.local:  # a network store must not block the loop
            return await run_in_threadpool(self._prepare, served, payload)
        return self._prepare(served, payload)

    def _prepare(
        self, served: Served, payload: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """The request's rows, checked against the model's fields and completed from the online store."""
        rows = _payload_rows(payload)
        at = _as_of(payload)
        _refuse_unknown_fields(rows, served.extras["accepted_fields"])
        online: OnlineInputs | None = served.extras.get("online")
        if online is None:
            return rows, []
        return online.fill(rows, at=at)

    def _log(self, answer: Prediction, latency_ms: float) -> int:
        return self.prediction_log.append(
            request_id=answer.request_id,
            model=answer.model,
            version=answer.version,
            route=answer.route,
            inputs=answer.rows,
            predictions=answer.predictions,
            latency_ms=latency_ms,
        )

    def _mirror(self, plan: RoutePlan, rows: list[dict[str, Any]], request_id: str) -> None:
        for target in plan.shadows:
            if len(self._shadow_tasks) >= MAX_PENDING_SHADOWS:  # a slow shadow must not pile up work
                self.shadows_dropped += 1
                if self.shadows_dropped % 1000 == 1:
                    log.warning("shadow %s%s is behind: %d copies dropped so far",
                                plan.model, target, self.shadows_dropped)  # fmt: skip
                if self.shadow_drop_observer is not None:
                    self.shadow_drop_observer(plan.model, self._shadow_version(f"{plan.model}{target}"))
                continue
            task = asyncio.get_running_loop().create_task(
                self._shadow(f"{plan.model}{target}", rows, request_id)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    def _shadow_version(self, ref: str) -> int | None:
        """The version a shadow reference names or, for an alias, the one in memory (else None)."""
        version = parse_ref(ref).version
        if version is not None:
            return version
        try:
            served = self.pool.peek(ref)
        except MlprodError:
            return None
        return None if served is None else served.version.version

    async def _shadow(self, ref: str, rows: list[dict[str, Any]], request_id: str) -> None:
        started = time.perf_counter()
        try:
            served = await self.served(ref)
            predictions = await run_in_threadpool(served.model.predict_rows, rows)
        except Exception as exc:
            if isinstance(exc, MlprodError):
                log.warning("shadow %s failed on request %s: %s", ref, request_id, exc)
            else:
                log.exception("shadow %s failed on request %s", ref, request_id)
            self._observe_shadow(ref.split("@", 1)[0].split("/", 1)[0], None, exc, started)
            return
        answer = Prediction(
            served.version.model, served.version.version, SHADOW, request_id, predictions.tolist(), None, rows
        )
        try:
            await run_in_threadpool(self._log, answer, (time.perf_counter() - started) * 1000)
        except MlprodError as exc:
            log.warning("shadow %s: request %s not logged: %s", ref, request_id, exc)
        self._observe_shadow(answer.model, answer.version, None, started)

    def _observe_shadow(
        self, model: str, version: int | None, error: Exception | None, started: float
    ) -> None:
        if self.shadow_observer is not None:
            self.shadow_observer(model, version, error, time.perf_counter() - started)

    async def drain_shadows(self) -> None:
        """Wait for mirrored requests still running (graceful shutdown)."""
        if self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)

    # -- routing plans ------------------------------------------------------------------------------

    def plan(self, model: str) -> RoutePlan | None:
        """The model's routing plan from memory; re-read in the background when it is stale."""
        if time.monotonic() - self._routes_read_at >= self.options.refresh_seconds:
            if self._routes_read_at == 0.0:
                self.reload_routes()
            elif self._routes_refreshing.acquire(blocking=False):
                threading.Thread(target=self._reload_quietly, daemon=True).start()
        entry = self._routes.get(model)
        return None if entry is None else entry[1]

    def reload_routes(self) -> None:
        self._routes = self.route_store.all()
        self._routes_read_at = time.monotonic()

    def _reload_quietly(self) -> None:
        try:
            self.reload_routes()
        except Exception:  # keep routing with the known plans; retried after the next interval
            log.exception("cannot re-read routing plans; keeping the ones in memory")
            self._routes_read_at = time.monotonic()
        finally:
            self._routes_refreshing.release()

    def set_plan(self, plan: RoutePlan, *, why: str = "", who: str | None = None) -> RouteChange:
        change = self.route_store.set(plan, why=why, who=who)
        self.reload_routes()
        return change

    def clear_plan(self, model: str, *, why: str = "", who: str | None = None) -> RouteChange:
        change = self.route_store.clear(model, why=why, who=who)
        self.reload_routes()
        return change

    # -- loading ------------------------------------------------------------------------------------

    def _load(self, version: ModelVersion) -> Served:
        model, size = self._load_model(version)
        served = Served(version, model, size)
        accepted = set(version.signature.input_names)
        if self.options.online_features and version.lineage.get("feature_set"):
            online = self._online_inputs(version)
            if online is not None:
                served.extras["online"] = online
                accepted.update(online.entity_keys)
        served.extras["accepted_fields"] = frozenset(accepted)
        if self.options.micro_batch_max_wait_ms > 0:
            served.extras["batcher"] = MicroBatcher(
                model.predict_matrix,
                max_wait_seconds=self.options.micro_batch_max_wait_ms / 1000,
                max_rows=self.options.micro_batch_max_rows,
            )
        return served

    def _load_model(self, version: ModelVersion) -> tuple[Any, int]:
        fmt = self.options.model_format
        sha = version.artifact_sha256
        if fmt in ("auto", "onnx") and version.format != "onnx":
            try:
                sha = self.registry.export_of(version, "onnx").artifact_sha256
            except NotFoundError:
                if fmt == "onnx":
                    raise NotFoundError(
                        f"{version.ref} has no ONNX export (serve.model_format = 'onnx'): "
                        f"run `mlprod models export {version.ref}`"
                    ) from None
                fmt = "native"
            else:
                fmt = "onnx"
        model = self.registry.load(version, format=None if fmt in ("native", "auto") else fmt)
        return model, self.workspace.artifacts.path_of(sha).stat().st_size

    def _online_inputs(self, version: ModelVersion) -> OnlineInputs | None:
        name = version.lineage["feature_set"]
        try:
            feature_set = load_catalog(self.workspace).feature_set(name)
        except MlprodError as exc:
            log.warning("%s: feature set %r unavailable (%s); requests must give every input",
                        version.ref, name, exc)  # fmt: skip
            return None
        trained_on = version.lineage.get("feature_set_version")
        if trained_on and trained_on != feature_set.version:
            log.warning("%s was trained on feature set %s version %s; the definitions now give %s",
                        version.ref, name, trained_on, feature_set.version)  # fmt: skip
        with self._store_lock:
            if self._online_store is None:
                self._online_store = open_online_store(self.workspace)
        return OnlineInputs.for_version(version, feature_set, self._online_store)

    def close(self) -> None:
        self.pool.close()
        if self._online_store is not None:
            self._online_store.close()


def _new_request_id() -> str:
    """A random UUID (version 4) as text: ``str(uuid.uuid4())`` without building the UUID object."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _row_count(payload: Mapping[str, Any], limit: int) -> int:
    """The rows of a ``rows`` or ``columns`` body, read from list lengths alone; refused over ``limit``."""
    if "rows" in payload:
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise InvalidInputError(f'"rows" must be a list of objects, got {type(rows).__name__}')
        count = len(rows)
    elif "columns" in payload:
        columns = payload["columns"]
        if not isinstance(columns, Mapping):
            raise InvalidInputError(f'"columns" must be an object of lists, got {type(columns).__name__}')
        for name, values in columns.items():
            if not isinstance(values, list):
                raise InvalidInputError(
                    f"column {name!r} must be a list of values, got {type(values).__name__}"
                )
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            raise InvalidInputError(f"columns have different lengths: {_summary(lengths)}")
        count = next(iter(lengths.values()), 0)
    else:
        raise InvalidInputError(
            'request body needs "rows" (a list of objects) or "columns" (an object of lists)'
        )
    if count > limit:
        raise PayloadTooLargeError(
            f"the request has {count:,} rows; at most {limit:,} rows per request "
            "(config: serve.max_rows_per_request): split it, or use `mlprod predict` for batches"
        )
    return count


def _summary(lengths: dict[str, int], shown: int = 10) -> str:
    items = list(lengths.items())
    text = ", ".join(f"{name!r}: {n}" for name, n in items[:shown])
    return "{" + text + (f", … {len(items) - shown} more" if len(items) > shown else "") + "}"


def _payload_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a body ``_row_count`` accepted."""
    if "rows" in payload:
        rows: list[dict[str, Any]] = payload["rows"]
        return rows
    columns = payload["columns"]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _refuse_unknown_fields(rows: Sequence[Any], accepted: frozenset[str]) -> None:
    for r, row in enumerate(rows):
        if type(row) is not dict and not isinstance(row, Mapping):  # JSON bodies give dicts: no ABC check
            raise InvalidInputError(f"row {r}: expected an object of fields, got {row!r}")
        if not accepted.issuperset(row):
            unknown = sorted(str(k) for k in row if k not in accepted)
            raise InvalidInputError(
                f"row {r}: unknown field(s) {unknown}; the model takes {sorted(accepted)}"
            )


def _as_of(payload: Mapping[str, Any]) -> datetime | None:
    value = payload.get("as_of")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f'"as_of" must be an ISO-8601 time with a UTC offset, got {value!r}')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f'"as_of" is not an ISO-8601 time: {value!r}') from exc
    if moment.tzinfo is None:
        raise InvalidInputError(
            f'"as_of" needs a UTC offset (e.g. "2013-07-01T08:00:00+00:00"), got {value!r}'
        )
    return moment


def _sticky_value(plan: RoutePlan, payload: Mapping[str, Any]) -> str | None:
    if plan.sticky_key is None:
        return None
    rows = payload.get("rows")
    if isinstance(rows, list) and rows and isinstance(rows[0], Mapping) and plan.sticky_key in rows[0]:
        return str(rows[0][plan.sticky_key])
    columns = payload.get("columns")
    if isinstance(columns, Mapping):
        values = columns.get(plan.sticky_key)
        if isinstance(values, list) and values:
            return str(values[0])
    return None
