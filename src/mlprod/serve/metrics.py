"""Serving metrics in the Prometheus text exposition format 0.0.4, with no global registry.

Each app owns one ``ServingMetrics``: several apps can live in one process (the tests run many)
without sharing counters, which ``prometheus_client``'s global registry would make them do.

``observe`` runs on every request, so it does one tuple build, one ``bisect`` and one dict lookup
under a lock; everything else (error counts, cumulative buckets, label escaping, number
formatting) is derived from that state at scrape time, outside the lock. The families rendered:

    mlprod_requests_total{model,version,route,protocol,status}      counter
    mlprod_request_errors_total{model,version,route,protocol,code}  counter, status >= 400 by class:
                                                                    code is "4xx" or "5xx"
    mlprod_request_latency_seconds{model,version,route,protocol}    histogram (LATENCY_BUCKETS)
    mlprod_predictions_total{model,version}                         counter, rows predicted
    mlprod_shadow_dropped_total{model,version}                      counter, shadow copies not run
                                                                    (too many were pending)
    <gauge sources>                                                 gauges read by callbacks at scrape

``route`` is how the answering version was chosen (``champion``, ``canary``, ``direct``) or
``shadow`` for the copies mirrored to shadow versions. ``protocol`` is the API the client used,
``native`` (``/v1``) or ``oip`` (Open Inference Protocol, ``/v2``): each API counts through its own
view, ``metrics.for_protocol("oip")``, of the same counters. Shadow copies are not client requests,
so they carry no protocol (``protocol=""``).

A ``None`` version renders as ``version=""``, which Prometheus treats as an absent label (a request
for an unknown model has no version). Label values are caller-controlled (model names and routes
come from URLs), so the number of label sets is capped by ``max_series``: observations for new
label sets beyond the cap are counted under ``model="__overflow__"`` rather than growing memory
without bound.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from mlprod.errors import InvalidInputError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
OVERFLOW_MODEL = "__overflow__"
DEFAULT_MAX_SERIES = 10_000

GaugeSource = Callable[[], Iterable[tuple[Mapping[str, str], float]]]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_REQUESTS = "mlprod_requests_total"
_ERRORS = "mlprod_request_errors_total"
_LATENCY = "mlprod_request_latency_seconds"
_PREDICTIONS = "mlprod_predictions_total"
_SHADOW_DROPPED = "mlprod_shadow_dropped_total"
_BUILTIN_NAMES = frozenset(
    {
        _REQUESTS,
        _ERRORS,
        _LATENCY,
        _LATENCY + "_bucket",
        _LATENCY + "_sum",
        _LATENCY + "_count",
        _PREDICTIONS,
        _SHADOW_DROPPED,
    }
)
_SeriesKey = tuple[str, int | None, str, str, int]  # model, version, route, protocol, status
NATIVE = "native"
OIP = "oip"
NO_PROTOCOL = ""


@dataclass(frozen=True)
class _Gauge:
    help: str
    source: GaugeSource


class ServingMetrics:
    """Request, error, latency and prediction counters of one server, rendered for Prometheus.

    Thread-safe: request handlers on the event loop and on worker threads may observe concurrently.

    Examples:
        >>> metrics = ServingMetrics()
        >>> metrics.observe(model="m", version=3, route="m@champion", status=200, seconds=0.004)
        >>> metrics.observe_prediction_rows("m", 3, 10)
        >>> metrics.set_gauge_source("mlprod_models_loaded", "Models in memory.", lambda: [({}, 1.0)])
        >>> oip = metrics.for_protocol("oip")
        >>> oip.observe(model="m", version=3, route="m@champion", status=200, seconds=0.1)
        >>> text = metrics.render()
        >>> print(text.splitlines()[2])
        mlprod_requests_total{model="m",version="3",route="m@champion",protocol="native",status="200"} 1
        >>> print(text.splitlines()[3])
        mlprod_requests_total{model="m",version="3",route="m@champion",protocol="oip",status="200"} 1
        >>> 'bucket{model="m",version="3",route="m@champion",protocol="native",le="0.005"} 1' in text
        True
        >>> text.endswith("mlprod_models_loaded 1.0\\n")
        True
    """

    def __init__(
        self, *, buckets: Iterable[float] = LATENCY_BUCKETS, max_series: int = DEFAULT_MAX_SERIES
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise InvalidInputError(
                f"ServingMetrics buckets must be finite, strictly increasing and not empty, got {bounds!r}; "
                "+Inf is always added"
            )
        if max_series < 1:
            raise InvalidInputError(f"ServingMetrics max_series must be at least 1, got {max_series}")
        self._bounds = bounds
        self._max_series = max_series
        self._lock = threading.Lock()
        # One flat list per label set: a count per bucket (the last bucket is +Inf), then the sum of
        # seconds. Requests, errors and the per-route histogram are all derived from it at scrape.
        self._series: dict[_SeriesKey, list[float]] = {}
        self._predictions: dict[tuple[str, int | None], int] = {}
        self._shadows_dropped: dict[tuple[str, int | None], int] = {}
        self._gauges: dict[str, _Gauge] = {}
        self._protocol = NATIVE

    def for_protocol(self, protocol: str) -> ServingMetrics:
        """A view of these metrics whose observations carry ``protocol`` (state and lock are shared)."""
        if protocol not in (NATIVE, OIP, NO_PROTOCOL):
            raise InvalidInputError(
                f"ServingMetrics protocol must be {NATIVE!r}, {OIP!r} or {NO_PROTOCOL!r}, got {protocol!r}"
            )
        view = copy.copy(self)
        view._protocol = protocol
        return view

    def observe(self, *, model: str, version: int | None, route: str, status: int, seconds: float) -> None:
        """Count one finished request: its HTTP ``status`` and its latency in ``seconds``."""
        if not seconds >= 0.0:  # also rejects NaN
            raise InvalidInputError(f"ServingMetrics.observe: seconds must be >= 0, got {seconds!r}")
        index = bisect_left(self._bounds, seconds)  # bucket i holds bounds[i-1] < seconds <= bounds[i]
        key = (model, version, route, self._protocol, status)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._new_series(key)
            series[index] += 1
            series[-1] += seconds

    def observe_prediction_rows(self, model: str, version: int | None, n: int) -> None:
        """Count ``n`` rows predicted by ``model`` at ``version``."""
        if n < 0:
            raise InvalidInputError(f"ServingMetrics.observe_prediction_rows: n must be >= 0, got {n!r}")
        with self._lock:
            _add(self._predictions, (model, version), n, self._max_series)

    def observe_shadow_dropped(self, model: str, version: int | None) -> None:
        """Count one copy of a request for the shadow ``model`` at ``version`` (None: not known, an
        alias not loaded yet) dropped because too many copies were pending."""
        with self._lock:
            _add(self._shadows_dropped, (model, version), 1, self._max_series)

    def set_gauge_source(self, name: str, help: str, fn: GaugeSource) -> None:
        """Expose gauge ``name``: at each scrape ``fn()`` yields ``(labels, value)`` pairs.

        Setting a name again replaces its source. ``fn`` runs outside the metrics lock, so it may take
        its own locks; if it raises, the scrape still succeeds without that gauge's samples and the
        error is logged.
        """
        if not _METRIC_NAME.fullmatch(name):
            raise InvalidInputError(
                f"gauge name {name!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            )
        if name in _BUILTIN_NAMES:
            raise InvalidInputError(f"gauge name {name!r} is already used by a built-in serving metric")
        if not callable(fn):
            raise InvalidInputError(f"gauge {name!r}: the source must be callable, got {type(fn).__name__}")
        with self._lock:
            self._gauges[name] = _Gauge(help=help, source=fn)

    def render(self) -> str:
        """Return all metrics in the Prometheus text format 0.0.4 (serve with ``CONTENT_TYPE``)."""
        with self._lock:  # copy the counters, format outside the lock
            series = [(key, list(values)) for key, values in self._series.items()]
            predictions = list(self._predictions.items())
            dropped = list(self._shadows_dropped.items())
            gauges = list(self._gauges.items())
        series.sort(key=lambda item: _sort_key(item[0]))
        predictions.sort(key=lambda item: _sort_key(item[0]))
        dropped.sort(key=lambda item: _sort_key(item[0]))

        lines = _header(
            _REQUESTS, "counter", "Requests served, by model, version, route, protocol and HTTP status."
        )
        errors: dict[tuple[str, str], int] = {}
        histograms: dict[str, list[float]] = {}
        for (model, version, route, protocol, status), values in series:
            base = _labels(model=model, version=version, route=route, protocol=protocol)
            count = int(sum(values[:-1]))
            lines.append(f'{_REQUESTS}{{{base},status="{status}"}} {count}')
            if status >= 400:
                error_key = (base, f"{status // 100}xx")
                errors[error_key] = errors.get(error_key, 0) + count
            merged = histograms.get(base)
            if merged is None:
                histograms[base] = values
            else:
                histograms[base] = [a + b for a, b in zip(merged, values, strict=True)]

        lines += _header(_ERRORS, "counter", 'Requests answered with status >= 400, by class ("4xx", "5xx").')
        lines += [f'{_ERRORS}{{{base},code="{code}"}} {count}' for (base, code), count in errors.items()]

        lines += _header(
            _LATENCY, "histogram", "Request latency in seconds, by model, version, route and protocol."
        )
        les = [_format_float(b) for b in self._bounds] + ["+Inf"]
        for base, values in histograms.items():
            cumulative = 0
            for le, in_bucket in zip(les, values[:-1], strict=True):
                cumulative += int(in_bucket)
                lines.append(f'{_LATENCY}_bucket{{{base},le="{le}"}} {cumulative}')
            lines.append(f"{_LATENCY}_sum{{{base}}} {_format_float(values[-1])}")
            lines.append(f"{_LATENCY}_count{{{base}}} {cumulative}")

        lines += _header(_PREDICTIONS, "counter", "Rows predicted, by model and version.")
        for (model, version), rows in predictions:
            lines.append(f"{_PREDICTIONS}{{{_labels(model=model, version=version)}}} {rows}")

        lines += _header(
            _SHADOW_DROPPED,
            "counter",
            "Request copies not sent to a shadow version (too many were pending), by model and version.",
        )
        for (model, version), count in dropped:
            lines.append(f"{_SHADOW_DROPPED}{{{_labels(model=model, version=version)}}} {count}")

        for name, gauge in gauges:
            lines += _header(name, "gauge", gauge.help)
            lines += _gauge_samples(name, gauge.source)
        return "\n".join(lines) + "\n"

    def _new_series(self, key: _SeriesKey) -> list[float]:
        if len(self._series) >= self._max_series:
            # Keep the protocol and status, so error counts stay right even for overflowing label sets.
            key = (OVERFLOW_MODEL, None, OVERFLOW_MODEL, key[3], key[4])
            existing = self._series.get(key)
            if existing is not None:
                return existing
            log.warning(
                "serving metrics reached max_series=%d label sets; new ones are counted as model=%r",
                self._max_series,
                OVERFLOW_MODEL,
            )
        series: list[float] = [0] * (len(self._bounds) + 1)
        series.append(0.0)
        self._series[key] = series
        return series


def _add(counts: dict[tuple[str, int | None], int], key: tuple[str, int | None], n: int, cap: int) -> None:
    """``counts[key] += n``; past ``cap`` keys, new ones are counted under ``OVERFLOW_MODEL``."""
    if key not in counts and len(counts) >= cap:
        key = (OVERFLOW_MODEL, None)
    counts[key] = counts.get(key, 0) + n


def _gauge_samples(name: str, source: GaugeSource) -> list[str]:
    try:
        samples = []
        seen: set[str] = set()
        for labels, value in source():
            for label in labels:
                if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                    raise InvalidInputError(f"label name {label!r} is not a valid Prometheus label name")
            text = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            if text in seen:
                raise InvalidInputError(f"labels {dict(labels)!r} are yielded twice")
            seen.add(text)
            value_text = _format_float(float(value))
            samples.append(f"{name}{{{text}}} {value_text}" if text else f"{name} {value_text}")
    except Exception:
        log.exception("gauge source %r failed; the scrape goes on without it", name)
        return []
    return samples


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]


def _labels(**labels: str | int | None) -> str:
    return ",".join(f'{k}="{_escape_label("" if v is None else str(v))}"' for k, v in labels.items())


def _sort_key(key: tuple[str | int | None, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)


def _escape_label(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_float(value: float) -> str:
    """Go-style float text, as Prometheus writes it: ``+Inf``, ``-Inf``, ``NaN``, else ``repr``."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)
