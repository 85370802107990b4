"""JSON the way TF Serving's REST layer sees and writes it (rapidjson 1.1.0).

TF Serving parses request bodies with rapidjson (``util/json_tensor.cc``, ``ParseJson``: flags
``kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag`` since 2.18) and writes
responses with rapidjson's ``PrettyWriter``. Clients can see both: parse errors quote rapidjson's
English message and byte offset, error messages quote the request through a size-capped writer,
and response bodies carry PrettyWriter's layout, including the odd shapes produced when TF
Serving toggles ``kFormatSingleLineArray`` half-way through an array. Python's ``json`` module
matches none of this, so this module reimplements the small parts needed.

Parsed values: ``None``, ``bool``, ``int`` (rapidjson's integer kinds), ``float`` (its doubles,
including NaN/Infinity tokens), ``str``, ``list`` and :class:`JsonObject` (members in document
order; lookups return the first member of a name, like ``FindMember``).
"""

from __future__ import annotations

import itertools
import math
import re
from decimal import Decimal

_UINT64_MAX = (1 << 64) - 1
_INT64_MIN_MAGNITUDE = 1 << 63


class JsonObject:
    """A JSON object as ``(name, value)`` pairs in document order.

    Deliberately not a ``list`` subclass, so ``isinstance(value, list)`` means a JSON array.
    """

    def __init__(self) -> None:
        self._members: list[tuple[str, object]] = []

    def append(self, member: tuple[str, object]) -> None:
        self._members.append(member)

    def __iter__(self):
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, index: int) -> tuple[str, object]:
        return self._members[index]

    def find(self, name: str, default=None):
        for key, value in self._members:
            if key == name:
                return value
        return default

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self)

    def keys(self) -> list[str]:
        return [key for key, _ in self]


