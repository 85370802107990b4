"""The exporter's own long-lived metrics (the per-scrape ones are built fresh by collectors)."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__

# Calls to TF Serving on the same host take ~1 ms; slow ones approach the scrape timeout.
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# tfserving_exporter_dropped_total{kind}: the first five are limits.* caps; duplicate_version
# counts version entries a status reply listed twice; native_invalid counts samples of TF
# Serving's page that would make /metrics invalid (NaN counters, broken histograms, ...);
# target counts probes of targets past fleet.max_targets (the exporter's own /metrics only).
SCRAPE_DROP_KINDS = ("model", "version", "signature", "tensor", "native_series",
                     "duplicate_version", "native_invalid")
DROP_KINDS = SCRAPE_DROP_KINDS + ("target",)

# `*_created` series double the exposition for no use on a sidecar that restarts with its pod.
disable_created_metrics()


class CallMetrics:
    """What the scrapes of one TF Serving server count across scrapes: the duration of each
    call and what was dropped. The sidecar has one (in SelfMetrics); fleet mode one per
    target, exported by its probes."""

    def __init__(self, registry: CollectorRegistry | None = None,
                 drop_kinds: tuple[str, ...] = SCRAPE_DROP_KINDS) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.probe_duration = Histogram(
            "tfserving_probe_duration_seconds",
            "Duration of the exporter's own calls to TF Serving, by protocol and API.",
            ["protocol", "api"],
            buckets=PROBE_BUCKETS,
            registry=self.registry,
        )
        self.dropped = Counter(
            "tfserving_exporter_dropped_total",
            "Items TF Serving reported that were left out of /metrics, by kind: a "
            "configured limit was reached (model, version, signature, tensor, "
            "native_series, target), or the item was invalid (duplicate_version, "
            "native_invalid).",
            ["kind"],
            registry=self.registry,
        )
        for kind in drop_kinds:
            self.dropped.labels(kind)

    def observe_call(self, protocol: str, api: str, seconds: float) -> None:
        self.probe_duration.labels(protocol, api).observe(seconds)



class SelfMetrics(CallMetrics):
    """Metrics about the exporter itself, kept across scrapes in their own registry."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry(auto_describe=True), DROP_KINDS)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        build_info = Gauge(
            "tfserving_exporter_build_info",
            "Always 1; labels carry the exporter and Python versions.",
            ["version", "python_version"],
            registry=self.registry,
        )
        build_info.labels(__version__, platform.python_version()).set(1)
        self.scrape_errors = Counter(
            "tfserving_exporter_scrape_errors_total",
            "Scrapes of the exporter that could not be answered fully, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.reload_successful = Gauge(
            "tfserving_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load was applied, 0 if it was rejected and the "
            "previous configuration is still in force.", registry=self.registry)
        self.reload_success_time = Gauge(
            "tfserving_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration (re)load that was applied.",
            registry=self.registry)
        self.fleet_targets = Gauge(
            "tfserving_exporter_fleet_targets",
            "Targets of /probe tracked now (fleet mode; at most fleet.max_targets).",
            registry=self.registry)
        self.reload_successful.set(1)
        self.reload_success_time.set_to_current_time()
        for reason in ("too_many_concurrent_scrapes", "too_many_concurrent_probes",
                       "internal"):
            self.scrape_errors.labels(reason)
