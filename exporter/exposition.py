"""/metrics rendering: prometheus_client's encoders, plus families rendered ahead of time.

prometheus_client renders a sample in a few microseconds, which is fine for the exporter's own
few hundred series but not for what TF Serving's state gives at a hundred models and more
(ten thousand bucket lines are common on a busy server, and every version adds its state and
signature lines). The TF Serving collectors therefore hand over ``TextFamily`` objects whose
lines they built themselves and keep across scrapes while what they show is unchanged (the
native collector's per-series prefixes, ``RenderedText`` for status and signatures); this
module splices them into the encoder's output. ``sample_line`` writes a sample exactly as
prometheus_client's encoders do (labels sorted, values by ``floatToGoString``), so a family
moved to text keeps every byte of its lines.
"""

from __future__ import annotations

import math
from typing import Callable, Generic, Hashable, Iterable, TypeVar

from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

V = TypeVar("V")

OPENMETRICS_EOF = "# EOF\n"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(labels: dict[str, str]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())


def format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    return repr(float(value))


def sample_prefix(name: str, labels: dict[str, str]) -> str:
    """``name{labels} `` as prometheus_client's text and OpenMetrics encoders write it (the
    same in both): labels sorted by name."""
    if not labels:
        return name + " "
    return f"{name}{{{label_text(dict(sorted(labels.items())))}}} "


def sample_line(name: str, labels: dict[str, str], value: float) -> str:
    """One sample as prometheus_client writes it: ``sample_prefix``, then the value by
    ``floatToGoString``."""
    return sample_prefix(name, labels) + floatToGoString(value)


class RenderedText(Generic[V]):
    """What was rendered for each key (a model, a version), reused while the content it was
    rendered from is unchanged: equal, or the same object when ``by_identity`` (for content
    that is itself a cache entry). Holds the keys of the last ``keep_only`` and those used
    since, so it is bounded by what one scrape covers."""

    def __init__(self, by_identity: bool = False) -> None:
        self._entries: dict[Hashable, tuple[object, V]] = {}
        self._by_identity = by_identity

    def get(self, key: Hashable, content: object, render: Callable[[], V]) -> V:
        entry = self._entries.get(key)
        if entry is not None and (entry[0] is content if self._by_identity
                                  else entry[0] == content):
            return entry[1]
        rendered = render()
        self._entries[key] = (content, rendered)
        return rendered

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        keep = set(keys)
        # list() copies the keys in one step: a concurrent get() may insert meanwhile.
        for key in [key for key in list(self._entries) if key not in keep]:
            self._entries.pop(key, None)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class EncodedFamilies(dict):
    """The last encoding of each family of one collector, by name and format, with the lines
    it was made from: a family whose lines are the same strings as last time (a list
    comparison that stops at each element's identity) is not joined and encoded again."""


class TextFamily:
    """A metric family whose sample lines (``name{labels} value``) are already rendered; the
    same lines are valid in the Prometheus text format and in OpenMetrics. An entry of
    ``lines`` may hold several lines (joined by newlines, none at its end), never none.
    ``encoded`` remembers its bytes in ``memo`` when given."""

    def __init__(self, name: str, kind: str, documentation: str, lines: list[str],
                 memo: EncodedFamilies | None = None) -> None:
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.lines = lines
        self.memo = memo

    def render(self, openmetrics: bool = False) -> str:
        """The family in the Prometheus text format, or in OpenMetrics: the sample lines are
        the same; the head differs as prometheus_client writes it (a counter is named with
        ``_total`` in the text format only, and OpenMetrics escapes quotes in HELP)."""
        name = self.name + "_total" if self.type == "counter" and not openmetrics else self.name
        documentation = _escape_help(self.documentation)
        if openmetrics:
            documentation = documentation.replace('"', '\\"')
        head = f"# HELP {name} {documentation}\n# TYPE {name} {self.type}\n"
        return head + ("\n".join(self.lines) + "\n" if self.lines else "")

    def encoded(self, openmetrics: bool = False) -> bytes:
        memo = self.memo
        key = (self.name, openmetrics)
        if memo is not None:
            last = memo.get(key)
            if last is not None and last[0] == self.lines:
                return last[1]
        data = self.render(openmetrics).encode("utf-8")
        if memo is not None:
            memo[key] = (self.lines, data)
        return data

    @property
    def samples(self) -> list:
        """The samples, parsed back from the text (for tests and tools, not for /metrics)."""
        return [sample for family in text_string_to_metric_families(self.render())
                for sample in family.samples]


class _Sources:
    def __init__(self, sources) -> None:
        self._sources = sources

    def collect(self):
        for source in self._sources:
            yield from source.collect()


class _Families:
    def __init__(self, families) -> None:
        self._families = families

    def collect(self):
        return iter(self._families)


def encode(families: Iterable, registries: Iterable, accept_header: str) -> tuple[bytes, str]:
    """Render ``families`` (prometheus_client metrics and TextFamily objects) and the
    registries in the format the Accept header asks for."""
    standard, prerendered = [], []
    for family in families:
        (prerendered if isinstance(family, TextFamily) else standard).append(family)
    encoder, content_type = choose_encoder(accept_header)
    if "escaping=dots" in content_type:
        # The one escaping that rewrites valid names (``_`` as ``__``): prometheus_client's
        # encoder renders these families too, from their samples.
        standard.extend(family for text in prerendered
                        for family in text_string_to_metric_families(text.render()))
        prerendered = []
    body = encoder(_Sources([_Families(standard), *registries]))
    if not prerendered:
        return body, content_type
    # One join of all the parts: a bridged page can be tens of MB, so no intermediate copy.
    eof = OPENMETRICS_EOF.encode()
    has_eof = body.endswith(eof)
    parts = [body[: -len(eof)] if has_eof else body]
    openmetrics = content_type.startswith("application/openmetrics-text")
    parts.extend(family.encoded(openmetrics) for family in prerendered)
    if has_eof:
        parts.append(eof)
    return b"".join(parts), content_type
