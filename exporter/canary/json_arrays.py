"""JSON tensors, as TF Serving's REST API reads and writes them, <-> numpy arrays.

A JSON tensor is a rectangular nested list whose leaves are numbers (the ``NaN``/``Infinity``
tokens included), booleans, strings or ``{"b64": "..."}`` objects. Unlike the simulator's
``rest_codec`` (which types values from a signature and mimics TF Serving's error texts), this
module knows no signature: it infers the kind from the first leaf and reports every problem with
the path of the offending value, for golden files and replies.

Strings: request inputs keep ``str`` and ``bytes`` (from b64) apart so a request is re-sent as
written; expected values and replies are canonicalised to ``bytes`` (``canonical_strings``)
because TF Serving hands both back as the same DT_STRING bytes. A reply that was not UTF-8 is
read with ``surrogateescape`` and its strings turned back into the bytes it held
(``raw_bytes``).
"""

from __future__ import annotations

import base64
import json
from typing import Callable

import numpy as np

from tfserving_wire.json_values import decode_b64, dense_shape

# Deeper nesting than this is no real tensor, and the cap keeps recursion bounded on any input.
MAX_RANK = 32
# One bad tensor of a million elements must not produce a million lines.
MAX_PROBLEMS_PER_TENSOR = 10

NUMBER, BOOLEAN, STRING = "number", "boolean", "string"
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64_MAX = (1 << 64) - 1


# In this order: bool is an int to Python, and not a number to JSON.
_JSON_TYPE_NAMES = ((type(None), "null"), (bool, "boolean"), ((int, float), "number"),
                    (str, "string"), (list, "list"), (dict, "object"))


def json_type_name(value) -> str:
    """The JSON name of a parsed value, for messages ("got string")."""
    return next((name for kind, name in _JSON_TYPE_NAMES if isinstance(value, kind)),
                type(value).__name__)


def is_b64_object(value) -> bool:
    """TF Serving treats an object whose only key is "b64" as a binary value, not as named
    inputs/outputs."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def utf8_bytes(text: str) -> bytes:
    """A JSON string as DT_STRING bytes. A lone surrogate (only a ``\\uD800``-style escape
    makes one) keeps its three-byte form rather than failing."""
    return text.encode("utf-8", "surrogatepass")


def raw_bytes(text: str) -> bytes:
    """A string of a reply decoded with ``surrogateescape`` as the bytes the reply held: each
    byte that was not UTF-8 became one lone surrogate U+DC80..U+DCFF, which this turns back.
    Other lone surrogates can only come from escapes, which keep their ``utf8_bytes`` form."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return utf8_bytes(text)


def shape_text(shape) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


def kind_of_array(array: np.ndarray) -> str | None:
    """number / boolean / string, or None for dtypes a golden set never holds."""
    kind = array.dtype.kind
    if kind == "b":
        return BOOLEAN
    if kind in "iuf":
        return NUMBER
    if kind in "OUS":
        return STRING
    return None


class _Collector:
    """Leaves of one tensor in order, with the kind set by the first leaf and capped problems."""

    def __init__(self, problems: list[str], strings: Callable[[str], bytes] | None) -> None:
        self.problems = problems
        self.strings = strings  # str -> bytes; None keeps str
        self.leaves: list = []
        self.kind: str | None = None
        self.has_float = False
        self.reported = 0
        self.suppressed = 0

    def problem(self, where: str, message: str) -> None:
        if self.reported < MAX_PROBLEMS_PER_TENSOR:
            self.problems.append(f"{where}: {message}")
            self.reported += 1
        else:
            self.suppressed += 1

    def add_leaf(self, value, where: str) -> None:
        kind, leaf = self._classify(value, where)
        if kind is None:
            return
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            self.problem(where, f"expected a {self.kind}, got {kind}")
            return
        self.leaves.append(leaf)

    def _classify(self, value, where: str):
        if isinstance(value, bool):
            return BOOLEAN, value
        if isinstance(value, int):
            if not _INT64[0] <= value <= _UINT64_MAX:
                self.problem(where, f"integer {_short(value)} does not fit in 64 bits")
                return None, None
            return NUMBER, value
        if isinstance(value, float):
            self.has_float = True
            return NUMBER, value
        if isinstance(value, str):
            return STRING, self.strings(value) if self.strings else value
        if is_b64_object(value):
            text = value["b64"]
            if not isinstance(text, str):
                self.problem(where, f'"b64" must be a string, got {json_type_name(text)}')
                return None, None
            try:
                return STRING, decode_b64(text)
            except ValueError:
                self.problem(where, "invalid base64 in {\"b64\": ...}")
                return None, None
        expected = f"a {self.kind}" if self.kind else "a number, boolean, string or {\"b64\": ...}"
        self.problem(where, f"expected {expected}, got {json_type_name(value)}")
        return None, None


