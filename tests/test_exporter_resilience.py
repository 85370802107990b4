"""/metrics stays on time and truthful while TF Serving is down, hangs, rolls versions or
answers garbage; recovery needs no exporter restart."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import sample_value, series
from tfserving_simulator.demo_models import write_broken_version, write_half_plus_two
from tfserving_simulator.faults import FaultRule


def _timed_metrics(exporter, scrape_timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    text = exporter.metrics(scrape_timeout=scrape_timeout)
    return text, time.monotonic() - started


def test_metrics_answer_in_time_while_tfserving_is_down_and_recover(simulator, exporter):
    assert sample_value(exporter.metrics(), "tfserving_up", protocol="grpc") == 1
    simulator.stop()

    text, elapsed = _timed_metrics(exporter, scrape_timeout=2)
    assert elapsed < 2
    assert sample_value(text, "tfserving_up", protocol="grpc") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 0
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 0
    assert not series(text, "tfserving_model_version_state")
    assert series(text, "tfserving_exporter_build_info")

    simulator.start()  # same ports, same models
    text = exporter.metrics_until(
        lambda t: sample_value(t, "tfserving_up", protocol="grpc") == 1
        and sample_value(t, "tfserving_up", protocol="rest") == 1
        and sample_value(t, "tfserving_model_serving_version", model="half_plus_two") == 123,
        message="exporter to see the restarted simulator")
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 1


def test_hanging_tfserving_cannot_hang_metrics(simulator, exporter):
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"status"}), hang=True))
    text, elapsed = _timed_metrics(exporter, scrape_timeout=1.5)
    assert elapsed < 1.5
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 0
    assert sample_value(text, "tfserving_up", protocol="grpc") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 1  # its port still answers
    simulator.simulator.faults.clear()
    exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_exporter_collector_success", collector="status") == 1,
        message="status collector to recover")


def test_error_replies_set_collector_success_to_zero(simulator, exporter):
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"metadata"}),
                                             error_code="INTERNAL"))
    # Signatures already cached for loaded versions would hide the fault: roll a new version.
    write_half_plus_two(f"{simulator.models_root}/half_plus_two", 124)
    text = exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_exporter_collector_success", collector="metadata") == 0,
        message="metadata collector to fail")
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 1
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1


def test_new_version_rolls_through_the_lifecycle(simulator, exporter):
    write_half_plus_two(f"{simulator.models_root}/half_plus_two", 124, load_seconds=1.0)
    seen_states: set[str] = set()

    def rolled(text: str) -> bool:
        for s in series(text, "tfserving_model_version_state"):
            if s["model"] == "half_plus_two" and s["version"] == "124" and s["__value__"] == 1:
                seen_states.add(s["state"])
        return (sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 124
                and sample_value(text, "tfserving_model_version_state", model="half_plus_two",
                                 version="123", state="END") == 1)

    text = exporter.metrics_until(rolled, message="version 124 to replace 123")
    assert seen_states & {"START", "LOADING"}, seen_states
    assert "AVAILABLE" in seen_states
    assert sample_value(text, "tfserving_model_version_state", model="half_plus_two",
                        version="124", state="AVAILABLE") == 1
    assert sample_value(text, "tfserving_model_available_versions", model="half_plus_two") == 1
    # END versions keep being reported, signatures only for AVAILABLE ones.
    versions_with_signatures = {s["version"] for s in series(text, "tfserving_model_signature_info")
                                if s["model"] == "half_plus_two"}
    assert versions_with_signatures == {"124"}


def test_failed_load_is_reported_with_its_error_code(simulator, exporter):
    write_broken_version(f"{simulator.models_root}/half_plus_two", 200)
    text = exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_model_version_error", model="half_plus_two", version="200",
        error_code="NOT_FOUND") == 1, message="failed load of version 200")
    assert sample_value(text, "tfserving_model_version_state", model="half_plus_two",
                        version="200", state="END") == 1
    # The old version keeps serving.
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123


class _GarbageHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - stdlib naming
        body = b'{"model_version_status": [{"version": "x"'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def garbage_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_garbled_rest_reply_fails_the_collector_not_the_scrape(simulator, start_exporter_for,
                                                               garbage_server, caplog):
    exporter = start_exporter_for(
        simulator, tfserving__rest_address=f"http://127.0.0.1:{garbage_server.server_port}",
        collectors__status__protocol="rest")
    with caplog.at_level("WARNING", logger="exporter"):
        text = exporter.metrics()
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 1  # it did answer
    assert any("not valid JSON" in record.getMessage() for record in caplog.records)
