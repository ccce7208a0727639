"""Inference bodies that differ from an earlier one only in their tensors' data, decoded without
parsing and checking everything else again.

A client sends the same tensors (names, shapes, datatypes, requested outputs, parameters) request after
request, with new values. Such a body is split at its ``"data": [...]`` arrays (flat ones: no bracket
or brace inside), and the bytes around them are its template. A body is decoded in full the first time
its template is seen; when every tensor was plain (see ``protocol_tensors.plain_data``) and the template
with empty arrays parses to the same request with empty data, the template is remembered. A later body
with that template needs only its arrays parsed (one ``json.loads``) and their values checked. JSON is
compositional, so the answer is the full decode's; a body that does not fit takes the full decode.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from mlprod.serve.protocol_tensors import Tensors, plain_data, skeleton

_DATA = re.compile(rb'"data": \[([^\[\]{}]*)\]')
_EMPTY = b'"data": []'
MAX_TEMPLATES = 256


class _Template(NamedTuple):
    body: dict[str, Any]  # the request without "inputs" (read, never changed)
    names: list[str]
    datatypes: list[str]
    rows: int
    integers: tuple[str, ...]


class BodyTemplates:
    """The templates of the bodies a server has seen (at most ``MAX_TEMPLATES``, then forgotten)."""

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, ...], _Template] = {}

    def decode(self, raw: bytes) -> tuple[dict[str, Any], Tensors] | None:
        """The body (without ``inputs``) and its tensors, or None unless its template is known."""
        parts = _DATA.split(raw)
        if len(parts) < 3:
            return None
        template = self._known.get(tuple(parts[0::2]))
        if template is None:
            return None
        try:
            data = json.loads(b"[[" + b"],[".join(parts[1::2]) + b"]]")
        except (ValueError, RecursionError):
            return None
        n = template.rows
        if len(data) != len(template.names) or set(map(len, data)) != {n}:
            return None
        if not plain_data(data, template.datatypes, n, template.integers):
            return None
        rows = [n] * len(data)
        return template.body, Tensors(template.names, template.datatypes, rows, data, plain=True)

    def learn(self, raw: bytes, body: dict[str, Any], tensors: Tensors) -> None:
        """Remember the template of ``raw``, a body decoded in full into ``body`` and plain ``tensors``."""
        parts = _DATA.split(raw)
        if not tensors.plain or len(parts) != 2 * len(tensors.names) + 1:
            return
        try:
            empty = json.loads(_EMPTY.join(parts[0::2]))
        except (ValueError, RecursionError):
            return
        expected = {**body, "inputs": [{**item, "data": []} for item in body["inputs"]]}
        if empty != expected:  # the arrays split out are not exactly the tensors' data, in order
            return
        integers = skeleton(tuple(tensors.names), tuple(tensors.datatypes))
        if integers is None:
            return
        if len(self._known) >= MAX_TEMPLATES:
            self._known.clear()
        del empty["inputs"]
        self._known[tuple(parts[0::2])] = _Template(
            empty, list(tensors.names), list(tensors.datatypes), tensors.rows[0], integers
        )
