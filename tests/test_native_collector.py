"""The native collector against a real simulator: TF Serving's own page, bridged exactly."""

from __future__ import annotations

import glob
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests

from exporter.collectors.native import (ModelPathMapper, NativeCollector, passthrough_name,
                                        seconds_text)
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.prometheus_page import labels, parse_page, split_le
from tests.conftest import SimulatorHandle
from tests.helpers import sample_value, samples, series
from tfserving_simulator.demo_files import models_config_text
from tfserving_simulator.demo_models import write_half_plus_two, write_image_classifier


def _drive_traffic(sim, rest_predicts: int, grpc_predicts: int) -> None:
    base = f"http://127.0.0.1:{sim.rest_port}"
    for index in range(rest_predicts):
        reply = requests.post(f"{base}/v1/models/half_plus_two:predict",
                              json={"instances": [float(index)]}, timeout=10)
        assert reply.status_code == 200
    requests.post(f"{base}/v1/models/half_plus_two:predict", data=b"{", timeout=10)  # 400
    requests.post(f"{base}/v1/models/nosuch:predict", json={"instances": [1.0]}, timeout=10)
    client = GrpcClient(f"127.0.0.1:{sim.grpc_port}")
    try:
        for _ in range(grpc_predicts):
            client.predict("half_plus_two", None, "serving_default",
                           {"x": np.array([[1.0], [2.0]], dtype=np.float32)}, ["y"],
                           Deadline.after(10))
    finally:
        client.close()


def _raw_page(sim) -> str:
    reply = requests.get(f"http://127.0.0.1:{sim.rest_port}/monitoring/prometheus/metrics",
                         timeout=10)
    assert reply.status_code == 200
    return reply.text


def test_bridged_counts_equal_tf_servings_own_page_in_seconds(simulator, exporter):
    _drive_traffic(simulator, rest_predicts=7, grpc_predicts=5)
    text = exporter.metrics()   # neither scrape adds requests to TF Serving's counters
    raw = parse_page(_raw_page(simulator))
    bridged = samples(text)

    for _, label_text, value in raw[":tensorflow:serving:request_count"].samples:
        found = labels(label_text)
        assert bridged[("tfserving_requests_total", frozenset(
            {"model": found["model_name"], "status": found["status"]}.items()))] == float(value)
    assert sample_value(text, "tfserving_requests_total", model="half_plus_two",
                        status="OK") == 12
    assert sample_value(text, "tfserving_requests_total", model="nosuch",
                        status="NOT_FOUND") == 1

    compared = 0
    for name, label_text, value in raw[":tensorflow:serving:request_latency"].samples:
        base, le = split_le(label_text) if name.endswith("_bucket") else (label_text, None)
        found = labels(base)
        api = found["API"].lower() or "get"
        wanted = {"model": found["model_name"], "api": api,
                  "entrypoint": found["entrypoint"].lower()}
        if le is not None:
            wanted["le"] = seconds_text(le)
            suffix = "_bucket"
        else:
            suffix = name[len(":tensorflow:serving:request_latency"):]
        got = bridged[("tfserving_request_duration_seconds" + suffix, frozenset(wanted.items()))]
        expected = float(value) * 1e-6 if suffix == "_sum" else float(value)
        assert got == pytest.approx(expected, rel=1e-9), (name, label_text)
        compared += 1
    assert compared == 2 * 36  # REST predict and gRPC Predict cells, nothing else yet
    assert sample_value(text, "tfserving_request_duration_seconds_count", model="half_plus_two",
                        api="predict", entrypoint="grpc") == 5
    assert sample_value(text, "tfserving_request_duration_seconds_bucket", model="half_plus_two",
                        api="predict", entrypoint="rest", le="+Inf") == 7
    assert sample_value(text, "tfserving_runtime_duration_seconds_count", model="half_plus_two",
                        api="predict", runtime="TF1") == 12
    assert sample_value(text, "tfserving_model_load_attempts_total", model="half_plus_two",
                        version="123", status="success") == 1
    assert sample_value(text, "tfserving_model_load_duration_seconds_total",
                        model="image_classifier", version="1") > 0
    assert sample_value(text, "tfserving_exporter_collector_success", collector="native") == 1


def test_missing_monitoring_page_is_explained_once(tmp_path, start_exporter_for, caplog):
    write_half_plus_two(str(tmp_path / "models" / "half_plus_two"), 1)
    config = tmp_path / "models.config"
    config.write_text(models_config_text([("half_plus_two", str(tmp_path / "models" /
                                                                 "half_plus_two"))]))
    from tfserving_simulator.demo_files import DemoFiles
    sim = SimulatorHandle(DemoFiles(str(tmp_path), str(config), "", ("half_plus_two",))).start()
    try:
        exporter = start_exporter_for(sim)
        with caplog.at_level("WARNING", logger="exporter"):
            first, second = exporter.metrics(), exporter.metrics()
        for text in (first, second):
            assert sample_value(text, "tfserving_exporter_collector_success",
                                collector="native") == 0
            assert sample_value(text, "tfserving_exporter_collector_success",
                                collector="status") == 1
            assert sample_value(text, "tfserving_up", protocol="rest") == 1
        hints = [r for r in caplog.records if "prometheus_config { enable: true" in r.getMessage()]
        assert len(hints) == 1
        assert "--monitoring_config_file" in hints[0].getMessage()
    finally:
        sim.stop()


