"""The Open Inference Protocol's infer endpoint, shared by the ASGI fast path and its FastAPI route:
check the token, decode the body, check the tensors against the version that answers, predict, count
the request in the metrics, encode the answer. A body over 64 KiB is parsed (in steps, its arrays
bounded by ``serve.max_rows_per_request``) and decoded on a worker thread, as the native API does.

What each input tensor may be is worked out once per loaded version (``_Inputs``), so a request pays
for set lookups, not for building sets and messages it will not need; a body that repeats an
earlier one but for its data arrays has only those decoded and checked (``protocol_templates``).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
from starlette.concurrency import run_in_threadpool

from mlprod.errors import InvalidInputError, MlprodError
from mlprod.models.signature import InputField
from mlprod.serve.http_errors import status_for
from mlprod.serve.json_body import require_json
from mlprod.serve.large_body import PROTOCOL_DEPTHS, loads_stepwise
from mlprod.serve.metrics import ServingMetrics
from mlprod.serve.model_pool import Served
from mlprod.serve.native_predict import LARGE_BODY_BYTES
from mlprod.serve.online_inputs import OnlineInputs
from mlprod.serve.protocol_templates import BodyTemplates
from mlprod.serve.protocol_tensors import (
    FLOATS,
    INTEGERS,
    Tensors,
    as_object,
    as_text,
    binary_output,
    decode_inputs,
    parse_body,
)
from mlprod.serve.request_auth import Authorize
from mlprod.serve.request_metrics import count_answer, count_failure
from mlprod.serve.service import Prediction, PredictionService

_MAX_VERSION = 2**63 - 1
_INPUTS_KEY = "protocol_inputs"
_FIRST = itemgetter(0)
_quote = json.encoder.encode_basestring_ascii  # what json.dumps writes for a string


class ProtocolAnswer(NamedTuple):
    """The answer's bytes; with binary output, the length of its JSON header (else None)."""

    body: bytes
    header_length: int | None


class ProtocolInfer:
    """``POST /v2/models/{target}/infer`` given a body reader and the headers it reads."""

    def __init__(self, service: PredictionService, metrics: ServingMetrics, authorize: Authorize) -> None:
        self.service = service
        self.metrics = metrics
        self.authorize = authorize
        self.templates = BodyTemplates()

    async def answer(
        self,
        target: str,
        read_body: Callable[[], Awaitable[bytes]],
        *,
        authorization: str | None,
        route_key: str | None,
        header_length: str | None,
        content_type: str | None,
        origin: str | None,
    ) -> ProtocolAnswer:
        """The answer; raises ``MlprodError`` for a client error (after counting it).

        ``read_body`` is called after the token is checked (and refuses a body over the size limit).
        The headers: ``Authorization``, ``X-Route-Key``, ``Inference-Header-Content-Length``,
        ``Content-Type`` and ``Origin`` (see ``require_protocol_media_type``).
        """
        started = time.perf_counter()
        service = self.service
        try:
            require_protocol_media_type(content_type, header_length=header_length, origin=origin)
            self.authorize.check_header(authorization, "predict")
            raw = await read_body()
            small = len(raw) <= LARGE_BODY_BYTES
            known = self.templates.decode(raw) if header_length is None and small else None
            if known is not None:  # the same request as an earlier one but for the data: checked then
                template, tensors = known
                body = template.body
                parameters = body.get("parameters", {})
                rows = _rows(tensors)
            elif not small:  # parsed and decoded on a worker thread, in steps
                limit = service.options.max_rows_per_request
                body, parameters, tensors, rows = await run_in_threadpool(
                    _decode,
                    raw,
                    header_length,
                    functools.partial(loads_stepwise, max_items=limit, depths=PROTOCOL_DEPTHS),
                )
            else:
                body, parameters, tensors, rows = _decode(raw, header_length, json.loads)
                if tensors.plain:
                    self.templates.learn(raw, body, tensors)
            route_key = route_key or as_text(parameters.get("route_key"), '"parameters.route_key"')
            payload: dict[str, Any] = {"rows": rows}
            routed = service.route(target, payload, route_key)  # checked against who answers
            served = await service.served(routed.ref)
            output = served.version.signature.output
            binary_out = (
                binary_output(body, parameters, output) if known is None else known[0].binary_output(output)
            )
            _inputs(served).check(tensors)
            if "as_of" in parameters:
                payload["as_of"] = parameters["as_of"]
            answer = await service.predict(
                target, payload, request_id=as_text(body.get("id"), '"id"'), routed=routed, served=served
            )
        except Exception as exc:  # counted with the status it will be answered with, then re-raised
            count_failure(self.metrics, target, exc, started)
            raise
        count_answer(self.metrics, answer, started)
        return _encode(answer, output, binary_out)


