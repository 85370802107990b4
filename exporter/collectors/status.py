"""Model version lifecycle from GetModelStatus (gRPC) or GET /v1/models/<m> (REST).

Sample output::

    tfserving_model_version_state{model="half_plus_two",version="2",state="AVAILABLE"} 1.0
    tfserving_model_version_state{model="half_plus_two",version="2",state="LOADING"} 0.0
    tfserving_model_version_error{model="half_plus_two",version="3",error_code="NOT_FOUND"} 1.0
    tfserving_model_serving_version{model="half_plus_two"} 2.0
    tfserving_model_available_versions{model="half_plus_two"} 1.0
"""

from __future__ import annotations

import logging
from typing import Iterable

from prometheus_client.core import Metric

from exporter.collectors.base import CollectorError, Limiter
from exporter.exposition import EncodedFamilies, RenderedText, TextFamily, sample_line
from exporter.scrape import Scrape
from exporter.textclip import clip_text
from exporter.tfserving.loaded_versions import available_versions
from exporter.tfserving.types import TFServingError
from tfserving_wire.model_status import VERSION_STATES

log = logging.getLogger(__name__)


STATE = "tfserving_model_version_state"
ERROR = "tfserving_model_version_error"
SERVING = "tfserving_model_serving_version"
AVAILABLE_VERSIONS = "tfserving_model_available_versions"
_FAMILIES = (
    (STATE, "1 for the current state of a model version, 0 for the other states "
            "(START, LOADING, AVAILABLE, UNLOADING, END)."),
    (ERROR, "1 while a model version carries a non-OK status (e.g. a failed load)."),
    (SERVING, "Version that answers requests without a pinned version (highest AVAILABLE)."),
    (AVAILABLE_VERSIONS, "Number of AVAILABLE versions of a model; 0 when TF Serving does not "
                         "know it."),
)
_NOT_FOUND = ("", "", "", "")  # the four families' text of a model TF Serving does not know


class StatusCollector:
    """A model's lines are rendered when its status reply changes, and reused as text while it
    stays the same (most scrapes of a steady server)."""

    name = "status"

    def __init__(self, protocol: str, versions: Limiter) -> None:
        self.status_protocol = protocol
        self._versions = versions
        self._rendered: RenderedText[tuple[tuple[str, str, str, str], int]] = RenderedText()
        self._encoded = EncodedFamilies()

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        parts: list[list[str]] = [[] for _ in _FAMILIES]
        failures = []
        statuses_by_model = scrape.model_statuses()
        for model, result in statuses_by_model.items():
            if isinstance(result, TFServingError) and result.code == "NOT_FOUND":
                texts, dropped = self._rendered.get(model, _NOT_FOUND,
                                                    lambda model=model: _unknown(model))
            elif isinstance(result, BaseException):
                failures.append(f"{model}: {result}")
                continue
            else:
                texts, dropped = self._rendered.get(
                    model, tuple(result),
                    lambda model=model, result=result: self._render(model, result))
            if dropped:
                self._versions.count(dropped)
            for family, text in zip(parts, texts):
                if text:
                    family.append(text)
        self._rendered.keep_only(statuses_by_model)

        yield from (TextFamily(name, "gauge", documentation, lines, self._encoded)
                    for (name, documentation), lines in zip(_FAMILIES, parts))
        if failures:
            raise CollectorError("; ".join(failures))

    def _render(self, model: str, result: list) -> tuple[tuple[str, str, str, str], int]:
        """The model's text in each family, and how many versions the limit left out."""
        statuses = sorted(result, key=lambda s: s.version, reverse=True)
        kept = self._versions.cap(statuses, count=False)
        states, errors = [], []
        for status in kept:
            version = str(status.version)
            for name in VERSION_STATES:
                states.append(sample_line(STATE, {"model": model, "version": version,
                                                  "state": name},
                                          1 if status.state == name else 0))
            if status.error_code != "OK":
                errors.append(sample_line(ERROR, {
                    "model": model, "version": version,
                    "error_code": clip_text(status.error_code, 64)}, 1))
        loaded = available_versions(result)
        serving = (sample_line(SERVING, {"model": model}, loaded[0])  # what unpinned requests get
                   if loaded else "")
        available = sample_line(AVAILABLE_VERSIONS, {"model": model}, len(loaded))
        texts = ("\n".join(states), "\n".join(errors), serving, available)
        return texts, len(statuses) - len(kept)


def _unknown(model: str) -> tuple[tuple[str, str, str, str], int]:
    return ("", "", "", sample_line(AVAILABLE_VERSIONS, {"model": model}, 0)), 0
