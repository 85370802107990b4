"""Parser for TF Serving's own Prometheus page (``/monitoring/prometheus/metrics``).

TF Serving writes the text format with its own habits (reference §5.2): ``# TYPE`` lines but
no ``# HELP``; families with no samples at all; ``{}`` on label-less samples; bucket limits and
sums in ``%g`` (``1.27482e+06``); integer-only counters and gauges; label values with only
``\\`` and ``"`` escaped, so a raw newline can sit inside a quoted value. Unknown metrics are
normal (the TF-core set changes between releases).

The parser is strict about structure, because a half-read page must not be mistaken for a
real one: every line must be a comment or a well-formed sample, and the page must end with a
newline (TF Serving always writes one; a missing one means the page was cut off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Callable

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# One sample on one line: name, optional {labels}, value, optional timestamp. Kept loose for
# speed (in C over the whole page); the name is checked once per distinct name and label text
# when a family is read (``labels()``), so garbage still cannot pass as data.
_SAMPLE_LINE = re.compile(
    r'^([^{ \t\n#][^{ \t\n]*)(?:\{([^\n]*)\})?[ \t]+'
    r'([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+\.|Inf|NaN))'
    r'(?:[ \t]+-?[0-9]+)?[ \t]*$', re.M)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_MAX_CONTINUATION_LINES = 16  # a label value with raw newlines spans a few lines, not more
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})


class PageError(ValueError):
    """The page is not a well-formed exposition (garbled, truncated, or not a metrics page)."""


@dataclass
class Family:
    """One metric family. Samples stay raw, ``(sample name, label text, value)``, because
    most of a page's cost would be building label dicts nobody reads; ``labels()`` parses
    (and caches) a label text when a consumer needs it."""

    name: str
    type: str = "untyped"
    # (sample name, label text, value text): the value is checked to be a number but kept as
    # written, so bucket counts pass through without a float round trip.
    samples: list[tuple[str, str, str]] = field(default_factory=list)


_parsed_labels: dict[str, dict[str, str]] = {}
_MAX_CACHED_LABEL_TEXTS = 50_000


def labels(text: str) -> dict[str, str]:
    """``model_name="m",status="OK"`` → ``{"model_name": "m", "status": "OK"}``."""
    cached = _parsed_labels.get(text)
    if cached is None:
        cached = parse_labels(text, 0) if text else {}
        if len(_parsed_labels) >= _MAX_CACHED_LABEL_TEXTS:
            _parsed_labels.clear()  # bounded: pages with churning label sets start over
        _parsed_labels[text] = cached
    return cached


def split_le(text: str) -> tuple[str, str]:
    """Bucket label text → (the other labels' text, the ``le`` value). TF Serving writes
    ``le`` last; a page that does not is handled the slow way."""
    head, separator, le = text.rpartition(',le="')
    if separator and le.endswith('"') and '"' not in le[:-1]:
        return head, le[:-1]
    if text.startswith('le="') and text.endswith('"') and '"' not in text[4:-1]:
        return "", text[4:-1]
    parsed = dict(labels(text))
    le = parsed.pop("le", None)
    if le is None:
        raise PageError(f"bucket without an le label: {{{text[:80]}}}")
    return ",".join(f'{k}="{_escape(v)}"' for k, v in parsed.items()), le


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_labels(text: str, line_number: int) -> dict[str, str]:
    found: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            raise PageError(f"line {line_number}: malformed labels {{{text[:80]}}}")
        found[match.group(1)] = _unescape(match.group(2))
        position = match.end()
        if match.group(3) == "" and position < len(text):
            raise PageError(f"line {line_number}: malformed labels {{{text[:80]}}}")
    return found


def _family_name(sample_name: str, families: dict[str, Family]) -> str:
    if sample_name in families:
        return sample_name
    for suffix in _HISTOGRAM_SUFFIXES:
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            if base in families and families[base].type in ("histogram", "summary"):
                return base
    return sample_name


def _split_sample(line: str, number: int) -> tuple[str, str, str]:
    """``name{labels} value [timestamp]`` → (name, label text, value text)."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        close = line.rfind("}")
        if close < brace:
            raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
        name, label_text, rest = line[:brace], line[brace + 1:close], line[close + 1:]
    elif space != -1:
        name, label_text, rest = line[:space], "", line[space:]
    else:
        raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
    fields = rest.split()
    if not 1 <= len(fields) <= 2:
        raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
    return name, label_text, fields[0]


