"""Fleet mode end to end: one exporter probes three TF Serving servers for a real Prometheus.

Configured as a user would (issue 15): the exporter runs with both TF Serving addresses empty
and an allow-list of 127.0.0.1/32; Prometheus discovers the three servers from a file_sd
targets file (their gRPC addresses, each with its REST URL in a hidden ``__rest_target``
label, since the simulators' REST ports are random) and relabels them into
``/probe?target=...&rest_target=...`` on the exporter, the target becoming ``instance``. A
second job scrapes the exporter's own /metrics. The shipped rules are loaded with every
``for:`` shortened to 1 s (``fast_rules`` of the monitoring end-to-end test), and the probe job
is named ``tfserving-exporter-fleet`` as in the README's snippet, so the rules' job selector
is tested as shipped.

Then: every target's series carry its own instance (both protocols up, its models, its
canaries); the probe series carry no process metrics, the exporter's own job does; one server
stops and only its instance goes down and fires TFServingUnreachable.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence

import pytest
import yaml

from tests.conftest import SimulatorHandle
from tests.prometheus_harness import (
    LOCAL_HOST,
    PrometheusServer,
    _check_local_target,
    prometheus_config,
)
from tests.test_monitoring_e2e import fast_rules
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

PROBE_JOB = "tfserving-exporter-fleet"
SELF_JOB = "tfserving-exporter"
MODELS = {"half_plus_two", "image_classifier"}
SERVERS = 3
INTERVAL = "1s"


class FileSDPrometheus(PrometheusServer):
    """The harness' Prometheus with further scrape jobs written as Prometheus takes them
    (``file_sd_configs``, ``relabel_configs``), which the harness' short form cannot say."""

    def __init__(self, binary: str, workdir: str, jobs: Sequence[dict],
                 raw_jobs: Sequence[dict], rule_files: Sequence[str] = (),
                 evaluation_interval: str | None = None) -> None:
        self.raw_jobs = list(raw_jobs)
        super().__init__(binary, workdir, jobs, rule_files, evaluation_interval)

    def write_config(self, jobs: Sequence[dict], rule_files: Sequence[str] = (),
                     evaluation_interval: str | None = None) -> None:
        config = prometheus_config(jobs, rule_files, evaluation_interval)
        config["scrape_configs"].extend(self.raw_jobs)
        with open(self.config_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)


@pytest.fixture
def file_sd_prometheus(tmp_path, prometheus_binary):
    """Factory: ``start(jobs, raw_jobs, rule_files, evaluation_interval)``, stopped at teardown;
    on Prometheus 2.x and 3.x (``prometheus_binary``)."""
    binary = prometheus_binary
    started: list[PrometheusServer] = []

    def start(jobs, raw_jobs, rule_files=(), evaluation_interval=None) -> PrometheusServer:
        server = FileSDPrometheus(binary, str(tmp_path / f"prometheus-{len(started)}"), jobs,
                                  raw_jobs, rule_files, evaluation_interval)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def three_simulators(simulators):
    return [simulators() for _ in range(SERVERS)]


def write_targets_file(path, simulators: Sequence[SimulatorHandle]) -> str:
    """The file_sd targets: each server's gRPC address, its REST URL in a hidden label."""
    groups = [{"targets": [f"{LOCAL_HOST}:{sim.grpc_port}"],
               "labels": {"__rest_target": f"http://{LOCAL_HOST}:{sim.rest_port}"}}
              for sim in simulators]
    for group in groups:
        for target in group["targets"]:
            _check_local_target(target)  # the harness' rule: Prometheus scrapes 127.0.0.1 only
    path.write_text(json.dumps(groups, indent=2))
    return str(path)


def probe_job(exporter_address: str, targets_file: str) -> dict:
    """The probe job of the README's fleet-mode snippet, discovering targets from a file."""
    _check_local_target(exporter_address)  # every scrape goes to the exporter's address
    return {
        "job_name": PROBE_JOB,
        "metrics_path": "/probe",
        "scrape_interval": INTERVAL,
        "scrape_timeout": INTERVAL,
        "file_sd_configs": [{"files": [targets_file]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__rest_target"], "target_label": "__param_rest_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter_address},
        ],
    }


def by_instance(result: list[dict], *labels: str) -> dict[str, dict[tuple, float]]:
    """``{instance: {(label values...): value}}`` of a query result."""
    table: dict[str, dict[tuple, float]] = {}
    for sample in result:
        metric = sample["metric"]
        key = tuple(metric.get(label, "") for label in labels)
        table.setdefault(metric.get("instance", ""), {})[key] = float(sample["value"][1])
    return table


