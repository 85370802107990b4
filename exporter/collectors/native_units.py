"""TF Serving's microseconds as the seconds the bridge exports: durations, and bucket limits
as text without float noise (memoised). Separate so that the counters, the histograms and the
pass-through (which keeps TF's unit but writes its limits the same way) share one conversion
and one memo of limit texts.
"""

from __future__ import annotations

from exporter.exposition import format_value
from exporter.tfserving import page_checks as checks
from exporter.tfserving.page_checks import INF
from exporter.tfserving.prometheus_page import SizedCache, str_bytes

MICROSECONDS = 1e-6


def to_seconds(microseconds: float) -> float:
    """µs → s, rounded to 12 significant digits so 320 µs is 0.00032, not 0.00031999999999999997
    (TF's values carry at most 6 significant digits, or whole µs)."""
    return float(f"{microseconds * MICROSECONDS:.12g}")


# Bucket limit text -> (limit in seconds, its text), or _BAD_LIMIT. Keys of at most 32
# characters (TF's %g limits have at most 12), 1,000 entries: well under 256 KiB.
_limits = SizedCache(max_entries=1000, max_bytes=256 << 10, max_key=32)
_BAD_LIMIT = (None, None)


def _limit_seconds(microseconds_text: str) -> tuple[float | None, str | None]:
    """A bucket limit in µs as TF prints it → (seconds, seconds as text), ``(None, None)`` when
    it is not a limit (``abc``, negative, ``١٢٣``). The text has no float noise (``32.4`` →
    ``3.24e-05``, not ``3.2399999999999996e-05``); it is memoised, a page having a few dozen
    distinct limits repeated thousands of times."""
    cached = _limits.get(microseconds_text)
    if cached is None:
        value = checks.parse_le(microseconds_text)
        if value is None:
            cached = _BAD_LIMIT
        elif value == INF:
            cached = (INF, "+Inf")
        else:
            seconds = to_seconds(value)
            cached = (seconds, repr(seconds))
        _limits.put(microseconds_text, cached, str_bytes(microseconds_text) + 250)
    return cached


def _limit_as_is(text: str) -> tuple[float | None, str | None]:
    """Pass-through: a bucket limit in TF's unit, written canonically (``10`` → ``10.0``)."""
    value = checks.parse_le(text)
    return _BAD_LIMIT if value is None else (value, format_value(value))


def seconds_text(microseconds_text: str) -> str:
    """A bucket limit in µs → seconds as text; ValueError when it is not a bucket limit."""
    text = _limit_seconds(microseconds_text)[1]
    if text is None:
        raise ValueError(f"not a bucket limit: {microseconds_text[:40]!r}")
    return text