def parse_page(text: str, wanted: Callable[[str], bool] | None = None) -> dict[str, Family]:
    """Families by name. ``wanted(family_name)`` limits which families keep their samples
    (every line is still checked for shape); ``None`` keeps everything.

    The common case (one sample per line) is matched by one regular expression over the whole
    page, in C; when its matches do not account for every line (raw newlines in a label value,
    or a garbled line) the line-by-line parser takes over and names the problem.
    """
    if not text:
        raise PageError("the page is empty")
    if not text.endswith("\n"):
        raise PageError("the page does not end with a newline (cut off?)")
    body = text[:-1]
    matches = _SAMPLE_LINE.findall(body)
    line_count = body.count("\n") + 1
    comments = body.count("\n#") + body.startswith("#")
    # Runs of several blank lines are undercounted here; the mismatch sends such (unusual)
    # pages to the line-by-line parser, which is exact.
    blanks = body.count("\n\n") + body.startswith("\n") + body.endswith("\n")
    if len(matches) + comments + blanks != line_count:
        return _parse_lines(body, wanted)
    families: dict[str, Family] = {}
    for name, kind in _type_lines(body):
        if kind not in _TYPES:
            return _parse_lines(body, wanted)  # reports the line
        families.setdefault(name, Family(name)).type = kind
    keep: dict[str, Family | None] = {}
    # Samples of one metric are contiguous on a TF Serving page: handle them a run at a time.
    for sample_name, run in groupby(matches, key=itemgetter(0)):
        target = keep.get(sample_name, False)
        if target is False:
            if _NAME.fullmatch(sample_name) is None:
                return _parse_lines(body, wanted)  # reports the line
            family_name = _family_name(sample_name, families)
            target = None
            if wanted is None or wanted(family_name):
                target = families.get(family_name)
                if target is None:
                    target = families[family_name] = Family(family_name)
            keep[sample_name] = target
        if target is not None:
            target.samples.extend(run)
    return families


def _type_lines(body: str):
    """(name, type) of every ``# TYPE`` line; str.find is far faster than a multi-line regex
    over a page that is mostly samples."""
    position = body.find("# TYPE ")
    while position != -1:
        end = body.find("\n", position)
        end = len(body) if end == -1 else end
        if position == 0 or body[position - 1] == "\n":
            parts = body[position:end].split(None, 3)
            if len(parts) >= 4:
                yield parts[2], parts[3].strip()
        position = body.find("# TYPE ", end)


def _parse_lines(body: str, wanted: Callable[[str], bool] | None) -> dict[str, Family]:
    families: dict[str, Family] = {}
    family_of: dict[str, str] = {}  # sample name -> family name (checked once per name)
    keep: dict[str, bool] = {}
    lines = body.split("\n")
    index, count = 0, len(lines)
    while index < count:
        line = lines[index]
        index += 1
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3].strip()
                if kind not in _TYPES:
                    raise PageError(f"line {index}: unknown metric type {kind!r}")
                families.setdefault(name, Family(name)).type = kind
            continue
        if '"' in line and _ends_inside_quotes(line):
            # A label value may hold raw newlines (TF Serving does not escape them): join the
            # following lines, a few at most.
            line, index = _join_continuation(lines, line, index)
        sample_name, label_text, value_text = _split_sample(line, index)
        family_name = family_of.get(sample_name)
        if family_name is None:
            if _NAME.fullmatch(sample_name) is None:
                raise PageError(f"line {index}: invalid metric name {sample_name[:80]!r}")
            family_name = family_of[sample_name] = _family_name(sample_name, families)
        try:
            float(value_text)
        except ValueError:
            raise PageError(f"line {index}: value {value_text[:40]!r} is not a number") \
                from None
        kept = keep.get(family_name)
        if kept is None:
            kept = keep[family_name] = wanted is None or wanted(family_name)
        if kept:
            family = families.get(family_name)
            if family is None:
                family = families[family_name] = Family(family_name)
            family.samples.append((sample_name, label_text, value_text))
    return families


def _ends_inside_quotes(text: str) -> bool:
    inside, escaped = False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = inside
        elif char == '"':
            inside = not inside
    return inside


def _join_continuation(lines: list[str], line: str, index: int) -> tuple[str, int]:
    start = index
    while _ends_inside_quotes(line):
        if index - start == _MAX_CONTINUATION_LINES or index >= len(lines):
            raise PageError(f"line {start}: unterminated label value")
        line += "\n" + lines[index]
        index += 1
    return line, index