class JsonParseError(ValueError):
    """rapidjson's parse error: English message (``GetParseError_En``) and byte offset."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset: {offset}")
        self.message = message
        self.offset = offset


_DOCUMENT_EMPTY = "The document is empty."
_VALUE_INVALID = "Invalid value."
_MISS_NAME = "Missing a name for object member."
_MISS_COLON = "Missing a colon after a name of object member."
_MISS_COMMA_OR_CURLY = "Missing a comma or '}' after an object member."
_MISS_COMMA_OR_SQUARE = "Missing a comma or ']' after an array element."
_BAD_HEX = "Incorrect hex digit after \\u escape in string."
_BAD_SURROGATE = "The surrogate pair in string is invalid."
_BAD_ESCAPE = "Invalid escape character in string."
_MISS_QUOTE = "Missing a closing quotation mark in string."
_NUMBER_TOO_BIG = "Number too big to be stored in double."
_MISS_FRACTION = "Miss fraction part in number."
_MISS_EXPONENT = "Miss exponent in number."

_SIMPLE_ESCAPES = {
    ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f",
    ord("n"): "\n", ord("r"): "\r", ord("t"): "\t",
}
_WHITESPACE = b" \n\r\t"
_DIGITS = b"0123456789"
_DIGIT_RUN = re.compile(rb"[0-9]*")
_HEX = b"0123456789abcdefABCDEF"

# The states of rapidjson's iterative parser (reader.h, IterativeParse) that outlive one token;
# its ObjectFinish/ArrayFinish states return at once to the state below them.
_START, _FINISH = "start", "finish"
_OBJECT_START, _MEMBER_KEY, _MEMBER_COLON, _MEMBER_VALUE, _MEMBER_COMMA = (
    "object", "key", "colon", "member", "member comma")
_ARRAY_START, _ELEMENT, _ELEMENT_COMMA = "array", "element", "element comma"
# The tokens each state accepts (reader.h, Predict): a structural character, "key" (a string
# where a member name may stand) or "value" (any other scalar).
_ACCEPTS = {
    _START: {"[", "{", "value"},
    _OBJECT_START: {"key", "}"},
    _MEMBER_KEY: {":"},
    _MEMBER_COLON: {"[", "{", "value"},
    _MEMBER_VALUE: {",", "}"},
    _MEMBER_COMMA: {"key"},  # no trailing comma: "}" here is an error
    _ARRAY_START: {"[", "{", "value", "]"},
    _ELEMENT: {",", "]"},
    _ELEMENT_COMMA: {"[", "{", "value"},  # likewise "]"
}
# HandleError: the message for a token a state does not accept, or for the end of the input.
_STATE_ERRORS = {
    _START: _DOCUMENT_EMPTY, _OBJECT_START: _MISS_NAME, _MEMBER_COMMA: _MISS_NAME,
    _MEMBER_KEY: _MISS_COLON, _MEMBER_VALUE: _MISS_COMMA_OR_CURLY, _MEMBER_COLON: _VALUE_INVALID,
    _ARRAY_START: _VALUE_INVALID, _ELEMENT_COMMA: _VALUE_INVALID, _ELEMENT: _MISS_COMMA_OR_SQUARE,
}

# The state once a value is complete, by the state it started in (otherwise an array element).
_STATE_AFTER_VALUE = {_START: _FINISH, _MEMBER_COLON: _MEMBER_VALUE}
_STRUCTURAL = frozenset(b"[]{},:")


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        # rapidjson's UTF-8 MemoryStream wrapper skips each byte of a BOM individually.
        for bom_byte in (0xEF, 0xBB, 0xBF):
            if self.peek() == bom_byte:
                self.pos += 1

    def peek(self) -> int:
        # MemoryStream yields '\0' at the end; a NUL byte in the body looks the same.
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def consume(self, char: str) -> bool:
        if self.peek() == ord(char):
            self.pos += 1
            return True
        return False

    def skip_whitespace(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in _WHITESPACE:
            self.pos += 1

    def token(self, state: str) -> str:
        """rapidjson's ``Tokenize``, read in the light of the state: a string is a member name
        where a name may stand; anything that is no structural character is a scalar."""
        char = self.peek()
        if char in _STRUCTURAL:
            return chr(char)
        return "key" if char == 34 and state in (_OBJECT_START, _MEMBER_COMMA) else "value"

    def document(self):
        """One root value, parsed without recursion (so any depth is fine, as in TF Serving
        since 2.18: json_tensor_test.cc DeeplyNestedWellFormed); whatever follows a complete
        root is not read (``kParseStopWhenDoneFlag``)."""
        state = _START
        root: list = []
        # Open containers, innermost last, each with the state to resume once it closes.
        open_containers: list[tuple[list | JsonObject, str]] = []
        key = ""
        self.skip_whitespace()
        while self.peek() != 0:
            token = self.token(state)
            if token not in _ACCEPTS[state]:
                raise JsonParseError(_STATE_ERRORS[state], self.pos)
            if token == "key":
                key, state = self.string(), _MEMBER_KEY
            elif token == ":":
                self.pos += 1
                state = _MEMBER_COLON
            elif token == ",":
                self.pos += 1
                state = _MEMBER_COMMA if state == _MEMBER_VALUE else _ELEMENT_COMMA
            elif token in "]}":
                self.pos += 1
                state = open_containers.pop()[1]
            else:
                value = self.scalar() if token == "value" else (
                    JsonObject() if token == "{" else [])
                parent = open_containers[-1][0] if open_containers else root
                parent.append((key, value) if isinstance(parent, JsonObject) else value)
                after = _STATE_AFTER_VALUE.get(state, _ELEMENT)
                if token == "value":
                    state = after
                else:
                    self.pos += 1
                    open_containers.append((value, after))
                    state = _OBJECT_START if token == "{" else _ARRAY_START
            if state == _FINISH:
                return root[0]
            self.skip_whitespace()
        raise JsonParseError(_STATE_ERRORS[state], self.pos)

    def scalar(self):
        """``ParseValue`` for what is not a container."""
        char = self.peek()
        if char == ord("n"):
            return self.literal("null", None)
        if char == ord("t"):
            return self.literal("true", True)
        if char == ord("f"):
            return self.literal("false", False)
        if char == ord('"'):
            return self.string()
        return self.number()

    def literal(self, text: str, value):
        self.pos += 1
        for char in text[1:]:
            if not self.consume(char):
                raise JsonParseError(_VALUE_INVALID, self.pos)
        return value

    def hex4(self, escape_offset: int) -> int:
        text = self.data[self.pos:self.pos + 4]
        if len(text) < 4 or any(byte not in _HEX for byte in text):
            raise JsonParseError(_BAD_HEX, escape_offset)
        self.pos += 4
        return int(text, 16)

    def string(self) -> str:
        self.pos += 1
        out = bytearray()
        while True:
            char = self.peek()
            if char == ord("\\"):
                escape_offset = self.pos
                self.pos += 1
                escaped = self.peek()
                if escaped in _SIMPLE_ESCAPES:
                    self.pos += 1
                    out += _SIMPLE_ESCAPES[escaped].encode()
                elif escaped == ord("u"):
                    self.pos += 1
                    out += self.unicode_escape(escape_offset)
                else:
                    raise JsonParseError(_BAD_ESCAPE, escape_offset)
            elif char == ord('"'):
                self.pos += 1
                # rapidjson does not validate UTF-8 by default: keep bytes as they came.
                return bytes(out).decode("utf-8", "surrogateescape")
            elif char < 0x20:
                if char == 0:
                    raise JsonParseError(_MISS_QUOTE, self.pos)
                raise JsonParseError(_BAD_ESCAPE, self.pos)
            else:
                out.append(char)
                self.pos += 1

    def unicode_escape(self, escape_offset: int) -> bytes:
        codepoint = self.hex4(escape_offset)
        if 0xD800 <= codepoint <= 0xDBFF:
            if not (self.consume("\\") and self.consume("u")):
                raise JsonParseError(_BAD_SURROGATE, escape_offset)
            low = self.hex4(escape_offset)
            if not 0xDC00 <= low <= 0xDFFF:
                raise JsonParseError(_BAD_SURROGATE, escape_offset)
            codepoint = 0x10000 + ((codepoint - 0xD800) << 10) + (low - 0xDC00)
        return chr(codepoint).encode("utf-8", "surrogatepass")

    def digits(self) -> None:
        self.pos = _DIGIT_RUN.match(self.data, self.pos).end()

    def number(self):
        start = self.pos
        minus = self.consume("-")
        if self.consume("0"):
            pass
        elif self.peek() in _DIGITS and self.peek() != 0:
            self.digits()
        elif self.peek() in (ord("N"), ord("I")):
            return self.nan_or_infinity(minus)
        else:
            raise JsonParseError(_VALUE_INVALID, self.pos)
        is_double = False
        if self.consume("."):
            if not (self.peek() in _DIGITS and self.peek() != 0):
                raise JsonParseError(_MISS_FRACTION, self.pos)
            self.digits()
            is_double = True
        if self.peek() in (ord("e"), ord("E")):
            self.pos += 1
            if not self.consume("+"):
                self.consume("-")
            if not (self.peek() in _DIGITS and self.peek() != 0):
                raise JsonParseError(_MISS_EXPONENT, self.pos)
            self.digits()
            is_double = True
        text = self.data[start:self.pos].decode("ascii")
        # More digits than any int64/uint64 holds: straight to the double path, which also
        # spares int() Python's limit on long digit strings (a ValueError past 4,300 digits).
        if not is_double and len(text.lstrip("-")) <= 20:
            value = int(text)
            if (value >= 0 and value <= _UINT64_MAX) or (value < 0 and -value <= _INT64_MIN_MAGNITUDE):
                return value
        number = float(text)
        if math.isinf(number):
            raise JsonParseError(_NUMBER_TOO_BIG, start)
        return number

    def nan_or_infinity(self, minus: bool) -> float:
        if self.consume("N"):
            if self.consume("a") and self.consume("N"):
                return math.nan
            raise JsonParseError(_VALUE_INVALID, self.pos)
        self.pos += 1  # the 'I'
        if not (self.consume("n") and self.consume("f")):
            raise JsonParseError(_VALUE_INVALID, self.pos)
        if self.peek() == ord("i"):
            if not all(self.consume(char) for char in "inity"):
                raise JsonParseError(_VALUE_INVALID, self.pos)
        return -math.inf if minus else math.inf


def parse(data: bytes):
    """Parse a request body like rapidjson does; raises :class:`JsonParseError`."""
    return _Parser(data).document()


# --- number text --------------------------------------------------------------------------

def shortest_double_text(value: float) -> str:
    """rapidjson ``Writer::Double`` for a finite double: shortest digits, laid out by its
    ``Prettify``."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    length = len(digits)
    point = length + exponent  # the value is 0.<digits> * 10**point
    prefix = "-" if value < 0 else ""
    if 0 <= exponent and point <= 21:
        return prefix + digits + "0" * exponent + ".0"
    if 0 < point <= 21:
        return prefix + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return prefix + "0." + "0" * (-point) + digits
    mantissa = digits if length == 1 else digits[0] + "." + digits[1:]
    return f"{prefix}{mantissa}e{point - 1}"