def test_fleet_exporter_probes_each_server_for_prometheus(file_sd_prometheus, three_simulators,
                                                         start_exporter_with, tmp_path):
    simulators = three_simulators
    exporter = start_exporter_with({
        "tfserving.grpc_address": "", "tfserving.rest_address": "",
        "probe.allowed_targets": ["127.0.0.1/32"],
        "probe.rest_port": 0,  # REST only where the probe names it (rest_target)
        "fleet.max_targets": 10, "fleet.target_expiry": "10m",
        "canary.golden_dir": STANDIN_GOLDEN_DIR, "canary.interval": "1s",
        "canary.jitter": 0.0, "canary.timeout": "5s",
    })
    exporter_address = f"{LOCAL_HOST}:{exporter.running.port}"
    instances = [f"{LOCAL_HOST}:{sim.grpc_port}" for sim in simulators]
    rest_urls = {f"{LOCAL_HOST}:{sim.grpc_port}": f"http://{LOCAL_HOST}:{sim.rest_port}"
                 for sim in simulators}
    targets_file = write_targets_file(tmp_path / "tfserving-targets.json", simulators)

    self_job = {"job_name": SELF_JOB, "targets": [exporter_address], "metrics_path": "/metrics",
                "scrape_interval": INTERVAL, "scrape_timeout": INTERVAL}
    prom = file_sd_prometheus([self_job], [probe_job(exporter_address, targets_file)],
                              rule_files=[fast_rules(tmp_path)], evaluation_interval="1s")

    # Every discovered server is a target of its own, probed through the exporter.
    targets = prom.wait_for_targets_up([PROBE_JOB, SELF_JOB])
    probes = [t for t in targets if t["labels"]["job"] == PROBE_JOB]
    assert sorted(t["labels"]["instance"] for t in probes) == sorted(instances)
    for target in probes:
        url = urllib.parse.urlsplit(target["scrapeUrl"])
        assert (url.netloc, url.path) == (exporter_address, "/probe"), target["scrapeUrl"]
        assert urllib.parse.parse_qs(url.query) == {
            "target": [target["labels"]["instance"]],
            "rest_target": [rest_urls[target["labels"]["instance"]]]}, target["scrapeUrl"]
        assert "__rest_target" not in target["labels"]  # hidden labels stay out of the series
    assert [t["labels"]["instance"] for t in targets if t["labels"]["job"] == SELF_JOB] \
        == [exporter_address]

    # Both protocols up, per target, under the target's own instance.
    every_protocol = {instance: {("grpc",): 1.0, ("rest",): 1.0} for instance in instances}
    prom.wait_for_query(f'tfserving_up{{job="{PROBE_JOB}"}}',
                        lambda r: by_instance(r, "protocol") == every_protocol, timeout=20)

    # Each target's models, each with its available version.
    models = prom.wait_for_query(
        f'tfserving_model_available_versions{{job="{PROBE_JOB}"}}',
        lambda r: {i: set(m) for i, m in by_instance(r, "model").items()}
        == {instance: {(model,) for model in MODELS} for instance in instances}, timeout=20)
    assert all(value >= 1 for sample in by_instance(models, "model").values()
               for value in sample.values()), models

    # Each target's canaries, run in the background per target, pass on every model.
    canaries = prom.wait_for_query(
        f'tfserving_canary_success{{job="{PROBE_JOB}"}}',
        lambda r: set(by_instance(r)) == set(instances)
        and all({m for m, _ in per} == MODELS and all(v == 1 for v in per.values())
                for per in by_instance(r, "model", "version").values()), timeout=30)
    assert {s["metric"]["instance"] for s in canaries} == set(instances)
    last_runs = by_instance(prom.query(
        f'tfserving_canary_last_run_timestamp_seconds{{job="{PROBE_JOB}"}}'), "model")
    assert {i: set(per) for i, per in last_runs.items()} \
        == {instance: {(model,) for model in MODELS} for instance in instances}

    # The exporter's own job has the process metrics and tracks the three targets; the probe
    # series carry none of the exporter's own families, and its own page no tfserving_up.
    assert prom.query_value(f'process_resident_memory_bytes{{job="{SELF_JOB}",'
                            f'instance="{exporter_address}"}}') > 0
    assert prom.query_value(f'tfserving_exporter_fleet_targets{{job="{SELF_JOB}"}}') == SERVERS
    assert prom.query_value(f'tfserving_exporter_dropped_total{{job="{SELF_JOB}",'
                            f'kind="target"}}') == 0
    assert prom.query(f'tfserving_up{{job="{SELF_JOB}"}}') == []
    for name in ("process_resident_memory_bytes", "python_info",
                 "tfserving_exporter_build_info"):
        assert prom.query(f'{name}{{job="{PROBE_JOB}"}}') == [], name
        for instance in instances:
            assert prom.query(f'{name}{{instance="{instance}"}}') == [], (name, instance)

    # Healthy: no TF Serving is unreachable.
    assert prom.query('ALERTS{alertname="TFServingUnreachable"}') == []

    # One server stops: its instance goes down and alerts; the other two stay healthy.
    down, healthy = instances[1], [instances[0], instances[2]]
    simulators[1].stop()
    prom.wait_for_query(f'tfserving_up{{job="{PROBE_JOB}",instance="{down}"}}',
                        lambda r: by_instance(r, "protocol")
                        == {down: {("grpc",): 0.0, ("rest",): 0.0}}, timeout=20)
    firing = {(down, "grpc", "firing"), (down, "rest", "firing")}
    alerts = prom.wait_for_query(
        'ALERTS{alertname="TFServingUnreachable"}',
        lambda r: {(s["metric"]["instance"], s["metric"]["protocol"], s["metric"]["alertstate"])
                   for s in r} == firing, timeout=20)
    assert {s["metric"]["job"] for s in alerts} == {PROBE_JOB}
    assert {s["metric"]["severity"] for s in alerts} == {"critical"}
    assert [a["labels"]["instance"] for a in prom.alerts()
            if a["labels"]["alertname"] == "TFServingUnreachable"] == [down, down]

    # The probe of the stopped server still answers (up 1: the exporter is fine), and the
    # others keep both protocols up at the latest scrapes.
    assert prom.query_value(f'up{{job="{PROBE_JOB}",instance="{down}"}}') == 1
    assert by_instance(prom.query(f'tfserving_up{{job="{PROBE_JOB}",instance!="{down}"}}'),
                       "protocol") \
        == {instance: {("grpc",): 1.0, ("rest",): 1.0} for instance in healthy}
    assert prom.query_value(f'up{{job="{SELF_JOB}"}}') == 1
