"""Signatures of every AVAILABLE version, from GetModelMetadata (gRPC) or .../metadata (REST).

Each version's signatures are fetched once and kept while it stays AVAILABLE (see
``tfserving/loaded_versions.py``).

Sample output::

    tfserving_model_signature_info{model="half_plus_two",version="123",signature="serving_default",method="predict"} 1.0
    tfserving_model_signature_tensor_info{model="half_plus_two",version="123",signature="serving_default",io="input",alias="x",dtype="float",shape="[-1,1]"} 1.0
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from exporter.collectors.base import CollectorError, Limiter
from exporter.exposition import EncodedFamilies, RenderedText, TextFamily, sample_line
from exporter.scrape import Scrape
from exporter.textclip import clip_text
from exporter.tfserving.loaded_versions import (LoadedSignatures, TensorBudget,
                                                available_versions, tensor_count)
from exporter.tfserving.types import Signature, SignatureMap, TensorSpec, TFServingError

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


# Tensors held by the cache and exported per scrape, over all versions: far above a real
# server (a few tensors per signature), and a fixed bound on memory (~150 bytes each) and on
# the page whatever TF Serving's metadata replies hold.
MAX_TENSOR_SERIES = 100_000
SIGNATURE_INFO = "tfserving_model_signature_info"
SIGNATURE_INFO_HELP = (
    "1 for each signature of an AVAILABLE model version; method is the SignatureDef "
    "method_name without the tensorflow/serving/ prefix.")
TENSOR_INFO = "tfserving_model_signature_tensor_info"
TENSOR_INFO_HELP = ("1 for each input and output tensor of a signature; shape -1 is a free "
                    "dimension, 'unknown' an unknown rank.")
# Label values taken from metadata replies (signature names, aliases, shapes) are cut here.
MAX_LABEL_CHARS = 256


class MetadataCollector:
    name = "metadata"

    def __init__(self, protocol: str, status_protocol: str,
                 versions: Limiter, signatures: Limiter, tensors: Limiter,
                 shared: TensorBudget | None = None) -> None:
        self.protocol = protocol
        self.status_protocol = status_protocol
        self._versions = versions
        self._signatures = signatures
        self._tensors = tensors
        # Holds what _within_limits keeps: never more tensors than one page may export.
        self._cache = LoadedSignatures(MAX_TENSOR_SERIES, shared)
        self._rendered: RenderedText[tuple[str, str, int]] = RenderedText(by_identity=True)
        self._encoded = EncodedFamilies()

    def close(self) -> None:
        self._cache.close()  # its share of a fleet's tensor budget is free at once

    def _signatures_of(self, scrape: Scrape, key: tuple[str, int]) -> SignatureMap:
        model, version = key
        return self._cache.get(key, lambda: self._within_limits(scrape.call(
            self.protocol, scrape.client(self.protocol).model_metadata, model, version)))

    def _within_limits(self, fetched: SignatureMap) -> SignatureMap:
        """Only what will be exported is kept (the cache holds this), the rest counted as
        dropped on every scrape that exports the version."""
        signatures = self._signatures.cap(sorted(fetched.values(), key=lambda s: s.name),
                                          count=False)
        kept = SignatureMap(left_out_signatures=fetched.left_out_signatures
                            + len(fetched) - len(signatures),
                            left_out_tensors=fetched.left_out_tensors)
        for signature in signatures:
            tensors = list(signature.inputs) + list(signature.outputs)
            capped = self._tensors.cap(tensors, count=False)
            kept.left_out_tensors += len(tensors) - len(capped)
            inputs = len(signature.inputs)
            kept[signature.name] = Signature(signature.name, signature.method_name,
                                             tuple(capped[:inputs]), tuple(capped[inputs:]))
        return kept

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        failures = []
        keys: list[tuple[str, int]] = []
        for model, result in scrape.model_statuses().items():
            if isinstance(result, TFServingError) and result.code == "NOT_FOUND":
                continue  # TF Serving does not know the model: nothing is loaded
            if isinstance(result, BaseException):
                failures.append(f"{model}: {result}")
                continue
            keys.extend((model, version)
                        for version in self._versions.cap(available_versions(result)))

        # Only versions not cached yet go to the pool: a steady scrape makes no call and
        # hands no work to another thread.
        cached = {key: self._cache.cached(key) for key in keys}
        missing = [key for key, signatures in cached.items() if signatures is None]
        fetched_now = dict(scrape.map(self.protocol, lambda key: self._signatures_of(scrape, key),
                                      missing)) if missing else {}
        fetched = [(key, cached[key] if cached[key] is not None else fetched_now[key])
                   for key in keys]
        self._cache.keep_only(set(keys))
        self._rendered.keep_only(keys)
        info_lines: list[str] = []
        tensor_lines: list[str] = []
        left_out_signatures = left_out_tensors = 0
        tensor_budget = MAX_TENSOR_SERIES
        for key, result in fetched:
            model, version = key
            if isinstance(result, TFServingError) and result.code == "NOT_FOUND":
                continue  # unloaded between the status and the metadata call
            if isinstance(result, BaseException):
                failures.append(f"{model} version {version}: {result}")
                continue
            left_out_signatures += result.left_out_signatures
            left_out_tensors += result.left_out_tensors
            # The cached signatures of a version are one object while it stays loaded: its
            # lines are rendered once. Past the page's tensor budget, each scrape cuts anew.
            info, tensors, count = self._rendered.get(
                key, result, lambda: _render(model, version, result, MAX_TENSOR_SERIES))
            if count > tensor_budget:
                info, tensors, count = _render(model, version, result, max(tensor_budget, 0))
            left_out_tensors += tensor_count(result) - count  # past the page's budget
            tensor_budget -= count
            if info:
                info_lines.append(info)
            if tensors:
                tensor_lines.append(tensors)
        if left_out_signatures:
            self._signatures.count(left_out_signatures)
        if left_out_tensors:
            self._tensors.count(left_out_tensors)

        yield TextFamily(SIGNATURE_INFO, "gauge", SIGNATURE_INFO_HELP, info_lines, self._encoded)
        yield TextFamily(TENSOR_INFO, "gauge", TENSOR_INFO_HELP, tensor_lines, self._encoded)
        if failures:
            raise CollectorError("; ".join(failures))


def _render(model: str, version: int, signatures: SignatureMap,
            tensor_budget: int) -> tuple[str, str, int]:
    """A version's signature and tensor lines, at most ``tensor_budget`` tensors, and how many
    tensors it holds."""
    info, tensor_lines = [], []
    for signature in signatures.values():
        labels = {"model": model, "version": str(version),
                  "signature": clip_text(signature.name, MAX_LABEL_CHARS)}
        info.append(sample_line(SIGNATURE_INFO, {
            **labels, "method": clip_text(method_label(signature.method_name),
                                          MAX_LABEL_CHARS)}, 1))
        tensors: list[tuple[str, TensorSpec]] = (
            [("input", t) for t in signature.inputs] + [("output", t) for t in signature.outputs])
        for io, tensor in tensors[:max(tensor_budget - len(tensor_lines), 0)]:
            tensor_lines.append(sample_line(TENSOR_INFO, {
                **labels, "io": io, "alias": clip_text(tensor.alias, MAX_LABEL_CHARS),
                "dtype": dtype_label(tensor.dtype),
                "shape": clip_text(shape_label(tensor.shape), MAX_LABEL_CHARS)}, 1))
    return "\n".join(info), "\n".join(tensor_lines), len(tensor_lines)
