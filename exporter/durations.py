"""Prometheus-style durations ("500ms", "1m30s", "2d") as float seconds.

The grammar follows Prometheus's own: integer amounts, units from largest to smallest, each
unit at most once. Strings must carry a unit because a bare "5" is ambiguous (seconds?
milliseconds?); the one exception is "0", which means the same in every unit. YAML numbers
(``timeout: 10``) are taken as seconds, since there the type already says "a number".
"""

from __future__ import annotations

import math
import re

# Largest to smallest: the order a duration string must follow. A year is 365 days, as in
# Prometheus.
_MS_PER_UNIT = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
_UNIT_ORDER = list(_MS_PER_UNIT)
_UNIT_LIST = ", ".join(_UNIT_ORDER[::-1])  # "ms, s, m, h, d, w, y", smallest first reads best

_PART = re.compile(r"(\d+)([a-zA-Z]+)")
_WELL_FORMED = re.compile(r"(?:\d+[a-zA-Z]+)+")
_FRACTION = re.compile(r"\d*\.\d+[a-zA-Z]+")


def parse_duration(value: str | int | float) -> float:
    """Return ``value`` in seconds.

    Accepts a duration string such as ``"1m30s"`` or a non-negative int/float of seconds
    (what YAML gives for ``timeout: 10``). Raises ``ValueError`` quoting the input.
    """
    # bool is an int subclass; "timeout: true" is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f'invalid duration {value!r}: expected a string like "30s" or a number of seconds')
    if not isinstance(value, str):
        return _seconds_from_number(value)
    return _seconds_from_string(value)


def _seconds_from_number(value: int | float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"invalid duration {value}: must be a finite number of seconds")
    if value < 0:
        raise ValueError(f"invalid duration {value}: must not be negative")
    return float(value)


def _seconds_from_string(text: str) -> float:
    def fail(reason: str) -> ValueError:
        return ValueError(f'invalid duration "{text}": {reason}')

    if text == "":
        raise fail("empty string")
    if text == "0":
        return 0.0
    if text.startswith("-"):
        raise fail("must not be negative")
    if text.isdigit():
        raise fail(f'missing unit (for example "{text}s"); units are {_UNIT_LIST}')
    if _FRACTION.search(text):
        raise fail('fractions are not allowed, use a smaller unit '
                   '(for example "1500ms" instead of "1.5s")')
    if not _WELL_FORMED.fullmatch(text):
        raise fail('expected integers with units, such as "500ms", "1m30s" or "2h"')

    total_ms = 0
    previous_rank = -1
    for amount, unit in _PART.findall(text):
        if unit not in _MS_PER_UNIT:
            raise fail(f'unknown unit "{unit}"; units are {_UNIT_LIST}')
        rank = _UNIT_ORDER.index(unit)
        if rank <= previous_rank:
            raise fail("units must go from largest to smallest, each at most once")
        previous_rank = rank
        total_ms += int(amount) * _MS_PER_UNIT[unit]
    try:
        # Dividing the exact integer count keeps parse(format(x)) == x for whole milliseconds.
        return total_ms / 1000
    except OverflowError:
        raise fail("too large") from None


def format_duration(seconds: float) -> str:
    """Render ``seconds`` the way Prometheus writes durations: ``90`` -> ``"1m30s"``.

    Rounds to whole milliseconds (the grammar's smallest unit); zero is ``"0s"``. Raises
    ``ValueError`` for negative or non-finite values, which no duration string can express.
    """
    is_number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not is_number or not math.isfinite(seconds):
        raise ValueError(
            f"cannot format {seconds!r} as a duration: expected a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: must not be negative")
    remaining_ms = round(seconds * 1000)
    if remaining_ms == 0:
        return "0s"
    parts = []
    for unit in _UNIT_ORDER:
        amount, remaining_ms = divmod(remaining_ms, _MS_PER_UNIT[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def is_exact_duration(seconds: float) -> bool:
    """True when ``format_duration(seconds)`` parses back to exactly ``seconds``."""
    try:
        return parse_duration(format_duration(seconds)) == seconds
    except ValueError:
        return False
