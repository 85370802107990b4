"""The kinds of value a setting can hold (exporter/config.py declares the settings).

A kind checks the YAML type of a value, converts it, parses it from flag text, dumps it back
to YAML, and names the Python type it produces: a setting's dataclass field must be annotated
with that type (exporter.config checks it at import).
"""

from __future__ import annotations

import datetime
import re
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from exporter.durations import format_duration, is_exact_duration, parse_duration


class Problems(ValueError):
    """Several problems inside one value, each at a sub-path such as ``[2]``."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items
        super().__init__("; ".join(message for _, message in items))


class Kind:
    doc_name = ""  # shown in the reference's "type" column
    expected = ""  # "expected <this>, got list"
    # What a converted value is: a setting's dataclass field must be annotated with exactly
    # this (checked at import), so the annotation readers see cannot drift from the loader.
    python_type: object = None
    metavar = "VALUE"  # in --help
    flag_repeats = False  # a list: its flag is given once per item

    def accepts(self, raw: object) -> bool:
        raise NotImplementedError

    def convert(self, raw: Any) -> Any:
        return raw

    def from_flag(self, text: str) -> object:
        return text

    def dump(self, value: Any) -> object:
        return value

    def coerce(self, raw: object) -> Any:
        if not self.accepts(raw):
            raise ValueError(f"expected {self.expected}, got {type_name(raw)}")
        return self.convert(raw)


class String(Kind):
    doc_name, expected, python_type = "string", "a string", str

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, str)


class Choice(String):
    def __init__(self, options: Iterable[str]):
        self.options = tuple(options)
        self.doc_name = " \\| ".join(f"`{option}`" for option in self.options)
        self.metavar = "|".join(self.options)

    def convert(self, raw: str) -> str:
        if raw not in self.options:
            raise ValueError(f'must be one of {", ".join(self.options)}, got "{raw}"')
        return raw


class Boolean(Kind):
    doc_name, expected, python_type = "boolean", "a boolean", bool
    metavar = "true|false"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, bool)

    def from_flag(self, text: str) -> object:
        if text not in ("true", "false"):
            raise ValueError(f'expected true or false, got "{text}"')
        return text == "true"


class Integer(Kind):
    doc_name, expected, python_type = "integer", "an integer", int
    metavar = "N"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, int) and not isinstance(raw, bool)

    def from_flag(self, text: str) -> object:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f'expected an integer, got "{text}"') from None


class Duration(Kind):
    doc_name, expected, python_type = "duration", 'a duration such as "30s"', float
    metavar = "DURATION"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (str, int, float)) and not isinstance(raw, bool)

    def convert(self, raw: str | int | float) -> float:
        return parse_duration(raw)

    def dump(self, value: float) -> object:
        # Sub-millisecond values have no duration string; a number of seconds still loads.
        return format_duration(value) if is_exact_duration(value) else value


# A size in bytes: a whole number of bytes, or one with a binary unit (powers of 1024 only,
# so that "16MiB" cannot be read two ways).
BYTE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_BYTE_SIZE = re.compile(r"([0-9]+)(" + "|".join(BYTE_UNITS) + r")?")
BYTE_SIZE_PATTERN = r"^[0-9]+(" + "|".join(BYTE_UNITS) + r")?$"


def parse_byte_size(raw: str | int) -> int:
    if isinstance(raw, int):
        if raw < 0:
            raise ValueError(f"must be at least 0 bytes, got {raw}")
        return raw
    match = _BYTE_SIZE.fullmatch(raw.strip())
    if match is None:
        raise ValueError(f'expected a size such as "16MiB" (units B, KiB, MiB, GiB), got "{raw}"')
    return int(match.group(1)) * BYTE_UNITS[match.group(2) or "B"]


def format_byte_size(value: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if value and value % BYTE_UNITS[unit] == 0:
            return f"{value // BYTE_UNITS[unit]}{unit}"
    return f"{value}B"


class ByteSize(Kind):
    doc_name, expected, python_type = "size", 'a size such as "16MiB"', int
    metavar = "SIZE"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (str, int)) and not isinstance(raw, bool)

    def convert(self, raw: str | int) -> int:
        return parse_byte_size(raw)

    def dump(self, value: int) -> object:
        return format_byte_size(value)


class StringList(Kind):
    doc_name, expected, python_type = "list of strings", "a list of strings", tuple[str, ...]
    flag_repeats = True

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (list, tuple))

    def convert(self, raw: list | tuple) -> tuple[str, ...]:
        problems = [(f"[{index}]", f"expected a string, got {type_name(item)}")
                    for index, item in enumerate(raw) if not isinstance(item, str)]
        if problems:
            raise Problems(problems)
        return tuple(raw)

    def from_flag(self, text: str) -> object:
        return [text]

    def dump(self, value: tuple[str, ...]) -> object:
        return list(value)


class Number(Kind):
    doc_name, expected, python_type = "number", "a number", float
    metavar = "NUMBER"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)

    def convert(self, raw: int | float) -> float:
        return float(raw)

    def from_flag(self, text: str) -> object:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f'expected a number, got "{text}"') from None


class DurationMap(Kind):
    doc_name, expected = "mapping of name to duration", "a mapping of names to durations"
    python_type = Mapping[str, float]

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, dict)

    def convert(self, raw: dict) -> Mapping[str, float]:
        converted: dict[str, float] = {}
        problems = []
        for key, value in raw.items():
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f'expected a duration such as "30s", got {type_name(value)}')
                converted[str(key)] = positive_duration(parse_duration(value))
            except ValueError as err:
                problems.append((f".{key}", str(err)))
        if problems:
            raise Problems(problems)
        return MappingProxyType(converted)

    def dump(self, value: Mapping[str, float]) -> object:
        return {key: DURATION.dump(seconds) for key, seconds in value.items()}


# Names of fleet modules: they are written in /probe URLs (``module=NAME``).
_MODULE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ModuleMap(Kind):
    """Named overlays of settings (``fleet.modules``); exporter.config checks each overlay's
    settings as it checks the file's, so here only its shape."""

    doc_name, expected = "mapping of name to settings", "a mapping of module names to settings"
    python_type = Mapping[str, Mapping[str, Any]]

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, dict)

    def convert(self, raw: dict) -> Mapping[str, Mapping[str, Any]]:
        converted: dict[str, Mapping[str, Any]] = {}
        problems = []
        for name, overlay in raw.items():
            if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
                problems.append((f".{name}", "module names are 1 to 64 letters, digits, "
                                 '"_", "." or "-"'))
            elif overlay is not None and not isinstance(overlay, dict):
                problems.append((f".{name}", f"expected a mapping of settings, got "
                                 f"{type_name(overlay)}"))
            else:
                converted[name] = MappingProxyType(dict(overlay or {}))
        if problems:
            raise Problems(problems)
        return MappingProxyType(converted)

    def dump(self, value: Mapping[str, Mapping[str, Any]]) -> object:
        return {name: _plain(overlay) for name, overlay in value.items()}


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


STRING, BOOLEAN, INTEGER, NUMBER = String(), Boolean(), Integer(), Number()
DURATION, STRING_LIST, DURATION_MAP = Duration(), StringList(), DurationMap()
BYTE_SIZE, MODULE_MAP = ByteSize(), ModuleMap()


def type_name(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                       ((list, tuple), "list"), (dict, "mapping"), (datetime.date, "date")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def each_item(check: Callable[[Any], Any]) -> Callable[[tuple], tuple]:
    """A check of a list setting from the check of one item: every item's problem is
    reported, at its index."""
    def check_all(items: tuple) -> tuple:
        problems = []
        for index, item in enumerate(items):
            try:
                check(item)
            except ValueError as err:
                problems.append((f"[{index}]", str(err)))
        if problems:
            raise Problems(problems)
        return items
    return check_all


def positive_duration(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value
