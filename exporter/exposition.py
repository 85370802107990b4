"""/metrics rendering: prometheus_client's encoders, plus families rendered ahead of time.

prometheus_client renders a sample in a few microseconds, which is fine for the exporter's own
few hundred series but not for a TF Serving page bridged on every scrape (ten thousand bucket
lines are common on a busy server). The native collector therefore hands over histograms as
``TextFamily`` objects whose lines it built itself, with per-series prefixes cached across
scrapes; this module splices them into the encoder's output.
"""

from __future__ import annotations

import math
from typing import Iterable

from prometheus_client.exposition import choose_encoder

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


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class TextFamily:
    """A metric family whose sample lines (``name{labels} value``) are already rendered; the
    same lines are valid in the Prometheus text format and in OpenMetrics."""

    def __init__(self, name: str, kind: str, documentation: str, lines: list[str]) -> None:
        self.name = name
        self.type = kind
        self.documentation = documentation
        self.lines = lines

    def render(self) -> str:
        head = f"# HELP {self.name} {_escape_help(self.documentation)}\n# TYPE {self.name} {self.type}\n"
        return head + ("\n".join(self.lines) + "\n" if self.lines else "")


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
    body = encoder(_Sources([_Families(standard), *registries]))
    if not prerendered:
        return body, content_type
    # One join of all the parts: a bridged page can be tens of MB, so no intermediate copy.
    eof = OPENMETRICS_EOF.encode()
    has_eof = body.endswith(eof)
    parts = [body[: -len(eof)] if has_eof else body]
    parts.extend(family.render().encode("utf-8") for family in prerendered)
    if has_eof:
        parts.append(eof)
    return b"".join(parts), content_type
