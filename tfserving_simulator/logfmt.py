"""The simulator's log lines in logfmt, the format of the exporter's own (``ts``, ``level``,
``logger``, ``msg``, then ``exc`` for a traceback), so a demo or a test run reads as one log:

    ts=2026-11-22T13:00:00.000Z level=error logger=tfserving_simulator.server_core msg="..."

The simulator may not import the exporter, hence a formatter of its own.
"""

from __future__ import annotations

import json
import logging
import time
from typing import IO

_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


def _quoted(text: str) -> str:
    # JSON's string escapes are logfmt's (Go's strconv.Quote for what a log line holds).
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = _LEVEL_NAMES.get(record.levelno, "error")
        line = (f"ts={stamp}.{int(record.msecs):03d}Z level={level} logger={record.name} "
                f"msg={_quoted(record.getMessage())}")
        if record.exc_info:
            line += f" exc={_quoted(self.formatException(record.exc_info))}"
        return line


class _SimulatorHandler(logging.StreamHandler):
    """Marks the handler installed here, so configuring again replaces it."""


def configure_logging(stream: IO[str], level: int = logging.INFO) -> None:
    """Write the ``tfserving_simulator`` loggers' lines at ``level`` and above to ``stream``."""
    logger = logging.getLogger("tfserving_simulator")
    for handler in [h for h in logger.handlers if isinstance(h, _SimulatorHandler)]:
        logger.removeHandler(handler)
    handler = _SimulatorHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
