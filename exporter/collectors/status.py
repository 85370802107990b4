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

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.base import CollectorError, Limiter
from exporter.scrape import Scrape
from exporter.textclip import clip_text
from exporter.tfserving.loaded_versions import available_versions
from exporter.tfserving.types import TFServingError
from tfserving_wire.model_status import VERSION_STATES

log = logging.getLogger(__name__)


class StatusCollector:
    name = "status"

    def __init__(self, protocol: str, versions: Limiter) -> None:
        self.status_protocol = protocol
        self._versions = versions

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "tfserving_model_version_state",
            "1 for the current state of a model version, 0 for the other states "
            "(START, LOADING, AVAILABLE, UNLOADING, END).",
            labels=["model", "version", "state"])
        error = GaugeMetricFamily(
            "tfserving_model_version_error",
            "1 while a model version carries a non-OK status (e.g. a failed load).",
            labels=["model", "version", "error_code"])
        serving = GaugeMetricFamily(
            "tfserving_model_serving_version",
            "Version that answers requests without a pinned version (highest AVAILABLE).",
            labels=["model"])
        available = GaugeMetricFamily(
            "tfserving_model_available_versions",
            "Number of AVAILABLE versions of a model; 0 when TF Serving does not know it.",
            labels=["model"])

        failures = []
        for model, result in scrape.model_statuses().items():
            if isinstance(result, TFServingError) and result.code == "NOT_FOUND":
                available.add_metric([model], 0)
                continue
            if isinstance(result, BaseException):
                failures.append(f"{model}: {result}")
                continue
            statuses = sorted(result, key=lambda s: s.version, reverse=True)
            for status in self._versions.cap(statuses):
                version = str(status.version)
                for name in VERSION_STATES:
                    state.add_metric([model, version, name], 1 if status.state == name else 0)
                if status.error_code != "OK":
                    error.add_metric([model, version, clip_text(status.error_code, 64)], 1)
            loaded = available_versions(result)
            if loaded:
                serving.add_metric([model], loaded[0])  # what unpinned requests get
            available.add_metric([model], len(loaded))

        yield from (state, error, serving, available)
        if failures:
            raise CollectorError("; ".join(failures))
