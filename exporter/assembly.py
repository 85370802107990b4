"""The parts that read one TF Serving server, built from a Config: its clients, collectors and
canaries. The sidecar builds them once per configuration (exporter.runtime); fleet mode once
per probed target (exporter.fleet.build)."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

from exporter.collection import Collection
from exporter.collectors.base import Limiter
from exporter.collectors.metadata import MetadataCollector
from exporter.collectors.native import NativeCollector
from exporter.collectors.status import StatusCollector
from exporter.config import DEFAULT_MODULE
from exporter.selfmetrics import CallMetrics
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.loaded_versions import TensorBudget
from exporter.tfserving.models_file import ModelSource
from exporter.tfserving.rest_client import RestClient

if TYPE_CHECKING:
    from exporter.canary.golden import GoldenSet
    from exporter.canary.runner import CanaryRunner, CanarySchedule
    from exporter.collectors.canary import CanaryCollector


def build_clients(config, metrics: CallMetrics) -> dict:
    tf = config.tfserving
    clients = {}
    if tf.grpc_address:
        clients["grpc"] = GrpcClient(tf.grpc_address, observe=metrics.observe_call,
                                     tls=tf.grpc_tls if tf.grpc_tls.enabled else None)
    if tf.rest_address:
        clients["rest"] = RestClient(tf.rest_address, observe=metrics.observe_call)
    return clients


def load_golden(config) -> tuple[dict[str, GoldenSet], list[str]]:
    """The golden sets of ``config`` and the problems of those that did not load; none when
    canaries are off or have no golden files."""
    canary = config.canary
    if not canary.enabled or not (canary.golden_files or canary.golden_dir):
        return {}, []
    # Imported here: the canary needs numpy (~11 MiB of RSS), an exporter without golden
    # files does not.
    from exporter.canary.catalog import load_golden_sets
    return load_golden_sets(canary.golden_files, canary.golden_dir, canary.max_examples)


def golden_of_modules(config, golden: tuple[dict, list[str]],
                       ) -> tuple[dict[str, tuple[dict, list[str]]], list[str]]:
    """Per fleet module, its golden sets and their problems (the top-level ones for modules
    that do not set their own golden files), and every problem, prefixed by module."""
    sets, problems = {}, []
    for name in sorted(set(config.modules) | {DEFAULT_MODULE}):
        module = config.module(name)
        mine, top = module.canary, config.canary
        same = (mine.enabled, mine.golden_files, mine.golden_dir, mine.max_examples) == \
            (top.enabled, top.golden_files, top.golden_dir, top.max_examples)
        if same:
            sets[name] = golden
            continue
        sets[name] = load_golden(module)
        problems.extend(f"fleet.modules.{name}: {problem}" for problem in sets[name][1])
    return sets, problems


def build_canaries(config, golden: dict[str, GoldenSet], problems: list[str], clients: dict,
                   schedule: CanarySchedule | None = None, subject: str = "",
                   tensor_budget: TensorBudget | None = None,
                   ) -> tuple[CanaryRunner | None, CanaryCollector | None]:
    """The background runner of ``golden`` and its collector, when canaries are on, have
    golden files and their protocol has a client."""
    canary = config.canary
    if not canary.enabled or not (canary.golden_files or canary.golden_dir) \
            or canary.protocol not in clients:
        return None, None
    from exporter.canary.runner import CanaryRunner
    from exporter.collectors.canary import CanaryCollector

    runner = CanaryRunner(golden, clients[canary.protocol], canary.protocol,
                          interval=canary.interval, intervals=dict(canary.intervals),
                          jitter=canary.jitter, timeout=canary.timeout,
                          batch_size=canary.batch_size, max_concurrent=canary.max_concurrent,
                          schedule=schedule, subject=subject, tensor_budget=tensor_budget)
    return runner, CanaryCollector(runner.store, problems)


def build_collection(config, metrics: CallMetrics, clients: dict, extra_collectors=(),
                     extra_models=(),
                     executors: dict[str, concurrent.futures.Executor] | None = None,
                     subject: str = "", tensor_budget: TensorBudget | None = None,
                     ) -> Collection:
    tf = config.tfserving
    source = ModelSource(list(config.models) + list(extra_models), tf.model_config_file)
    limits = config.limits
    dropped = metrics.dropped
    versions = Limiter(dropped, "version", limits.max_versions_per_model)
    collectors = []
    status = config.collectors.status
    if status.enabled:
        collectors.append(StatusCollector(status.protocol, versions))
    metadata = config.collectors.metadata
    if metadata.enabled:
        # Reuse the status collector's answers when it runs; otherwise ask over our own protocol.
        status_protocol = status.protocol if status.enabled else metadata.protocol
        collectors.append(MetadataCollector(
            metadata.protocol, status_protocol, versions,
            Limiter(dropped, "signature", limits.max_signatures_per_version),
            Limiter(dropped, "tensor", limits.max_tensors_per_signature), tensor_budget))
    native = config.collectors.native
    model_limit = Limiter(dropped, "model", limits.max_models)

    def models() -> list[str]:
        return model_limit.cap(sorted(source.models()))

    if native.enabled and "rest" in clients:
        collectors.append(NativeCollector(
            tf.metrics_path, source.base_paths, native.passthrough,
            native.max_passthrough_series, dropped, max_series=native.max_series,
            max_models=limits.max_models, known_models=source.current,
            max_page_bytes=native.max_page_size))
    collectors.extend(extra_collectors)
    return Collection(clients, collectors, ping_paths={"rest": (tf.metrics_path,)},
                      models=models, executors=executors, subject=subject,
                      dropped=lambda kind, count: dropped.labels(kind).inc(count))
