"""A real Prometheus scrapes a real exporter and the simulator's own page."""

from __future__ import annotations

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