def require_protocol_media_type(
    content_type: str | None, *, header_length: str | None, origin: str | None
) -> None:
    """Refuse (415) an infer body not declared as JSON, as the native API does, with two exceptions.

    With the binary tensor extension (``Inference-Header-Content-Length``) the body is not JSON, and a
    web page cannot send that header without a CORS preflight this server never grants, so any type
    is taken. tritonclient sends JSON bodies without any ``Content-Type``: a body without one is taken
    unless it comes from a web page (every browser ``POST`` carries ``Origin``, which such clients do
    not send), since a page can post an untyped body (a ``Blob``) cross-origin without a preflight.
    """
    if header_length is not None or (content_type is None and origin is None):
        return
    require_json(content_type)


def _decode(
    raw: bytes, header_length: str | None, loads: Callable[[bytes], Any]
) -> tuple[dict[str, Any], dict[str, Any], Tensors, list[dict[str, Any]]]:
    """The body, its parameters, its tensors (checked) and their rows."""
    body, binary = parse_body(raw, header_length, loads)
    parameters = as_object(body.get("parameters", {}), '"parameters"')
    tensors = decode_inputs(body.get("inputs"), binary)
    # zip stops at the shortest tensor: unequal rows are refused by check() before predicting
    return body, parameters, tensors, _rows(tensors)


def _rows(tensors: Tensors) -> list[dict[str, Any]]:
    names = tensors.names
    if tensors.row is not None:
        return [dict(zip(names, tensors.row, strict=True))]
    values = tensors.values
    if tensors.rows.count(1) == len(names):  # one row, the usual online request
        return [dict(zip(names, map(_FIRST, values), strict=True))]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=False)]


def versioned_target(name: str, version: str) -> str:
    """``name/version`` as a target, or the error saying why the pair is not one."""
    if "@" in name:
        raise InvalidInputError(
            f"model {name!r}: address an alias as /v2/models/NAME@ALIAS, without /versions"
        )
    if not (version.isascii() and version.isdigit()) or not 1 <= int(version) <= _MAX_VERSION:
        raise InvalidInputError(f"model version must be a positive integer, got {version!r}")
    return f"{name}/{int(version)}"


def protocol_error(exc: MlprodError) -> tuple[int, dict[str, str]]:
    """The status and body of an error in the protocol's shape (plus the native API's stable code)."""
    status, code = status_for(exc)
    return status, {"error": str(exc), "code": code}


def advertised_datatype(spec: InputField, served: Served) -> str:
    """The datatype the model metadata gives an input: one that can carry every value it may take.

    An input that may be missing (nullable in the signature, or looked up in the online store, where
    an unknown entity has no value) is ``FP64``, whose ``NaN`` is a missing value; ``INT64`` cannot
    carry one, so a client following the metadata would have to make a value up.
    """
    if spec.kind == "category":
        return "BYTES"
    if not spec.integral or spec.nullable or spec.name in _online_features(served):
        return "FP64"
    return "INT64"


def _online_features(served: Served) -> frozenset[str]:
    online: OnlineInputs | None = served.extras.get("online")
    return frozenset() if online is None else frozenset(online.inputs)


# -- the tensors a version takes ---------------------------------------------------------------------


def _inputs(served: Served) -> _Inputs:
    inputs: _Inputs | None = served.extras.get(_INPUTS_KEY)
    if inputs is None:  # two requests may both build it: the same value either way
        inputs = served.extras[_INPUTS_KEY] = _Inputs(served)
    return inputs


