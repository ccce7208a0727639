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
import math
import re
from itertools import compress
from operator import itemgetter, ne
from typing import Any

from mlprod.serve.protocol_tensors import INTEGER_RANGES, Tensors, binary_output, plain_data, skeleton

_DATA = re.compile(rb'"data": \[([^\[\]{}]*)\]')
_EMPTY = b'"data": []'
MAX_TEMPLATES = 256
_FIRST = itemgetter(0)
_DECODER = json.JSONDecoder()  # json.loads without its per-call encoding detection


class Template:
    """What a remembered template stands for, and the element types of the last single-row body that
    passed with it (a client's next one almost always has the same)."""

    def __init__(
        self,
        body: dict[str, Any],
        names: list[str],
        datatypes: list[str],
        rows: int,
        integers: tuple[str, ...],
    ) -> None:
        self.body = body  # the request without "inputs" (read, never changed)
        self.names = names
        self.datatypes = datatypes
        self.rows = rows
        self.integers = integers
        self.kinds: list[type] = []
        self._floats: list[bool] = []
        self._strings: list[bool] = []
        self._integers = [(datatype, [d == datatype for d in datatypes]) for datatype in integers]
        self._binary_outputs: dict[str, bool] = {}

    def binary_output(self, output: str) -> bool:
        """``protocol_tensors.binary_output`` for this template's body (remembered once it passed)."""
        binary = self._binary_outputs.get(output)
        if binary is None:
            binary = binary_output(self.body, self.body.get("parameters", {}), output)
            self._binary_outputs[output] = binary
        return binary

    def row(self, flat: list[Any]) -> bool:
        """Whether one row's values (one per tensor) are plain, as ``plain_data`` decides; NaN is made
        None in place. Values of the same types as the last plain row's take three C passes."""
        kinds = list(map(type, flat))
        if kinds != self.kinds:
            data = list(map(list, zip(flat, strict=True)))
            if not plain_data(data, self.datatypes, 1, self.integers):
                return False
            flat[:] = map(_FIRST, data)
            self.kinds = kinds
            self._floats = [kind is float for kind in kinds]
            self._strings = [kind is str for kind in kinds]
            return True
        try:
            total = math.fsum(compress(flat, self._floats))
            "".join(compress(flat, self._strings)).encode()
        except (OverflowError, ValueError, UnicodeEncodeError):
            return False
        if total - total != 0.0:  # NaN or an infinity
            if total == total or any(map(math.isinf, compress(flat, self._floats))):
                return False  # an infinity, refused by the checked path
            for at in compress(range(len(flat)), map(ne, flat, flat)):  # NaN != NaN
                flat[at] = None  # a missing value, as null is
        for datatype, mask in self._integers:
            values = list(compress(flat, mask))
            low, high = INTEGER_RANGES[datatype]
            if values and not low <= min(values) <= max(values) <= high:
                return False
        return True


class BodyTemplates:
    """The templates of the bodies a server has seen (at most ``MAX_TEMPLATES``, then forgotten)."""

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, ...], Template] = {}

    def decode(self, raw: bytes) -> tuple[Template, Tensors] | None:
        """The body's template (``.body``: the request without ``inputs``) and its tensors; None unless
        the template is known."""
        parts = _DATA.split(raw)
        if len(parts) < 3:
            return None
        template = self._known.get(tuple(parts[0::2]))
        if template is None:
            return None
        n, count = template.rows, len(template.names)
        try:  # the template is UTF-8 JSON (json.loads took it): the data must decode as UTF-8 too
            if n == 1:  # one value an array: an empty array would leave ",," (not JSON), two a count too many
                flat = _DECODER.decode((b"[" + b",".join(parts[1::2]) + b"]").decode())
            else:
                data = _DECODER.decode((b"[[" + b"],[".join(parts[1::2]) + b"]]").decode())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if n == 1:
            if len(flat) != count or not template.row(flat):
                return None
            return template, Tensors(template.names, template.datatypes, [1] * count, plain=True, row=flat)
        if set(map(len, data)) != {n} or not plain_data(data, template.datatypes, n, template.integers):
            return None
        return template, Tensors(template.names, template.datatypes, [n] * count, data, plain=True)

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
        self._known[tuple(parts[0::2])] = Template(
            empty, list(tensors.names), list(tensors.datatypes), tensors.rows[0], integers
        )
