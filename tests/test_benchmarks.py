"""The benchmark scripts keep working (their numbers go in the README, not in assertions)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_scrape_benchmark_runs_and_reports_latency_and_rss():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "scrape_benchmark.py"), "--scrapes", "20"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/metrics latency p50:" in result.stdout
    assert "exporter RSS:" in result.stdout


def test_fake_tfserving_answers_as_tf_serving_does():
    import pytest
    import requests

    from exporter.tfserving.deadline import Deadline
    from exporter.tfserving.grpc_client import GrpcClient
    from exporter.tfserving.types import TFServingError
    from tests.helpers import free_port, wait_until

    grpc_port, rest_port = free_port(), free_port()
    rest = f"http://127.0.0.1:{rest_port}"
    standin = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "benchmarks", "fake_tfserving.py"), "--models", "2",
         "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    client = GrpcClient(f"127.0.0.1:{grpc_port}")
    try:
        page = wait_until(lambda: requests.get(rest + "/monitoring/prometheus/metrics",
                                               timeout=5), timeout=30, message="stand-in")
        assert page.status_code == 200
        assert ':tensorflow:serving:request_count{model_name="model_001",status="OK"} 1' in page.text
        assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/model_000/3",' \
               'status="success"} 1' in page.text
        statuses = client.model_status("model_001", Deadline.after(5))
        assert [(s.version, s.state, s.error_code) for s in statuses] == [
            (1, "AVAILABLE", "OK"), (2, "AVAILABLE", "OK"), (3, "AVAILABLE", "OK")]
        for version in (None, 2):
            signatures = client.model_metadata("model_000", version, Deadline.after(5))
            assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(signatures)
            assert [t.alias for t in signatures["serving_default"].inputs] == ["x"]
        with pytest.raises(TFServingError) as err:
            client.model_status("model_002", Deadline.after(5))
        assert err.value.code == "NOT_FOUND"
        reply = requests.get(rest + "/v1/models/model_001", timeout=5)
        assert [v["state"] for v in reply.json()["model_version_status"]] == ["AVAILABLE"] * 3
        assert requests.head(rest + "/monitoring/prometheus/metrics", timeout=5).status_code == 200
    finally:
        client.close()
        standin.terminate()
        standin.wait(10)


def test_suite_prints_the_simulator_and_stand_in_tables():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "suite.py"), "--models", "1",
         "--standin-models", "2", "--traffic-models", "2", "--scrapes", "5",
         "--row-seconds", "0", "--no-extras"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "simulator's own page p50 / p99" in result.stdout
    assert "generate_latest floor" in result.stdout
    for page in ("unchanged", "every model's requests change"):
        rows = [line for line in result.stdout.splitlines()
                if line.startswith(f"| 2 | {page} | 5 |")]
        assert len(rows) == 1 and "(yes)" in rows[0], result.stdout


def test_the_stand_in_with_traffic_changes_its_page_on_every_read():
    import requests

    from tests.helpers import free_port, wait_until

    grpc_port, rest_port = free_port(), free_port()
    url = f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics"
    standin = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "benchmarks", "fake_tfserving.py"), "--models", "2",
         "--traffic", "--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        first = wait_until(lambda: requests.get(url, timeout=5), timeout=30,
                           message="stand-in").text
        second = requests.get(url, timeout=5).text
        count = ':tensorflow:serving:request_count{model_name="model_001",status="OK"} '
        assert count + "1\n" in first and count + "2\n" in second
        assert ('request_latency_count{model_name="model_000",API="predict",entrypoint="REST"} 2'
                in second)
        stages = [line for line in second.splitlines() if "load_latency_by_stage" in line]
        assert stages and all(line in first.splitlines() for line in stages)  # loads stay
    finally:
        standin.terminate()
        standin.wait(10)


def test_fleet_benchmark_prints_probe_and_sidecar_rows_and_memory():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "fleet_benchmark.py"), "--targets", "2",
         "--models", "2", "--rounds", "3", "--warm-rounds", "1"],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for start in ("| sidecar: /metrics of 1 server (floor) | 6 |",
                  "| fleet: /probe round-robin over 2 servers | 6 |", "| fleet / sidecar |",
                  "| all 2 targets tracked (after warm-up) |"):
        assert any(line.startswith(start) for line in lines), result.stdout