def float_text(value: float, single_precision: bool) -> str:
    """TF Serving's ``WriteDecimal``: ``%g`` if it round-trips, else full precision, plus ``.0``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if single_precision:
        import numpy as np  # local: only tensors need float32 arithmetic

        target = np.float32(value)
        text = "%g" % float(target)
        if np.float32(float(text)) != target:
            text = "%.9g" % float(target)
    else:
        text = "%g" % value
        if float(text) != value:
            text = "%.17g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


# --- writing ------------------------------------------------------------------------------

def _escape(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}.get(
                code, "\\u%04X" % code))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class PrettyWriter:
    """rapidjson's ``PrettyWriter`` (4-space indent) including ``kFormatSingleLineArray``.

    Layout decisions depend on the format option in force when each value *starts* and when
    each array *ends*, which is what makes TF Serving's ``[2.5, 3.0\\n    ]`` possible.
    """

    def __init__(self) -> None:
        self._out: list[str] = []
        self._counted = (0, 0)  # (parts, bytes) measured by byte_size so far
        self._levels: list[list] = []  # [in_array, value_count]
        self.single_line_arrays = False

    def text(self) -> str:
        return "".join(self._out)

    def _indent(self) -> None:
        self._out.append(" " * (4 * len(self._levels)))

    def _prefix(self) -> None:
        if not self._levels:
            return
        level = self._levels[-1]
        in_array, count = level
        if in_array:
            if count > 0:
                self._out.append(", " if self.single_line_arrays else ",")
            if not self.single_line_arrays:
                self._out.append("\n")
                self._indent()
        else:
            if count > 0:
                self._out.append(",\n" if count % 2 == 0 else ": ")
            else:
                self._out.append("\n")
            if count % 2 == 0:
                self._indent()
        level[1] += 1

    def start_object(self) -> None:
        self._start(array=False)

    def end_object(self) -> None:
        self._end(array=False)

    def start_array(self) -> None:
        self._start(array=True)

    def end_array(self) -> None:
        self._end(array=True)

    def _start(self, array: bool) -> None:
        self._prefix()
        self._levels.append([array, 0])
        self._out.append("[" if array else "{")

    def _end(self, array: bool) -> None:
        empty = self._levels.pop()[1] == 0
        # Single-line arrays close on the line of their last item; objects never do.
        if not empty and not (array and self.single_line_arrays):
            self._out.append("\n")
            self._indent()
        self._out.append("]" if array else "}")

    def key(self, name: str) -> None:
        self.string(name)

    def string(self, text: str) -> None:
        self._prefix()
        self._out.append(_escape(text))

    def raw(self, text: str) -> None:
        self._prefix()
        self._out.append(text)

    def byte_size(self) -> int:
        """What a ``StringBuffer`` would hold: the UTF-8 bytes written so far."""
        parts, size = self._counted
        size += sum(len(part.encode("utf-8", "surrogateescape")) for part in self._out[parts:])
        self._counted = (len(self._out), size)
        return size


_END_ARRAY, _END_OBJECT, _EXHAUSTED = object(), object(), object()


class _Key(str):
    """A member name, told apart from string values while walking a document."""


def _children(container) -> itertools.chain:
    """The events ``Value::Accept`` makes inside a container, its closing event last."""
    if isinstance(container, list):
        return itertools.chain(container, (_END_ARRAY,))
    members = itertools.chain.from_iterable((_Key(name), value) for name, value in container)
    return itertools.chain(members, (_END_OBJECT,))


# util/json_tensor.cc, kMaxJsonDebugStringBytes (since 2.18).
MAX_DEBUG_STRING_BYTES = 256


def debug_string(value) -> str:
    """TF Serving's ``JsonValueToDebugString``, how JSON is quoted in error messages.

    A ``PrettyWriter`` with single-line arrays (objects still break lines) fed through
    ``JsonWriterWithLimit``: each write is refused once the buffer holds 256 bytes, which ends
    the walk there (so the text is cut after the value that crossed the limit, not at 256
    bytes, and may be unbalanced). The writer's ``Double`` refuses NaN and infinities (no
    ``kWriteNanAndInfFlag``) after writing the separator, which also ends the walk. Walked
    without recursion: a request may nest to any depth.
    """
    writer = PrettyWriter()
    writer.single_line_arrays = True
    pending = [iter((value,))]  # iterators of write events, innermost container last
    while pending and writer.byte_size() < MAX_DEBUG_STRING_BYTES:
        item = next(pending[-1], _EXHAUSTED)
        if item is _EXHAUSTED:
            pending.pop()
        elif item is _END_ARRAY or item is _END_OBJECT:
            writer.end_array() if item is _END_ARRAY else writer.end_object()
            pending.pop()
        elif isinstance(item, _Key):
            writer.key(item)
        elif isinstance(item, (list, JsonObject)):
            writer.start_array() if isinstance(item, list) else writer.start_object()
            pending.append(_children(item))
        elif isinstance(item, float) and not math.isfinite(item):
            writer.raw("")
            break
        elif isinstance(item, str):
            writer.string(item)
        else:
            writer.raw(_scalar_text(item))
    return writer.text()


def _scalar_text(value) -> str:
    """rapidjson's writer for a parsed number or literal (doubles in shortest form)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return shortest_double_text(value)
    return str(value)


def type_name(value) -> str:
    """rapidjson type names used in TF Serving's messages."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, JsonObject):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def error_body(message: str) -> bytes:
    """The REST error body: ``{"error": message}`` pretty-printed, no trailing newline."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.text().encode("utf-8", "surrogateescape")
