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
from collections.abc import Sequence
from itertools import compress
from operator import itemgetter
from typing import Any

from mlprod.serve.protocol_tensors import INTEGER_RANGES, Tensors, binary_output, plain_data, skeleton

_OPEN = b'"data": ['
_EMPTY = b'"data": []'
_ARRAY = rb'"data": \[([^\[\]{}]*)\]'  # a flat array, as _split takes it
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
        pattern: re.Pattern[bytes],
    ) -> None:
        self.body = body  # the request without "inputs" (read, never changed)
        self.names = names
        self.datatypes = datatypes
        self.rows = rows
        self.integers = integers
        self.pattern = pattern  # fullmatches the bodies of this template
        self.kinds: list[type] = []
        self._floats: list[bool] = []
        self._float_at: list[int] = []
        self._strings: list[bool] = []
        self._integers = [(*INTEGER_RANGES[d], [t == d for t in datatypes]) for d in integers]
        self._binary_outputs: dict[str, bool] = {}

    def binary_output(self, output: str) -> bool:
        """``protocol_tensors.binary_output`` for this template's body (remembered once it passed)."""
        binary = self._binary_outputs.get(output)
        if binary is None:
            binary = binary_output(self.body, self.body.get("parameters", {}), output)
            self._binary_outputs[output] = binary
        return binary

    def row(self, flat: list[Any], *, escapes: bool = True) -> bool:
        """Whether one row's values (one per tensor) are plain, as ``plain_data`` decides; NaN is made
        None in place. Values of the same types as the last plain row's take a few C passes.
        ``escapes``: whether the JSON text had a backslash (without one, no string can hold a lone
        surrogate: strict UTF-8 decoding refuses them)."""
        kinds = list(map(type, flat))
        if kinds != self.kinds:
            data = list(map(list, zip(flat, strict=True)))
            if not plain_data(data, self.datatypes, 1, self.integers):
                return False
            flat[:] = map(_FIRST, data)
            self.kinds = kinds
            self._floats = [kind is float for kind in kinds]
            self._float_at = list(compress(range(len(kinds)), self._floats))
            self._strings = [kind is str for kind in kinds]
            return True
        floats = list(compress(flat, self._floats))
        if escapes:
            try:
                "".join(compress(flat, self._strings)).encode()
            except UnicodeEncodeError:
                return False
        total = sum(floats)  # finite unless a NaN or an infinity is there (or a sum overflowed:
        if total - total != 0.0:  # then the checked path decides)
            if total == total or any(map(math.isinf, floats)):
                return False  # an infinity (or an overflow), refused or taken by the checked path
            for at in compress(self._float_at, map(math.isnan, floats)):
                flat[at] = None  # a missing value, as null is
        for low, high, mask in self._integers:
            values = list(compress(flat, mask))
            if values and not low <= min(values) <= max(values) <= high:
                return False
        return True


def _split(raw: bytes) -> tuple[tuple[bytes, ...], list[bytes]] | None:
    """The bytes around the body's ``"data": [...]`` arrays, and the arrays' contents; None unless there
    is one and all are flat (no bracket or brace inside: ``bytes.split`` and ``partition``, no regex)."""
    pieces = raw.split(_OPEN)
    if len(pieces) < 2:
        return None
    around = [pieces[0]]
    arrays = []
    for piece in pieces[1:]:
        values, bracket, rest = piece.partition(b"]")
        if not bracket:
            return None
        arrays.append(values)
        around.append(rest)
    inside = b"".join(arrays)
    if b"[" in inside or b"{" in inside or b"}" in inside:
        return None
    return tuple(around), arrays


def _pattern(around: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """What ``fullmatch``es exactly the bodies ``_split`` splits into ``around`` (its groups: the arrays)."""
    return re.compile(_ARRAY.join(map(re.escape, around)), re.DOTALL)


class BodyTemplates:
    """The templates of the bodies a server has seen (at most ``MAX_TEMPLATES``, then forgotten)."""

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, ...], Template] = {}
        self._last: Template | None = None  # the template of the last body decoded with one

    def _match(self, raw: bytes) -> tuple[Template, Sequence[bytes]] | None:
        """The body's known template and its arrays' contents: one ``fullmatch`` of the last template
        used (a client repeats its template), else split and looked up."""
        last = self._last
        if last is not None:
            match = last.pattern.fullmatch(raw)
            if match is not None:
                return last, match.groups()
        split = _split(raw)
        if split is None:
            return None
        template = self._known.get(split[0])
        if template is None:
            return None
        self._last = template
        return template, split[1]

    def decode(self, raw: bytes) -> tuple[Template, Tensors] | None:
        """The body's template (``.body``: the request without ``inputs``) and its tensors; None unless
        the template is known."""
        known = self._match(raw)
        if known is None:
            return None
        template, arrays = known
        n, count = template.rows, len(template.names)
        try:  # the template is UTF-8 JSON (json.loads took it): the data must decode as UTF-8 too
            if n == 1:  # one value an array: an empty array would leave ",," (not JSON), two a count too many
                text = b"[" + b",".join(arrays) + b"]"
                decoded = text.decode()
                flat, end = _DECODER.raw_decode(decoded)  # it starts with "[": no leading space to skip
                if end != len(decoded):  # something after the array
                    return None
            else:
                data = _DECODER.decode((b"[[" + b"],[".join(arrays) + b"]]").decode())
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if n == 1:
            if len(flat) != count or not template.row(flat, escapes=b"\\" in text):
                return None
            return template, Tensors(template.names, template.datatypes, [1] * count, plain=True, row=flat)
        if set(map(len, data)) != {n} or not plain_data(data, template.datatypes, n, template.integers):
            return None
        return template, Tensors(template.names, template.datatypes, [n] * count, data, plain=True)

    def learn(self, raw: bytes, body: dict[str, Any], tensors: Tensors) -> None:
        """Remember the template of ``raw``, a body decoded in full into ``body`` and plain ``tensors``."""
        split = _split(raw)
        if not tensors.plain or split is None or len(split[1]) != len(tensors.names):
            return
        around, _ = split
        try:
            empty = json.loads(_EMPTY.join(around))
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
        self._known[around] = Template(
            empty, list(tensors.names), list(tensors.datatypes), tensors.rows[0], integers, _pattern(around)
        )
