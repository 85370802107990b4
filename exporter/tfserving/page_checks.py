"""What a sample or series read from TF Serving's page must satisfy before it is exported.

The page is untrusted input: a proxy, a fork or a bug can put NaN in a counter, a bucket limit
that is not a number or buckets that go down. Exporting such samples as they are would make
the exporter's own output invalid (the OpenMetrics parser refuses it) or silently wrong. Each
check here answers "may this be exported?"; what fails is dropped and counted
(``tfserving_exporter_dropped_total{kind="native_invalid"}``), and the first problem of a
scrape is kept for the log. An invalid sample never fails the rest of the page; a page whose
*structure* is broken (garbled lines, cut off) still fails as a whole (``PageError``).

The rules, per type:

- counter: finite and >= 0;
- gauge: finite;
- histogram, per label set: every ``le`` is a number (``+Inf`` included), the limits are
  >= 0 and strictly increasing and the last is ``+Inf``; bucket counts are whole numbers,
  finite, >= 0 and non-decreasing; ``_sum`` is present, finite and >= 0; ``_count``, when
  present, equals the ``+Inf`` bucket. OpenMetrics requires integer bucket counts and refuses
  ``_sum`` together with negative limits, hence those two;
- every sample: its label text is at most ``MAX_LABEL_TEXT`` characters; label names do not
  start with ``__`` (reserved by Prometheus);
- the same exported label set at most once per family (see the native collector for what it
  does with two TF series that map to one exported series).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass

INF = math.inf

# A sample line whose label text is longer than this is dropped (never parsed, never cached):
# TF Serving's longest label text is a model path, well under 1 KiB.
MAX_LABEL_TEXT = 4096
# A histogram series with more buckets is invalid (TF Serving's largest bucket set has 53),
# which also bounds what is held while one series is read.
MAX_BUCKETS = 1000
# int64 has 19 digits: a longer digit string is not a TF Serving version number.
MAX_VERSION_DIGITS = 19
# Descriptions of problems quote at most this much of a label text.
QUOTE_CHARS = 120

# A number as the text format writes it, without Python's extras (``1_000``, ``١٢٣``,
# ``infinity``, surrounding spaces), which ``float()`` would accept.
_NUMBER = re.compile(r"[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+\.)")
_POSITIVE_INF = frozenset({"+Inf", "Inf", "+inf", "inf"})


def is_number(text: str) -> bool:
    """``text`` is a finite number or ``±Inf``/``NaN`` as the exposition format writes it."""
    return (_NUMBER.fullmatch(text) is not None
            or text.lstrip("+-") in ("Inf", "NaN"))


def parse_le(text: str) -> float | None:
    """A bucket limit (a label value, so any text) → its value, or None when it is not a
    non-negative number or ``+Inf``. Never raises: ``le="abc"`` makes a series invalid, not
    a traceback."""
    if text in _POSITIVE_INF:
        return INF
    if len(text) > 64 or _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if 0.0 <= value < INF else None  # "1e999" overflows: not TF's %g


def counter_value(text: str) -> float | None:
    """A counter's value text (already a number, checked by the parser) → float, or None when
    it is NaN, infinite or negative."""
    value = float(text)
    return value if 0.0 <= value < INF else None


def gauge_value(text: str) -> float | None:
    value = float(text)
    return value if -INF < value < INF else None


def version_label(directory: str) -> str:
    """A ``model_path`` version directory → the version label: ASCII digits of an int64 are a
    version (zero padding removed: ``00000123`` → ``123``); anything else (``²``, ``١٢٣``,
    ``model1``, 20 digits) is kept as written, never handed to ``int()``."""
    if directory.isascii() and directory.isdigit() and len(directory) <= MAX_VERSION_DIGITS:
        return str(int(directory))
    return directory


def label_names_problem(names) -> str | None:
    for name in names:
        if name.startswith("__"):
            return f"label name {name[:40]!r} is reserved (starts with __)"
    return None


def limits_problem(limits: list) -> str | None:
    """Why a series' bucket limits (as ``parse_le`` gave them, in page order) cannot be
    exported, or None."""
    if not limits:
        return "no buckets"
    if None in limits:
        return "a bucket limit (le) is not a number >= 0 or +Inf"
    if limits[-1] != INF:
        return 'the last bucket is not le="+Inf"'
    previous = -1.0
    for limit in limits:
        if not limit > previous:
            return "bucket limits (le) are not strictly increasing"
        previous = limit
    return None


_MAX_FLOAT = int(sys.float_info.max)


def bucket_counts(values: list[str]) -> list | None:
    """A series' bucket count texts (numbers, checked by the parser) → numbers, or None unless
    they are whole numbers, finite, >= 0 and non-decreasing. TF Serving writes plain digits,
    which are checked with a few C-level calls."""
    try:
        # int() is twice as fast as float() and takes exactly the integers among the numbers
        # the parser admits (signs included: a negative count fails the first check below).
        counts = list(map(int, values))
    except ValueError:
        pass
    else:
        return (counts if counts[0] >= 0 and counts == sorted(counts)
                and counts[-1] <= _MAX_FLOAT else None)
    counts = list(map(float, values))
    if all(map(float.is_integer, counts)) and counts[0] >= 0 and counts == sorted(counts):
        return counts  # is_integer() is False for NaN and ±Inf, so sorted() sees neither
    return None


def histogram_problem(limits: list, values: list[str], sum_text: str | None,
                      count_text: str | None) -> str | None:
    """Why one histogram series (its ``le`` limits as ``parse_le`` gave them, its bucket count
    texts, ``_sum`` and ``_count`` texts) cannot be exported, or None when it can."""
    problem = limits_problem(limits)
    if problem is not None:
        return problem
    counts = bucket_counts(values)
    if counts is None:
        return BAD_COUNTS
    return tail_problem(counts[-1], None if sum_text is None else float(sum_text), count_text)


BAD_COUNTS = "bucket counts are not whole numbers >= 0 that never decrease"


def tail_problem(inf_count: float, sum_value: float | None,
                 count_text: str | None) -> str | None:
    """Why a series' ``_sum`` (as a float) and ``_count`` (as written) cannot be exported
    with a ``+Inf`` bucket of ``inf_count``, or None."""
    if sum_value is None:
        return "no _sum"
    if not 0.0 <= sum_value < INF:
        return "_sum is not a finite number >= 0"
    if count_text is not None and float(count_text) != inf_count:
        return '_count differs from the le="+Inf" bucket'
    return None


def quote(tf_name: str, label_text: str) -> str:
    """``name{labels}`` for a problem description, the label text cut short."""
    if len(label_text) > QUOTE_CHARS:
        label_text = label_text[:QUOTE_CHARS] + f"…({len(label_text)} characters)"
    return f"{tf_name}{{{label_text}}}"


@dataclass
class Tally:
    """What one scrape left out, in sample lines of the page: ``invalid`` (failed a check
    here) and ``capped`` (beyond a limit: series cap, model cap, pass-through cap), and the
    first problem met, for a rate-limited log line."""

    invalid: int = 0
    capped: int = 0
    problem: str | None = None

    def reject(self, lines: int, problem: str) -> None:
        self.invalid += lines
        if self.problem is None:
            self.problem = problem
