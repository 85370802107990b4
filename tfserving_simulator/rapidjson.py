"""JSON the way TF Serving's REST layer sees and writes it (rapidjson 1.1.0).

TF Serving parses request bodies with rapidjson (``kParseNanAndInfFlag``) and writes responses
with rapidjson's ``PrettyWriter``. Clients can see both: parse errors quote rapidjson's English
message and byte offset, and response bodies carry PrettyWriter's layout, including the odd
shapes produced when TF Serving toggles ``kFormatSingleLineArray`` half-way through an array.
Python's ``json`` module matches neither, so this module reimplements the small parts needed.

Parsed values: ``None``, ``bool``, ``int`` (rapidjson's integer kinds), ``float`` (its doubles,
including NaN/Infinity tokens), ``str``, ``list`` and :class:`JsonObject` (members in document
order; lookups return the first member of a name, like ``FindMember``).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Callable

_UINT64_MAX = (1 << 64) - 1
_INT64_MIN_MAGNITUDE = 1 << 63
_FLOAT32_MAX = 3.4028234663852886e38


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
_ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
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
_HEX = b"0123456789abcdefABCDEF"
# rapidjson's nesting is only bounded by its stack; ours by Python's, so cap it explicitly.
_MAX_DEPTH = 400


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

    def document(self):
        self.skip_whitespace()
        if self.peek() == 0:
            raise JsonParseError(_DOCUMENT_EMPTY, self.pos)
        value = self.value(0)
        self.skip_whitespace()
        if self.peek() != 0:
            raise JsonParseError(_ROOT_NOT_SINGULAR, self.pos)
        return value

    def value(self, depth: int):
        if depth > _MAX_DEPTH:
            raise JsonParseError(_VALUE_INVALID, self.pos)
        char = self.peek()
        if char == ord("n"):
            return self.literal("null", None)
        if char == ord("t"):
            return self.literal("true", True)
        if char == ord("f"):
            return self.literal("false", False)
        if char == ord('"'):
            return self.string()
        if char == ord("{"):
            return self.object(depth)
        if char == ord("["):
            return self.array(depth)
        return self.number()

    def literal(self, text: str, value):
        self.pos += 1
        for char in text[1:]:
            if not self.consume(char):
                raise JsonParseError(_VALUE_INVALID, self.pos)
        return value

    def object(self, depth: int) -> JsonObject:
        return self._members(JsonObject(), "}", _MISS_COMMA_OR_CURLY, lambda: self.member(depth))

    def member(self, depth: int) -> tuple[str, object]:
        if self.peek() != ord('"'):
            raise JsonParseError(_MISS_NAME, self.pos)
        name = self.string()
        self.skip_whitespace()
        if not self.consume(":"):
            raise JsonParseError(_MISS_COLON, self.pos)
        self.skip_whitespace()
        return name, self.value(depth + 1)

    def array(self, depth: int) -> list:
        return self._members([], "]", _MISS_COMMA_OR_SQUARE, lambda: self.value(depth + 1))

    def _members(self, into, close: str, missing: str, item: Callable[[], object]):
        """The items of an object or an array, after its opening character, up to ``close``;
        ``into`` is a list or a JsonObject; ``missing`` is rapidjson's error when neither ","
        nor ``close`` follows an item."""
        self.pos += 1
        self.skip_whitespace()
        if self.consume(close):
            return into
        while True:
            into.append(item())
            self.skip_whitespace()
            if self.consume(","):
                self.skip_whitespace()
            elif self.consume(close):
                return into
            else:
                raise JsonParseError(missing, self.pos)

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
        while self.peek() in _DIGITS and self.peek() != 0:
            self.pos += 1

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
        if not is_double:
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
    """rapidjson ``Writer::Double``: shortest digits, laid out by its ``Prettify``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
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


def is_float32_range(value: float) -> bool:
    """rapidjson's ``IsFloat``: a double whose magnitude fits a float."""
    return -_FLOAT32_MAX <= value <= _FLOAT32_MAX


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

    def value(self, value) -> None:
        """Write a parsed document (``Value::Accept``)."""
        if value is None:
            self.raw("null")
        elif isinstance(value, bool):
            self.raw("true" if value else "false")
        elif isinstance(value, int):
            self.raw(str(value))
        elif isinstance(value, float):
            self.raw(shortest_double_text(value))
        elif isinstance(value, str):
            self.string(value)
        elif isinstance(value, JsonObject):
            self.start_object()
            for name, member in value:
                self.key(name)
                self.value(member)
            self.end_object()
        else:
            self.start_array()
            for item in value:
                self.value(item)
            self.end_array()


def value_to_string(value) -> str:
    """TF Serving's ``JsonValueToString`` for error messages (pretty-printed, floats as floats)."""
    writer = PrettyWriter()
    if isinstance(value, float) and (not math.isfinite(value) or is_float32_range(value)):
        writer.raw(float_text(value, single_precision=True))
    elif isinstance(value, float):
        writer.raw(float_text(value, single_precision=False))
    else:
        writer.value(value)
    return writer.text()


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
