"""The metadata collector's lines, rendered once per loaded version, keep the page's tensor
budget: what it leaves out is counted on every scrape, also for one version over the budget."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

import exporter.collectors.metadata as metadata
from exporter.collectors.base import Limiter
from exporter.tfserving.types import Signature, SignatureMap, TensorSpec
from tfserving_wire.model_status import VersionStatus


class _Scrape:
    """What MetadataCollector.collect needs: statuses, map() and call() over one client."""

    def __init__(self, signatures: dict) -> None:
        self._signatures = signatures

    def model_statuses(self):
        return {model: [VersionStatus(version, "AVAILABLE")]
                for model, version in self._signatures}

    def client(self, protocol):
        return self

    def model_metadata(self, model, version, deadline):
        return self._signatures[(model, version)]

    def call(self, protocol, operation, *args):
        return operation(*args, None)

    def map(self, protocol, function, items):
        return [(item, function(item)) for item in items]


def _signatures(tensors: int) -> SignatureMap:
    inputs = tuple(TensorSpec(f"x{i}", "DT_FLOAT", (-1,)) for i in range(tensors))
    return SignatureMap({"serving_default": Signature(
        "serving_default", "tensorflow/serving/predict", inputs, ())})


def test_tensors_past_the_page_budget_are_counted_each_scrape(monkeypatch):
    monkeypatch.setattr(metadata, "MAX_TENSOR_SERIES", 10)
    dropped = Counter("dropped", "d", ["kind"], registry=CollectorRegistry())
    limiter = lambda kind: Limiter(dropped, kind, 1000)  # noqa: E731
    collector = metadata.MetadataCollector("grpc", "grpc", limiter("version"),
                                           limiter("signature"), limiter("tensor"))
    scrape = _Scrape({("a", 1): _signatures(15), ("b", 1): _signatures(3)})
    for scrapes in (1, 2):
        families = list(collector.collect(scrape))
        tensors = [s for s in families[1].samples if s.name.endswith("tensor_info")]
        assert len(tensors) == 10
        assert dropped.labels("tensor")._value.get() == scrapes * 8  # 15 + 3 - 10, each time
