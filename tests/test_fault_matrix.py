"""Fault matrix: whatever TF Serving does, /metrics answers within the scrape timeout with the
right tfserving_up and collector success, and recovers without an exporter restart."""

from __future__ import annotations

import time

import pytest

from tests.conftest import SimulatorHandle
from tests.helpers import free_port, sample_value, series
from tfserving_simulator.demo_files import models_config_text
from tfserving_simulator.faults import FaultRule

SCRAPE_TIMEOUT = 1.5


def _scrape(exporter) -> str:
    started = time.monotonic()
    text = exporter.metrics(scrape_timeout=SCRAPE_TIMEOUT)
    assert time.monotonic() - started < SCRAPE_TIMEOUT
    return text


def _success(text: str, collector: str):
    return sample_value(text, "tfserving_exporter_collector_success", collector=collector)


def test_tfserving_absent_at_start_then_arriving(tmp_path, start_exporter_for):
    from tfserving_simulator.demo_files import write_demo_files

    sim = SimulatorHandle(write_demo_files(str(tmp_path)))
    sim.grpc_port, sim.rest_port = free_port(), free_port()  # nothing listens there yet
    exporter = start_exporter_for(sim)
    text = _scrape(exporter)
    assert sample_value(text, "tfserving_up", protocol="grpc") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 0
    assert _success(text, "status") == 0 and _success(text, "native") == 0
    sim.start()
    try:
        exporter.metrics_until(lambda t: sample_value(t, "tfserving_up", protocol="grpc") == 1
                               and _success(t, "native") == 1
                               and sample_value(t, "tfserving_model_serving_version",
                                                model="half_plus_two") == 123,
                               message="the late TF Serving")
    finally:
        sim.stop()


@pytest.mark.parametrize("code, grpc_up", [
    ("UNAVAILABLE", 0),          # TF Serving says it cannot serve: as good as down
    ("DEADLINE_EXCEEDED", 0),
    ("RESOURCE_EXHAUSTED", 1),   # it answered; the collector failed
    ("INTERNAL", 1),
])
def test_grpc_error_codes(simulator, exporter, code, grpc_up):
    rule = simulator.simulator.faults.add(FaultRule(operations=frozenset({"status"}),
                                                    protocols=frozenset({"grpc"}),
                                                    error_code=code))
    text = _scrape(exporter)
    assert _success(text, "status") == 0
    assert sample_value(text, "tfserving_up", protocol="grpc") == grpc_up
    assert sample_value(text, "tfserving_up", protocol="rest") == 1
    assert _success(text, "native") == 1  # the other collectors carry on
    simulator.simulator.faults.clear(rule)
    exporter.metrics_until(lambda t: _success(t, "status") == 1, message="recovery")


def test_rest_5xx_replies(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, collectors__status__protocol="rest")
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"status"}),
                                             protocols=frozenset({"rest"}),
                                             error_code="INTERNAL"))
    text = _scrape(exporter)
    assert _success(text, "status") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 1
    simulator.simulator.faults.clear()
    exporter.metrics_until(lambda t: _success(t, "status") == 1, message="recovery")


@pytest.mark.parametrize("operation, collector", [("status", "status"),
                                                  ("metrics_page", "native")])
def test_slow_tfserving_beyond_the_deadline(simulator, exporter, operation, collector):
    simulator.simulator.faults.add(FaultRule(operations=frozenset({operation}),
                                             latency_seconds=3.0))
    text = _scrape(exporter)
    assert _success(text, collector) == 0
    simulator.simulator.faults.clear()
    exporter.metrics_until(lambda t: _success(t, collector) == 1, message="recovery")


def test_hanging_metrics_page(simulator, exporter):
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"metrics_page"}), hang=True))
    text = _scrape(exporter)
    assert _success(text, "native") == 0
    assert _success(text, "status") == 1
    simulator.simulator.faults.clear()


def test_model_removed_from_models_config(simulator, exporter):
    text = _scrape(exporter)
    assert sample_value(text, "tfserving_model_serving_version", model="image_classifier") == 1
    with open(simulator.files.model_config_file, "w", encoding="utf-8") as handle:
        handle.write(models_config_text([("half_plus_two",
                                          f"{simulator.models_root}/half_plus_two")]))
    text = exporter.metrics_until(lambda t: not [
        s for s in series(t, "tfserving_model_version_state") if s["model"] == "image_classifier"],
        message="image_classifier gone")
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123


def test_killed_and_restarted_mid_run(simulator, exporter):
    assert sample_value(_scrape(exporter), "tfserving_up", protocol="grpc") == 1
    for _ in range(2):
        simulator.stop()
        assert sample_value(_scrape(exporter), "tfserving_up", protocol="grpc") == 0
        simulator.start()
        exporter.metrics_until(lambda t: sample_value(t, "tfserving_up", protocol="grpc") == 1
                               and _success(t, "native") == 1, message="restart seen")


def test_twenty_concurrent_scrapers_all_get_answers(simulator, exporter):
    import concurrent.futures

    import requests

    def scrape_ten(_):
        session = requests.Session()
        codes = []
        for _ in range(10):
            reply = session.get(exporter.url + "/metrics", timeout=15,
                                headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
            codes.append((reply.status_code, "tfserving_up" in reply.text))
        return codes

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = [code for codes in pool.map(scrape_ten, range(20)) for code in codes]
    assert results == [(200, True)] * 200
    assert sample_value(exporter.metrics(), "tfserving_exporter_scrape_errors_total",
                        reason="too_many_concurrent_scrapes") in (None, 0)
