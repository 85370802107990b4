"""Signatures of every AVAILABLE version, from GetModelMetadata (gRPC) or .../metadata (REST).

A loaded version's signatures never change, so they are fetched once per (model, version) and
forgotten when the version stops being AVAILABLE.

Sample output::

    tfserving_model_signature_info{model="half_plus_two",version="123",signature="serving_default",method="predict"} 1.0
    tfserving_model_signature_tensor_info{model="half_plus_two",version="123",signature="serving_default",io="input",alias="x",dtype="float",shape="[-1,1]"} 1.0
"""

from __future__ import annotations

import threading
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.base import CollectorError, Limiter
from exporter.scrape import Scrape
from exporter.tfserving.types import Signature, TensorSpec, TFServingError

_METHOD_PREFIX = "tensorflow/serving/"


def method_label(method_name: str) -> str:
    """``tensorflow/serving/predict`` → ``predict``; anything unusual is kept as sent."""
    if method_name.startswith(_METHOD_PREFIX):
        return method_name[len(_METHOD_PREFIX):]
    return method_name


def dtype_label(dtype: str) -> str:
    """``DT_FLOAT`` → ``float``."""
    return dtype[3:].lower() if dtype.startswith("DT_") else dtype.lower()


def shape_label(shape: tuple[int, ...] | None) -> str:
    """``(-1, 1)`` → ``[-1,1]``; unknown rank → ``unknown``."""
    if shape is None:
        return "unknown"
    return "[" + ",".join(str(d) for d in shape) + "]"


class SignatureCache:
    """Signatures by (model, version), pruned to the versions seen AVAILABLE last time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], dict[str, Signature]] = {}

    def get(self, key: tuple[str, int]) -> dict[str, Signature] | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: tuple[str, int], signatures: dict[str, Signature]) -> None:
        with self._lock:
            self._entries[key] = signatures

    def keep_only(self, keys: set[tuple[str, int]]) -> None:
        with self._lock:
            for key in set(self._entries) - keys:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class MetadataCollector:
    name = "metadata"

    def __init__(self, protocol: str, status_protocol: str,
                 versions: Limiter, signatures: Limiter, tensors: Limiter) -> None:
        self.protocol = protocol
        self._status_protocol = status_protocol
        self._versions = versions
        self._signatures = signatures
        self._tensors = tensors
        self._cache = SignatureCache()

    def _available_versions(self, scrape: Scrape, model: str) -> list[int]:
        try:
            statuses = scrape.model_status(self._status_protocol, model)
        except TFServingError as err:
            if err.code == "NOT_FOUND":
                return []
            raise
        versions = sorted((s.version for s in statuses if s.state == "AVAILABLE"), reverse=True)
        return self._versions.cap(versions)

    def _signatures_of(self, scrape: Scrape, key: tuple[str, int]) -> dict[str, Signature]:
        cached = self._cache.get(key)
        if cached is None:
            model, version = key
            cached = scrape.call(self.protocol, scrape.client(self.protocol).model_metadata,
                                 model, version)
            self._cache.put(key, cached)
        return cached

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "tfserving_model_signature_info",
            "1 for each signature of an AVAILABLE model version; method is the SignatureDef "
            "method_name without the tensorflow/serving/ prefix.",
            labels=["model", "version", "signature", "method"])
        tensor_info = GaugeMetricFamily(
            "tfserving_model_signature_tensor_info",
            "1 for each input and output tensor of a signature; shape -1 is a free "
            "dimension, 'unknown' an unknown rank.",
            labels=["model", "version", "signature", "io", "alias", "dtype", "shape"])

        failures = []
        keys: list[tuple[str, int]] = []
        for model, result in scrape.map(lambda m: self._available_versions(scrape, m),
                                        scrape.models):
            if isinstance(result, BaseException):
                failures.append(f"{model}: {result}")
            else:
                keys.extend((model, version) for version in result)

        fetched = scrape.map(lambda key: self._signatures_of(scrape, key), keys)
        self._cache.keep_only(set(keys))
        for (model, version), result in fetched:
            if isinstance(result, TFServingError) and result.code == "NOT_FOUND":
                continue  # unloaded between the status and the metadata call
            if isinstance(result, BaseException):
                failures.append(f"{model} version {version}: {result}")
                continue
            for signature in self._signatures.cap(sorted(result.values(), key=lambda s: s.name)):
                labels = [model, str(version), signature.name]
                info.add_metric(labels + [method_label(signature.method_name)], 1)
                tensors: list[tuple[str, TensorSpec]] = (
                    [("input", t) for t in signature.inputs]
                    + [("output", t) for t in signature.outputs])
                for io, tensor in self._tensors.cap(tensors):
                    tensor_info.add_metric(labels + [io, tensor.alias, dtype_label(tensor.dtype),
                                                     shape_label(tensor.shape)], 1)

        yield from (info, tensor_info)
        if failures:
            raise CollectorError("; ".join(failures))