class _PageServer:
    """Serves one fixed body on every path: a TF Serving REST port gone wrong."""

    def __init__(self, body: bytes) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("body", [
    b"<html><body>a proxy error page</body></html>\n",
    b':tensorflow:serving:request_count{model_name="m",status="OK"} 1\n:tensorflow:serv',
    b':tensorflow:serving:request_count{model_name="m",status="OK"} lots\n',
    b':tensorflow:serving:request_count{model_name="m",status=OK} 1\n',
], ids=["html", "cut-off", "bad-value", "bad-labels"])
def test_garbled_or_truncated_page_fails_the_native_collector_only(simulator, start_exporter_for,
                                                                   body):
    server = _PageServer(body)
    try:
        exporter = start_exporter_for(
            simulator, tfserving__rest_address=f"http://127.0.0.1:{server.port}")
        text = exporter.metrics()
        assert sample_value(text, "tfserving_exporter_collector_success", collector="native") == 0
        assert not series(text, "tfserving_requests_total")
        assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 1
        assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123
    finally:
        server.stop()


def test_models_added_to_models_config_appear_without_a_restart(tmp_path, start_exporter_for):
    models = tmp_path / "models"
    write_half_plus_two(str(models / "half_plus_two"), 1)
    write_image_classifier(str(models / "image_classifier"), 1)
    config = tmp_path / "models.config"
    config.write_text(models_config_text([("half_plus_two", str(models / "half_plus_two"))]))
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true }\n')
    from tfserving_simulator.demo_files import DemoFiles
    sim = SimulatorHandle(DemoFiles(str(tmp_path), str(config), str(monitoring),
                                    ("half_plus_two",)),
                          model_config_file_poll_wait_seconds=0.1).start()
    try:
        exporter = start_exporter_for(sim)
        text = exporter.metrics()
        assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 1
        assert sample_value(text, "tfserving_model_serving_version",
                            model="image_classifier") is None

        config.write_text(models_config_text([
            ("half_plus_two", str(models / "half_plus_two")),
            ("image_classifier", str(models / "image_classifier"))]))
        text = exporter.metrics_until(
            lambda t: sample_value(t, "tfserving_model_serving_version",
                                   model="image_classifier") == 1
            and sample_value(t, "tfserving_model_load_attempts_total", model="image_classifier",
                             version="1", status="success") == 1,
            message="the added model's metrics")
        assert sample_value(text, "tfserving_model_signature_info", model="image_classifier",
                            version="1", signature="serving_default", method="predict") == 1
    finally:
        sim.stop()


def test_passthrough_exports_other_tf_metrics_under_a_cap(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, collectors__native__passthrough=True)
    text = exporter.metrics()
    assert sample_value(text, "tensorflow_core_graph_runs_total") is not None
    assert series(text, "tensorflow_cc_saved_model_load_latency_by_stage_bucket")
    assert not series(text, "tensorflow_serving_request_count_total")  # bridged, not passed

    capped = start_exporter_for(simulator, collectors__native__passthrough=True,
                                collectors__native__max_passthrough_series=2)
    text = capped.metrics()
    passed = [n for (n, _) in samples(text) if n.startswith("tensorflow_")]
    assert len(passed) <= 2
    assert sample_value(text, "tfserving_exporter_dropped_total", kind="native_series") > 0


@pytest.mark.parametrize("model_path, expected", [
    ("/models/half_plus_two/00000123", ("half_plus_two", "123")),
    ("/models/half_plus_two/1", ("half_plus_two", "1")),
    ("/srv/deep/tree/resnet/7", ("resnet_from_config", "7")),
    ("s3://bucket/models/bert/42", ("bert", "42")),
    ("/weird/path/notanumber", ("path", "notanumber")),
])
def test_model_path_maps_to_model_and_version(model_path, expected):
    mapper = ModelPathMapper(lambda: {"resnet_from_config": "/srv/deep/tree/resnet/"})
    assert mapper(model_path) == expected


@pytest.mark.parametrize("tf_name, exported", [
    (":tensorflow:core:graph_runs", "tensorflow_core_graph_runs"),
    (":tensorflow:cc:saved_model:load_latency_by_stage",
     "tensorflow_cc_saved_model_load_latency_by_stage"),
    ("_1weird:name", "tensorflow_1weird_name"),
])
def test_passthrough_names(tf_name, exported):
    assert passthrough_name(tf_name) == exported


@pytest.mark.parametrize("microseconds, seconds", [
    ("10", "1e-05"), ("32.4", "3.24e-05"), ("1.27482e+06", "1.27482"), ("+Inf", "+Inf"),
])
def test_bucket_limits_convert_without_float_noise(microseconds, seconds):
    assert seconds_text(microseconds) == seconds


def test_benchmark_script_runs():
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, os.path.join(root, "benchmarks",
                                                          "native_benchmark.py"), "--lines",
                             "2000", "--runs", "3"], capture_output=True, text=True,
                            timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "per scrape" in result.stdout


REAL_PAGES = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "testdata", "native", "*.txt")))


@pytest.mark.parametrize("path", REAL_PAGES, ids=os.path.basename)
def test_real_pages_bridge_to_a_valid_exposition(path):
    from exporter.exposition import encode
    with open(path, encoding="utf-8") as handle:
        page = handle.read()
    collector = NativeCollector("/monitoring/prometheus/metrics", lambda: {}, passthrough=True)
    body, _ = encode(collector.convert(page), [], "text/plain")
    if "excerpt" in os.path.basename(path):
        # Cut short in the issue it was posted to: bucket lines without a TYPE line or +Inf are
        # not a histogram, so none is made up; the counter is bridged.
        assert not series(body.decode(), "tfserving_request_duration_seconds_bucket")
        assert series(body.decode(), "tfserving_requests_total")
    if "kubeflow" in os.path.basename(path):  # model_path="gs://kubeflow-examples-data/mnist/1"
        assert sample_value(body.decode(), "tfserving_model_load_attempts_total", model="mnist",
                            version="1", status="success") == 1
    assert samples(body.decode())  # parses back as a valid exposition
