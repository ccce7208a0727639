"""Parsing a large JSON request body in small steps, refusing it as soon as an array holds too many rows.

``json.loads`` parses a whole body in one C call that holds the GIL: a 2 MB body takes 25-60 ms
here, and an event loop waiting for the GIL answers nothing meanwhile, even when the parse runs on
a worker thread. This parser walks the two outer levels of the body in Python (the body object,
its values, and the elements of arrays up to two levels down: ``rows``, ``columns``'s lists) and
leaves each element to the C scanner of ``json``. Between elements the interpreter can hand the
GIL to the event loop, so a worker thread parsing a large body no longer stalls other requests;
and an array longer than ``max_items`` is refused when its ``max_items + 1``-th element is reached,
before the rest is parsed. The result and the error messages are those of ``json.loads``. An Open
Inference Protocol body is walked one level deeper (``PROTOCOL_DEPTHS``: its tensors' ``data``).
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from typing import Any

from mlprod.errors import InvalidInputError, MlprodError, PayloadTooLargeError

_SPACE = re.compile(r"[ \t\n\r]*")
_BLANK = frozenset(" \t\n\r")
# the C scanner and string reader json.loads uses (typeshed declares neither as used here)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_OBJECT_DEPTH = 1  # objects walked in Python: the body, and e.g. "columns"
_ARRAY_DEPTH = 2  # arrays walked in Python: e.g. "rows" and each list of "columns"
# an Open Inference Protocol body: {"inputs": [{..., "data": [...]}, ...]}: the tensors and their data
PROTOCOL_DEPTHS = (2, 3)


def loads_stepwise(
    raw: bytes, *, max_items: int, depths: tuple[int, int] = (_OBJECT_DEPTH, _ARRAY_DEPTH)
) -> Any:
    """``json.loads(raw)``, with its result and errors, parsed in steps: objects down to ``depths[0]``
    levels and arrays down to ``depths[1]`` are walked in Python (and hold at most ``max_items``,
    else ``PayloadTooLargeError``), what they hold is left to the C scanner."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    return _Walk(text, max_items, *depths).document()


def parse_large_json_object(raw: bytes, *, max_items: int) -> dict[str, Any]:
    """``raw`` as a JSON object, as ``json.loads`` gives it; outer arrays hold at most ``max_items``."""
    try:
        body = loads_stepwise(raw, max_items=max_items)
    except MlprodError:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # undecodable bytes, too deep nesting, huge integers
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    return body


class _Walk:
    def __init__(self, text: str, max_items: int, object_depth: int, array_depth: int) -> None:
        self.text = text
        self.max_items = max_items
        self.object_depth = object_depth
        self.array_depth = array_depth

    def document(self) -> Any:
        value, end = self.value(self.space(0), 0)
        end = self.space(end)
        if end != len(self.text):
            raise json.JSONDecodeError("Extra data", self.text, end)
        return value

    def space(self, at: int) -> int:
        match = _SPACE.match(self.text, at)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def value(self, at: int, depth: int) -> tuple[Any, int]:
        first = self.text[at : at + 1]
        if first == "{" and depth <= self.object_depth:
            return self.object(at + 1, depth)
        if first == "[" and depth <= self.array_depth:
            return self.array(at + 1, depth)
        try:
            value, end = _scan(self.text, at)
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", self.text, stop.value) from None
        return value, end

    def object(self, at: int, depth: int) -> tuple[dict[str, Any], int]:
        text, out = self.text, dict[str, Any]()
        at = self.space(at)
        if text[at : at + 1] == "}":
            return out, at + 1
        while True:
            if text[at : at + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, at)
            key, at = _scanstring(text, at + 1)
            at = self.space(at)
            if text[at : at + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            out[key], at = self.value(self.space(at + 1), depth + 1)
            at = self.space(at)
            delimiter = text[at : at + 1]
            if delimiter == "}":
                return out, at + 1
            if delimiter != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
            at = self.space(at + 1)

    def array(self, at: int, depth: int) -> tuple[list[Any], int]:
        text, out, scan, limit = self.text, list[Any](), _scan, self.max_items
        walk_elements = depth + 1 <= self.array_depth
        at = self.space(at)
        if text[at : at + 1] == "]":
            return out, at + 1
        while True:  # the hot loop of a columnar body: one scalar per turn
            if len(out) == limit:
                raise PayloadTooLargeError(
                    f"the request has more than {limit:,} rows (config: serve.max_rows_per_request): "
                    "split it, or use `mlprod predict` for batches"
                )
            if walk_elements and text[at : at + 1] in ("{", "["):
                value, at = self.value(at, depth + 1)
            else:
                try:
                    value, at = scan(text, at)
                except StopIteration as stop:
                    raise json.JSONDecodeError("Expecting value", text, stop.value) from None
            out.append(value)
            delimiter = text[at : at + 1]
            if delimiter in _BLANK:
                at = self.space(at)
                delimiter = text[at : at + 1]
            if delimiter == ",":
                at += 1
                if text[at : at + 1] in _BLANK:
                    at = self.space(at)
            elif delimiter == "]":
                return out, at + 1
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
