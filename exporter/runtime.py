"""Builds a running exporter (clients, collectors, HTTP app) from a validated Config."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from exporter.addresses import split_listen_address
from exporter.canary.catalog import load_golden_sets
from exporter.canary.runner import CanaryRunner
from exporter.collection import Collection
from exporter.collectors.canary import CanaryCollector
from exporter.collectors.base import Limiter
from exporter.collectors.metadata import MetadataCollector
from exporter.collectors.native import NativeCollector
from exporter.collectors.status import StatusCollector
from exporter.selfmetrics import SelfMetrics
from exporter.server import ExporterState, create_app, serve
from exporter.tfserving import protos
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.model_config import ModelSource
from exporter.tfserving.rest_client import RestClient

log = logging.getLogger(__name__)


def build_clients(config, selfmetrics: SelfMetrics) -> dict:
    tf = config.tfserving
    clients = {}
    if tf.grpc_address:
        clients["grpc"] = GrpcClient(tf.grpc_address, observe=selfmetrics.observe_call)
    if tf.rest_address:
        clients["rest"] = RestClient(tf.rest_address, observe=selfmetrics.observe_call)
    return clients


def build_canaries(config, clients: dict) -> tuple[CanaryRunner | None, CanaryCollector | None]:
    """The background runner and its collector, when canaries are on and have golden files."""
    canary = config.canary
    if not canary.enabled or not (canary.golden_files or canary.golden_dir):
        return None, None
    golden, problems = load_golden_sets(canary.golden_files, canary.golden_dir,
                                        canary.max_examples)
    for problem in problems:
        log.error("golden file rejected: %s", problem)
    runner = CanaryRunner(golden, clients[canary.protocol], canary.protocol,
                          interval=canary.interval, intervals=dict(canary.intervals),
                          jitter=canary.jitter, timeout=canary.timeout,
                          batch_size=canary.batch_size, max_concurrent=canary.max_concurrent)
    return runner, CanaryCollector(runner.store, problems)


def build_collection(config, selfmetrics: SelfMetrics, clients: dict,
                     extra_collectors=(), extra_models=()) -> Collection:
    tf = config.tfserving
    source = ModelSource(list(config.models) + list(extra_models), tf.model_config_file)
    limits = config.limits
    dropped = selfmetrics.dropped
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
            Limiter(dropped, "tensor", limits.max_tensors_per_signature)))
    native = config.collectors.native
    if native.enabled and "rest" in clients:
        collectors.append(NativeCollector(tf.metrics_path, source.base_paths,
                                          native.passthrough, native.max_passthrough_series,
                                          dropped))
    collectors.extend(extra_collectors)
    model_limit = Limiter(dropped, "model", limits.max_models)

    def models() -> list[str]:
        return model_limit.cap(sorted(source.models()))

    return Collection(clients, collectors, ping_paths={"rest": (tf.metrics_path,)},
                      models=models)


def _summary(config) -> dict:
    tf = config.tfserving
    return {
        "gRPC address": tf.grpc_address or "(disabled)",
        "REST address": tf.rest_address or "(disabled)",
        "Models": ", ".join(config.models) or "(none configured)",
        "Model config file": tf.model_config_file or "(none)",
        "Canaries": (f"golden files {', '.join(config.canary.golden_files) or '-'}, "
                     f"directory {config.canary.golden_dir or '-'}, over {config.canary.protocol}"
                     if config.canary.enabled else "off"),
        "Collectors": ", ".join(
            f"{name}={c.protocol}" for name, c in
            (("status", config.collectors.status), ("metadata", config.collectors.metadata))
            if c.enabled) + (", native=rest" if config.collectors.native.enabled else ""),
    }


@dataclass
class RunningExporter:
    state: ExporterState
    server: object  # wsgiref server
    thread: threading.Thread
    canary: CanaryRunner | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if self.canary is not None:
            self.canary.stop()
        self.state.collection.close()


def start_exporter(config) -> RunningExporter:
    """Bind the listen address and serve in a background thread."""
    protos.load_all()  # fail at startup, not on the first scrape, if the protos are missing
    selfmetrics = SelfMetrics()
    clients = build_clients(config, selfmetrics)
    runner, canary_collector = build_canaries(config, clients)
    extra = [canary_collector] if canary_collector else []
    golden_models = runner.models if runner else []
    state = ExporterState(
        collection=build_collection(config, selfmetrics, clients, extra, golden_models),
        selfmetrics=selfmetrics,
        telemetry_path=config.web.telemetry_path,
        timeout=config.tfserving.timeout,
        timeout_offset=config.tfserving.timeout_offset,
        summary=_summary(config),
    )
    host, port = split_listen_address(config.web.listen_address)
    server = serve(create_app(state), host, port)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    if runner is not None:
        runner.start()
    state.ready.set()
    log.info("listening", extra={"address": f"{host or '0.0.0.0'}:{server.server_address[1]}",
                                 "telemetry_path": config.web.telemetry_path})
    return RunningExporter(state, server, thread, runner)