def _walk(value, shape: list[int], level: int, where: str, out: _Collector) -> None:
    if level == len(shape):
        if isinstance(value, list):
            out.problem(where, f"expected a {out.kind or 'value'}, got list")
        else:
            out.add_leaf(value, where)
        return
    if not isinstance(value, list):
        out.problem(where, f"expected a list of {shape[level]} elements, got {json_type_name(value)}")
        return
    if len(value) != shape[level]:
        out.problem(where, f"has {len(value)} elements where its siblings have {shape[level]}")
        return
    for index, item in enumerate(value):
        _walk(item, shape, level + 1, f"{where}[{index}]", out)


def json_to_array(value, field: str, problems: list[str], *, canonical: bool = True,
                  raw_strings: bool = False, scalar: bool = False, empty: bool = False,
                  example_path: Callable[[int], str] | None = None) -> np.ndarray | None:
    """A JSON tensor whose first axis is the example axis, as a numpy array; None (with
    ``problems`` appended) when it is not one. ``example_path(i)`` names example ``i`` in
    messages (default ``field[i]``).

    ``canonical`` turns strings into bytes (``raw_bytes`` with ``raw_strings``, for a reply
    read with surrogateescape). With ``scalar``, a bare value is a 0-d array (a tensor
    without example axis); with ``empty``, ``[]`` is an array of zero rows, shape [0]."""
    if example_path is None:
        def example_path(index: int) -> str:
            return f"{field}[{index}]"
    out = _Collector(problems, (raw_bytes if raw_strings else utf8_bytes) if canonical else None)
    before = len(problems)
    if scalar and not isinstance(value, list):
        out.add_leaf(value, field)
        return None if len(problems) > before else _build(out, [])
    if not isinstance(value, list):
        problems.append(f"{field}: expected a list with one entry per example, "
                        f"got {json_type_name(value)}")
        return None
    if not value:
        if empty:
            # `[]` says nothing past the example axis: no inner shape, no dtype.
            return np.zeros((0,), dtype=np.float64)
        problems.append(f"{field}: must not be empty")
        return None
    example_shape = dense_shape(value[0], MAX_RANK)
    if len(example_shape) >= MAX_RANK:
        problems.append(f"{field}: nested deeper than {MAX_RANK} levels")
        return None
    for index, example in enumerate(value):
        where = example_path(index)
        shape = dense_shape(example, MAX_RANK)
        if shape != example_shape:
            out.problem(where, f"shape {shape_text(shape)} differs from example 0's shape "
                               f"{shape_text(example_shape)}")
            continue
        _walk(example, example_shape, 0, where, out)
    if out.suppressed:
        problems.append(f"{field}: {out.suppressed} more problems like these not shown")
    if len(problems) > before:
        return None
    return _build(out, [len(value)] + example_shape)


def _build(out: _Collector, shape: list[int]) -> np.ndarray:
    if out.kind == STRING:
        array = np.empty(len(out.leaves), dtype=object)
        array[:] = out.leaves
        return array.reshape(shape)
    if out.kind == BOOLEAN:
        return np.array(out.leaves, dtype=np.bool_).reshape(shape)
    if out.kind is None:  # no leaves at all, e.g. shape [3, 0]
        return np.zeros(shape, dtype=np.float64)
    if out.has_float:
        return np.array(out.leaves, dtype=np.float64).reshape(shape)
    if any(leaf > _INT64[1] for leaf in out.leaves):
        if min(out.leaves) < 0:
            return np.array(out.leaves, dtype=np.float64).reshape(shape)
        return np.array(out.leaves, dtype=np.uint64).reshape(shape)
    return np.array(out.leaves, dtype=np.int64).reshape(shape)


def canonical_strings(array: np.ndarray) -> np.ndarray:
    """String arrays (object of str/bytes, numpy U or S) as object arrays of bytes; other
    arrays unchanged."""
    if array.dtype.kind not in "OUS":
        return array
    encode = np.frompyfunc(lambda item: utf8_bytes(item) if isinstance(item, str) else item,
                           1, 1)
    result = np.empty(array.shape, dtype=object)
    if array.size:
        result[...] = encode(array.astype(object))
    return result


def json_default(value):
    """json.dumps hook: bytes become TF Serving's binary form, numpy scalars plain values."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def dumps_compact(document) -> str:
    """JSON for a REST body: floats as ``repr`` (round-trips exactly), non-finite floats as the
    bare NaN/Infinity/-Infinity tokens TF Serving accepts, bytes as ``{"b64": ...}``."""
    return json.dumps(document, allow_nan=True, default=json_default, separators=(",", ":"))


def array_to_json(array: np.ndarray, *, readable_strings: bool = False):
    """Nested lists of plain Python values. With ``readable_strings``, bytes that are valid
    UTF-8 become ``str`` (a golden file stays readable); the rest stay ``bytes`` for b64."""
    if readable_strings and array.dtype.kind in "OS":
        array = np.frompyfunc(_readable, 1, 1)(array.astype(object))
        if not isinstance(array, np.ndarray):  # 0-d input gives a scalar back
            return array
    return np.asarray(array).tolist()


def _readable(item):
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            return item
    return item


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:20] + "..." + text[-10:]
