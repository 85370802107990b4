"""``--monitoring_config_file``: the text-format ``MonitoringConfig`` TF Serving reads.

Its proto module is not in the ``tensorflow-serving-api`` wheel, and the message is tiny:
``prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }``. This parser
accepts protobuf text-format syntax for exactly those fields (``:`` before ``{`` optional,
``,``/``;`` separators, ``#`` comments, either quote) and rejects anything else, naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tfserving_simulator.errors import ServingError

DEFAULT_PATH = "/monitoring/prometheus/metrics"

_TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*|[0-9]+)
  | (?P<punct>[{}:,;<>])
""", re.VERBOSE)
_BOOLS = {"true": True, "t": True, "1": True, "True": True,
          "false": False, "f": False, "0": False, "False": False}


@dataclass(frozen=True)
class MonitoringConfig:
    prometheus_enable: bool = False
    prometheus_path: str = ""

    @property
    def effective_path(self) -> str:
        return self.prometheus_path or DEFAULT_PATH


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected character {text[position]!r} at offset {position}")
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group(), position))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Reader:
    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, what: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise ValueError(f"expected {what} but the file ended")
        self.index += 1
        return token

    def skip_separator(self) -> None:
        token = self.peek()
        if token is not None and token[1] in (",", ";"):
            self.index += 1


def _message(reader: _Reader, fields: dict[str, str], closing: str | None) -> dict[str, object]:
    values: dict[str, object] = {}
    while True:
        token = reader.peek()
        if token is None:
            if closing is not None:
                raise ValueError(f"missing '{closing}' at the end of the file")
            return values
        if closing is not None and token[1] == closing:
            reader.index += 1
            return values
        kind, name, offset = reader.take("a field name")
        if kind != "word" or name not in fields:
            raise ValueError(f"unknown field {name!r} at offset {offset}; "
                             f"expected one of {sorted(fields)}")
        if name in values:
            raise ValueError(f"field {name!r} given twice")
        if fields[name] == "message":
            if reader.peek() is not None and reader.peek()[1] == ":":
                reader.index += 1
            opener = reader.take("'{'")
            if opener[1] not in ("{", "<"):
                raise ValueError(f"expected '{{' after {name} at offset {opener[2]}")
            values[name] = _message(reader, {"enable": "bool", "path": "string"},
                                    "}" if opener[1] == "{" else ">")
        else:
            colon = reader.take("':'")
            if colon[1] != ":":
                raise ValueError(f"expected ':' after {name} at offset {colon[2]}")
            kind, value, offset = reader.take(f"a value for {name}")
            if fields[name] == "bool":
                if value not in _BOOLS:
                    raise ValueError(f"{name} must be true or false, got {value!r}")
                values[name] = _BOOLS[value]
            else:
                if kind != "string":
                    raise ValueError(f"{name} must be a quoted string, got {value!r}")
                values[name] = _unquote(value)
        reader.skip_separator()


def parse_flat_message(text: str, fields: dict[str, str]) -> dict[str, object]:
    """A text-format message whose fields are all scalars (``"string"`` or ``"bool"``)."""
    return _message(_Reader(_tokens(text)), fields, None)


def parse_monitoring_config(text: str) -> MonitoringConfig:
    """Parse the text format; raises ``ValueError`` saying what is wrong and where."""
    values = _message(_Reader(_tokens(text)), {"prometheus_config": "message"}, None)
    prometheus = values.get("prometheus_config", {})
    return MonitoringConfig(bool(prometheus.get("enable", False)), str(prometheus.get("path", "")))


def read_monitoring_config(path: str) -> MonitoringConfig:
    """Read ``--monitoring_config_file``; failures are startup errors, like TF Serving's."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as err:
        raise ServingError("NOT_FOUND", f"{path}; {err.strerror or err}") from None
    try:
        return parse_monitoring_config(text)
    except ValueError as err:
        raise ServingError("INVALID_ARGUMENT",
                           f"Invalid protobuf file: '{path}': {err}") from None