class _Inputs:
    """What the input tensors of one loaded version may be, and the errors when they are not."""

    def __init__(self, served: Served) -> None:
        signature = served.version.signature
        fields = {f.name: f for f in signature.inputs}
        self.model = served.version.model
        self.ref = served.version.ref
        self.input_names = signature.input_names
        self.accepted: frozenset[str] = served.extras.get("accepted_fields", frozenset(fields))
        self.complete = "online" not in served.extras  # without a lookup every input must be given
        self.datatypes = {name: _accepted_datatypes(fields.get(name), served) for name in self.accepted}
        self.pairs = frozenset((name, d) for name, (allowed, _) in self.datatypes.items() for d in allowed)
        self._passed: tuple[list[str] | None, list[str] | None] = (None, None)

    def check(self, tensors: Tensors) -> None:
        names = tensors.names
        if names is self._passed[0] and tensors.datatypes is self._passed[1]:
            return  # a known body template's tensors (the same lists), which passed before
        if not self.accepted.issuperset(names):
            unknown = [name for name in names if name not in self.accepted]
            raise InvalidInputError(f"unknown input tensor(s) {unknown}: {self._takes()}")
        if self.complete and len(names) != len(self.input_names):  # names are unique and known
            missing = [name for name in self.input_names if name not in set(names)]
            raise InvalidInputError(f"missing input tensor(s) {missing}: {self._takes()}")
        rows = tensors.rows
        if rows.count(rows[0]) != len(rows):
            counts = dict(zip(names, rows, strict=True))
            raise InvalidInputError(f"input tensors hold different numbers of rows: {counts}")
        if not self.pairs.issuperset(zip(names, tensors.datatypes, strict=True)):
            for name, datatype in zip(names, tensors.datatypes, strict=True):
                allowed, expected = self.datatypes[name]
                if datatype not in allowed:
                    raise InvalidInputError(
                        f"input tensor {name!r} has datatype {datatype}, but {name!r} is {expected} "
                        f"(see GET /v2/models/{self.model})"
                    )
        if tensors.plain:  # every tensor holds the same rows: the lists may be a template's
            self._passed = (names, tensors.datatypes)

    def _takes(self) -> str:
        takes = f"model {self.ref} takes {self.input_names}"
        entity_keys = sorted(self.accepted - set(self.input_names))
        if entity_keys:
            takes += f" (or the entity key(s) {entity_keys} in place of its online features)"
        return takes


def _accepted_datatypes(spec: InputField | None, served: Served) -> tuple[frozenset[str], str]:
    """The datatypes an input takes, and how to say so in an error."""
    if spec is None:  # an entity key, looked up in the online store
        return INTEGERS | {"BYTES"}, "an entity key: BYTES or an integer datatype"
    if spec.kind == "category":
        if spec.dtype.lower().lstrip("u").startswith("int"):
            return INTEGERS | {"BYTES"}, "a category: BYTES (or an integer datatype)"
        return frozenset({"BYTES"}), "a category: BYTES (strings)"
    return INTEGERS | FLOATS, f"a number: {advertised_datatype(spec, served)} or another numeric datatype"


# -- answers ----------------------------------------------------------------------------------------


def _encode(answer: Prediction, output: str, binary: bool) -> ProtocolAnswer:
    if not binary and answer.feature_misses is None:  # the usual answer, from a template
        text = (
            f'{{"model_name": {_quote(answer.model)}, "model_version": "{answer.version}", '
            f'"id": {_quote(answer.request_id)}, "parameters": {{"route": {_quote(answer.route)}}}, '
            f'"outputs": [{{"name": {_quote(output)}, "datatype": "FP64", '
            f'"shape": [{len(answer.predictions)}], "data": {_floats(answer.predictions)}}}]}}'
        )
        return ProtocolAnswer(text.encode(), None)
    header, tensor = _header(answer, output)
    if not binary:
        tensor["data"] = answer.predictions
        return ProtocolAnswer(json.dumps(header).encode(), None)
    raw = np.asarray(answer.predictions, dtype="<f8").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(header).encode()
    return ProtocolAnswer(head + raw, len(head))


def _floats(values: list[float]) -> str:
    """``json.dumps(values)`` for a list of floats, without the encoder's machinery when all are finite
    (``json`` writes a finite float as its ``repr``; ``nan`` and ``inf`` are the only reprs with an n)."""
    text = "[" + ", ".join(map(repr, values)) + "]"
    return json.dumps(values) if "n" in text else text


def _header(answer: Prediction, output: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer's JSON header and, inside it, its output tensor (without the data)."""
    parameters: dict[str, Any] = {"route": answer.route}
    if answer.feature_misses is not None:
        parameters["feature_misses"] = json.dumps(answer.feature_misses)
    tensor: dict[str, Any] = {"name": output, "datatype": "FP64", "shape": [len(answer.predictions)]}
    header = {
        "model_name": answer.model,
        "model_version": str(answer.version),
        "id": answer.request_id,
        "parameters": parameters,
        "outputs": [tensor],
    }
    return header, tensor
