"""The Prometheus page on the REST port after a known mix of calls (docs/tfserving-behaviour.md §5.1, §5.5)."""

from __future__ import annotations

import re

import grpc
import requests

from tests.simulator.conftest import METRICS_PATH, start_simulator
from tfserving_wire import protos

TIMEOUT = 5
E33_LIMITS = ["10", "18", "32.4", "58.32", "104.976", "188.957", "340.122", "612.22", "1102",
              "1983.59", "3570.47", "6426.84", "11568.3", "20823", "37481.3", "67466.4",
              "121440", "218591", "393464", "708235", "1.27482e+06", "2.29468e+06",
              "4.13043e+06", "7.43477e+06", "1.33826e+07", "2.40887e+07", "4.33596e+07",
              "7.80473e+07", "1.40485e+08", "2.52873e+08", "4.55172e+08", "8.19309e+08",
              "1.47476e+09", "+Inf"]


def drive_traffic(sim) -> None:
    """3 REST predicts, 2 gRPC Predicts, 1 status GET, 1 malformed body, 1 unknown model,
    plus calls that must stay invisible (gRPC status/metadata, a non-/v1 path)."""
    rest = f"http://127.0.0.1:{sim.rest_port}"
    for _ in range(3):
        assert requests.post(rest + "/v1/models/half_plus_two:predict",
                             data=b'{"instances": [1.0]}', timeout=TIMEOUT).status_code == 200
    assert requests.get(rest + "/v1/models/half_plus_two", timeout=TIMEOUT).status_code == 200
    assert requests.post(rest + "/v1/models/half_plus_two:predict", data=b"{oops",
                         timeout=TIMEOUT).status_code == 400
    assert requests.post(rest + "/v1/models/nosuchmodel:predict", data=b'{"instances": [1]}',
                         timeout=TIMEOUT).status_code == 404
    assert requests.get(rest + "/elsewhere", timeout=TIMEOUT).status_code == 404
    with grpc.insecure_channel(f"127.0.0.1:{sim.grpc_port}") as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(2):
            request = protos.predict_pb2.PredictRequest()
            request.model_spec.name = "half_plus_two"
            request.inputs["x"].dtype = protos.types_pb2.DT_FLOAT
            request.inputs["x"].tensor_shape.dim.add().size = 1
            request.inputs["x"].float_val.append(2.0)
            stub.Predict(request, timeout=TIMEOUT)
        status = protos.get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "half_plus_two"
        protos.model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            status, timeout=TIMEOUT)


def scrape(sim, suffix: str = "") -> requests.Response:
    return requests.get(f"http://127.0.0.1:{sim.rest_port}{METRICS_PATH}{suffix}",
                        timeout=TIMEOUT)


def samples(page: str, metric: str) -> dict[str, str]:
    pattern = re.compile(rf"^{re.escape(metric)}(\{{[^}}]*\}}) (\S+)$", re.MULTILINE)
    return {labels: value for labels, value in pattern.findall(page)}


def test_request_series_after_a_known_mix_of_calls(fresh_simulator):
    drive_traffic(fresh_simulator)
    response = scrape(fresh_simulator)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    page = response.text
    assert samples(page, ":tensorflow:serving:request_count") == {
        '{model_name="half_plus_two",status="INVALID_ARGUMENT"}': "1",
        '{model_name="half_plus_two",status="OK"}': "6",
        '{model_name="nosuchmodel",status="NOT_FOUND"}': "1",
    }
    counts = samples(page, ":tensorflow:serving:request_latency_count")
    assert counts == {
        '{model_name="half_plus_two",API="",entrypoint="REST"}': "1",
        '{model_name="half_plus_two",API="Predict",entrypoint="GRPC"}': "2",
        '{model_name="half_plus_two",API="predict",entrypoint="REST"}': "3",
    }
    runtime = samples(page, ":tensorflow:serving:runtime_latency_count")
    assert runtime == {'{model_name="half_plus_two",API="Predict",runtime="TF1"}': "5"}
    buckets = re.findall(r'^:tensorflow:serving:request_latency_bucket\{model_name="half_plus_two",'
                         r'API="predict",entrypoint="REST",le="([^"]+)"\} (\d+)$', page, re.M)
    assert [limit for limit, _ in buckets] == E33_LIMITS
    assert buckets[-1][1] == "3"
    cumulative = [int(count) for _, count in buckets]
    assert cumulative == sorted(cumulative)


def test_page_format_rules(fresh_simulator):
    page = scrape(fresh_simulator).text
    assert "# HELP" not in page and page.endswith("\n") and not page.endswith("\n\n")
    assert "# TYPE :tensorflow:serving:request_log_count counter\n# TYPE" in page
    assert re.search(r"^:tensorflow:core:direct_session_runs\{\} \d+$", page, re.M)
    type_names = re.findall(r"^# TYPE (\S+) ", page, re.M)
    assert type_names == sorted(type_names, key=lambda n: n.replace(":", "/"))


def test_query_string_is_a_400_in_plain_text(fresh_simulator):
    response = scrape(fresh_simulator, "?x=1")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == f"Unexpected path: {METRICS_PATH}?x=1. Should be {METRICS_PATH}"


def test_any_method_renders_the_page(fresh_simulator):
    response = requests.post(f"http://127.0.0.1:{fresh_simulator.rest_port}{METRICS_PATH}",
                             timeout=TIMEOUT)
    assert response.status_code == 200 and "# TYPE" in response.text


def test_disabled_monitoring_gives_the_html_404(tmp_path):
    (tmp_path / "off").mkdir()
    config = tmp_path / "off" / "monitoring.config"
    config.write_text("prometheus_config { enable: false }\n")
    sim = start_simulator(tmp_path, monitoring_config_file=str(config))
    try:
        response = scrape(sim)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "text/html"
    finally:
        sim.stop()
