"""A real Prometheus scrapes a real exporter and the simulator's own page."""

from __future__ import annotations

import http.server
import threading

import pytest
import requests

from tests.prometheus_harness import PrometheusError, exporter_and_tfserving_jobs, scrape_config
from tests.prometheus_harness import prometheus_for  # noqa: F401  (pytest fixture)

def rest_predict(simulator, instances) -> None:
    reply = requests.post(
        f"http://127.0.0.1:{simulator.rest_port}/v1/models/half_plus_two:predict",
        json={"instances": instances}, timeout=10)
    assert reply.status_code == 200, reply.text


def test_prometheus_scrapes_the_exporter_and_tfserving_page(prometheus_for, simulator,
                                                            start_exporter_for):
    exporter = start_exporter_for(simulator)
    rest_predict(simulator, [[1.0], [2.0]])

    prom = prometheus_for(exporter_and_tfserving_jobs(exporter, simulator))
    targets = prom.wait_for_targets_up(["exporter", "tfserving"])

    assert {t["labels"]["job"] for t in targets} == {"exporter", "tfserving"}
    assert prom.wait_for_value('tfserving_up{job="exporter",protocol="grpc"}',
                               lambda v: v is not None) == 1
    # TF Serving's colon names (not valid as a bare PromQL identifier at the start) are
    # stored as they are and can be selected through __name__. Neither the exporter (gRPC
    # status calls, a HEAD ping) nor the page scrape counts as a request, so exactly our one
    # predict is there.
    count = prom.wait_for_value(
        '{__name__=":tensorflow:serving:request_count",job="tfserving",'
        'model_name="half_plus_two",status="OK"}', lambda v: v is not None)
    assert count == 1
    latency = prom.query('{__name__=":tensorflow:serving:request_latency_count",'
                         'model_name="half_plus_two"}')
    assert [(r["metric"]["API"], r["metric"]["entrypoint"], r["value"][1]) for r in latency] \
        == [("predict", "REST", "1")]


# A page in the Prometheus text format as TF Serving serves it (Content-Type text/plain), with
# bucket bounds written as integers.
RECORDED_PAGE = (b"# TYPE recorded_seconds histogram\n"
                 b'recorded_seconds_bucket{le="1"} 1\nrecorded_seconds_bucket{le="+Inf"} 2\n'
                 b"recorded_seconds_sum 3\nrecorded_seconds_count 2\n")


class AcceptRecorder(http.server.ThreadingHTTPServer):
    """Serves RECORDED_PAGE on 127.0.0.1 and keeps the Accept headers of its scrapes."""

    def __init__(self) -> None:
        self.accept_headers: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                recorder.accept_headers.append(self.headers.get("Accept", ""))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(RECORDED_PAGE)))
                self.end_headers()
                self.wfile.write(RECORDED_PAGE)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def test_scrape_negotiation_and_le_labels_on_each_version(prometheus_for, prometheus_version,
                                                          exporter):
    """What differs between 2.x and 3.x at scrape time, pinned down: the Accept header (3.x
    asks for escaping=allow-utf-8) gets OpenMetrics from the exporter on both, and a bound
    exposed as le="1" is stored as "1" by 2.x but as "1.0" by 3.x (which is why no rule or
    dashboard matches le by its text: tests/test_dashboards.py)."""
    recorder = AcceptRecorder()
    try:
        prom = prometheus_for([
            {"job_name": "exporter", "targets": [f"127.0.0.1:{exporter.running.port}"]},
            {"job_name": "recorder", "targets": [f"127.0.0.1:{recorder.server_port}"]}])
        prom.wait_for_targets_up(["exporter", "recorder"])
        buckets = prom.wait_for_query('recorded_seconds_bucket{job="recorder"}',
                                      lambda result: len(result) == 2)
        # histogram_quantile reads the bound as a number on both (asked while the recorder
        # still serves: once it is gone, its series go stale).
        median = prom.query_value('histogram_quantile(0.5, recorded_seconds_bucket)')
    finally:
        recorder.close()
    assert median == 1.0
    accept = recorder.accept_headers[0]
    assert accept.startswith("application/openmetrics-text;version=1.0.0"), accept
    content_type = exporter.get(headers={"Accept": accept}).headers["Content-Type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0"), content_type
    stored = {sample["metric"]["le"] for sample in buckets}
    if prometheus_version == "2":
        assert "escaping" not in accept
        assert stored == {"1", "+Inf"}
    else:
        assert "escaping=allow-utf-8" in accept
        assert "escaping=allow-utf-8" in content_type
        assert stored == {"1.0", "+Inf"}


def test_rule_files_are_loaded_and_alerts_fire(prometheus_for, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "- name: harness\n"
        "  rules:\n"
        "  - alert: AlwaysFiring\n"
        "    expr: vector(1)\n"
        "    labels: {severity: info}\n")
    prom = prometheus_for([], rule_files=[str(rules)], evaluation_interval="1s")

    assert [group["name"] for group in prom.rules()] == ["harness"]
    firing = prom.wait_for_alert("AlwaysFiring", state="firing")
    assert firing[0]["labels"]["severity"] == "info"


def test_a_config_prometheus_rejects_fails_at_once_with_its_log(prometheus_for, tmp_path):
    broken = tmp_path / "broken-rules.yml"
    broken.write_text("groups:\n- name: broken\n  rules:\n  - record: x\n    expr: sum(\n")
    with pytest.raises(PrometheusError) as failure:
        prometheus_for([], rule_files=[str(broken)])
    message = str(failure.value)
    assert "exited with code" in message
    assert "broken-rules.yml" in message  # Prometheus' own complaint, from the log tail


def test_query_errors_and_ambiguous_values_are_reported(prometheus_for):
    prom = prometheus_for([])
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("sum(")
    with pytest.raises(PrometheusError, match="2 series"):
        prom.query_value('label_replace(vector(1), "a", "x", "", "") '
                         'or label_replace(vector(2), "a", "y", "", "")')
    assert prom.query_value("absent(nonexistent_metric)") == 1
    assert prom.query_value("nonexistent_metric") is None


def test_only_local_targets_are_accepted():
    assert scrape_config({"job_name": "a", "targets": ["127.0.0.1:9"]})["static_configs"] == \
        [{"targets": ["127.0.0.1:9"]}]
    for target in ("localhost:9", "10.0.0.1:9", "127.0.0.1", "example.com:80"):
        with pytest.raises(ValueError):
            scrape_config({"job_name": "a", "targets": [target]})



def test_a_missing_prometheus_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    from tests import prometheus_versions
    from tests.prometheus_versions import ENVIRONMENT, require_binary
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing found there
    monkeypatch.setitem(prometheus_versions.WELL_KNOWN, "3", str(tmp_path))
    for version in ("2", "3"):
        monkeypatch.delenv(ENVIRONMENT[version], raising=False)
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match=f"Prometheus {version}.x is required"):
            require_binary("promtool", version)
        monkeypatch.delenv("CI")
        with pytest.raises(pytest.skip.Exception):
            require_binary("promtool", version)
        # A variable naming a folder without it fails even outside CI: it was asked for.
        monkeypatch.setenv(ENVIRONMENT[version], str(tmp_path))
        with pytest.raises(pytest.fail.Exception, match="has no executable promtool"):
            require_binary("promtool", version)
        monkeypatch.delenv(ENVIRONMENT[version])
