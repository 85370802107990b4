"""Log output for the ``exporter`` package: logfmt (Prometheus exporters' default) or JSON lines.

    ts=2026-11-22T13:00:00.000Z level=info logger=exporter.server msg="listening" address=:9850

Key/values passed as ``logger.info("listening", extra={"address": ":9850"})`` follow the fixed
keys. Only the ``exporter`` logger is configured; the root logger (and pytest's capture of it)
is left alone.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections import OrderedDict
from typing import IO, Iterator

from exporter.textclip import clip_text

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")

PACKAGE_LOGGER = "exporter"

_LEVEL_NUMBERS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                  "error": logging.ERROR}
# Prometheus' level names; CRITICAL has no place in them and is shown as error.
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FIXED_KEYS = ("ts", "level", "logger", "msg", "exc")


# A log line's message and each extra value are cut to this; a traceback to the second.
MAX_MESSAGE_CHARS = 2048
MAX_TRACEBACK_CHARS = 8192
# Warnings and errors about one problem (same logger, level, message template and first
# argument, e.g. "collector %s failed" for one collector) are logged once per window; the
# first line after it says how many were held back. Bounded in the problems it remembers.
RATE_LIMIT_SECONDS = 60.0
_RATE_LIMIT_KEYS = 1024


class RateLimit(logging.Filter):
    """Keeps a problem that recurs on every scrape (a hostile reply, a broken file) from
    writing a line per scrape: the log stays readable and its growth bounded."""

    def __init__(self, window: float = RATE_LIMIT_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple, list] = OrderedDict()  # key -> [last logged, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        key = (record.name, record.levelno, str(record.msg)[:200], clip_text(str(first), 200))
        now = self._clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self._window:
                entry[1] += 1
                return False
            held = entry[1] if entry is not None else 0
            self._seen[key] = [now, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > _RATE_LIMIT_KEYS:
                self._seen.popitem(last=False)
        if held:
            record.suppressed = held  # shown as suppressed=N: lines held back since the last
        return True


class _ExporterHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def configure_logging(level: str, fmt: str, stream: IO[str] | None = None) -> logging.Logger:
    """Send the ``exporter`` package's logs at ``level`` and above to ``stream`` (stderr).

    Safe to call again (after a config reload, or from every test): the previous handler is
    replaced, never duplicated. Raises ``ValueError`` for an unknown level or format.
    """
    if level not in _LEVEL_NUMBERS:
        raise ValueError(f'unknown log level "{level}"; use one of {", ".join(LOG_LEVELS)}')
    if fmt not in LOG_FORMATS:
        raise ValueError(f'unknown log format "{fmt}"; use one of {", ".join(LOG_FORMATS)}')

    logger = logging.getLogger(PACKAGE_LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _ExporterHandler)]:
        logger.removeHandler(handler)
        handler.close()

    handler = _ExporterHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RateLimit())
    logger.addHandler(handler)
    logger.setLevel(_LEVEL_NUMBERS[level])
    return logger


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value, always_quote=key == 'msg')}"
                        for key, value in _fields(record, self))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _json_value(value) for key, value in _fields(record, self)}
        return json.dumps(fields, ensure_ascii=False)


def _fields(record: logging.LogRecord,
            formatter: logging.Formatter) -> Iterator[tuple[str, object]]:
    yield "ts", _timestamp(record)
    yield "level", _LEVEL_NAMES.get(record.levelno, record.levelname.lower())
    yield "logger", record.name
    yield "msg", clip_text(record.getMessage(), MAX_MESSAGE_CHARS)
    for key, value in vars(record).items():
        if key in _STANDARD_ATTRS:
            continue
        if isinstance(value, str):
            value = clip_text(value, MAX_MESSAGE_CHARS)
        # extra={"level": ...} must not shadow the record's own level.
        yield (f"{key}_" if key in _FIXED_KEYS else key), value
    if record.exc_info:
        yield "exc", clip_text(formatter.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
    elif record.stack_info:
        yield "exc", record.stack_info


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _logfmt_value(value: object, always_quote: bool = False) -> str:
    text = _as_text(value)
    if not always_quote and text and not any(ch in text for ch in ' ="\\') and text.isprintable():
        return text
    return '"' + "".join(_escape_char(ch) for ch in text) + '"'


def _escape_char(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if not ch.isprintable():
        return f"\\u{ord(ch):04x}"
    return ch


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _json_value(value: object) -> object:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        # JSON has no NaN or Infinity; a string keeps the line parseable.
        return value if math.isfinite(value) else str(value)
    return str(value)
