"""The exporter against a real simulator: model status and signatures over gRPC and REST."""

from __future__ import annotations

import pytest

from tests.conftest import promtool_check_metrics
from tests.helpers import sample_value, series
from tfserving_simulator.demo_models import write_half_plus_two

STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")
HALF_PLUS_TWO_SIGNATURES = {
    "serving_default": "predict",
    "classify_x_to_y": "classify",
    "regress_x_to_y": "regress",
    "regress_x_to_y2": "regress",
    "regress_x2_to_y3": "regress",
}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_demo_models_are_reported_available_with_their_signatures(simulator, start_exporter_for,
                                                                  protocol):
    exporter = start_exporter_for(simulator, collectors__status__protocol=protocol,
                                  collectors__metadata__protocol=protocol)
    text = exporter.metrics()

    for model, version in (("half_plus_two", "123"), ("image_classifier", "1")):
        for state in STATES:
            expected = 1 if state == "AVAILABLE" else 0
            assert sample_value(text, "tfserving_model_version_state", model=model,
                                version=version, state=state) == expected, (model, state)
        assert sample_value(text, "tfserving_model_serving_version", model=model) == int(version)
        assert sample_value(text, "tfserving_model_available_versions", model=model) == 1

    signatures = {s["signature"]: s["method"]
                  for s in series(text, "tfserving_model_signature_info")
                  if s["model"] == "half_plus_two"}
    assert signatures == HALF_PLUS_TWO_SIGNATURES

    assert sample_value(text, "tfserving_model_signature_tensor_info", model="half_plus_two",
                        version="123", signature="serving_default", io="input", alias="x",
                        dtype="float", shape="[-1,1]") == 1
    assert sample_value(text, "tfserving_model_signature_tensor_info", model="half_plus_two",
                        version="123", signature="classify_x_to_y", io="input", alias="inputs",
                        dtype="string", shape="unknown") == 1
    assert sample_value(text, "tfserving_model_signature_tensor_info", model="image_classifier",
                        version="1", signature="serving_default", io="input", alias="image",
                        dtype="float", shape="[-1,32,32,3]") == 1

    assert not series(text, "tfserving_model_version_error")
    for collector in ("status", "metadata"):
        assert sample_value(text, "tfserving_exporter_collector_success",
                            collector=collector) == 1
        assert sample_value(text, "tfserving_exporter_collector_duration_seconds",
                            collector=collector) >= 0
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    assert sample_value(text, "tfserving_up", protocol="rest") == 1
    assert sample_value(text, "tfserving_probe_duration_seconds_count", protocol=protocol,
                        api="model_status") >= 2
    assert sample_value(text, "tfserving_exporter_scrape_timeout_seconds") == pytest.approx(9.5)
    assert len(series(text, "tfserving_exporter_build_info")) == 1


def test_exposition_passes_promtool(exporter, promtool):
    result = promtool_check_metrics(exporter.metrics(), promtool)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics_is_served_when_asked_for(exporter):
    reply = exporter.get(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")


def test_status_over_rest_does_not_need_grpc(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, tfserving__grpc_address="",
                                  collectors__status__protocol="rest",
                                  collectors__metadata__protocol="rest")
    text = exporter.metrics()
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123
    assert sample_value(text, "tfserving_up", protocol="rest") == 1
    assert sample_value(text, "tfserving_up", protocol="grpc") is None


def test_unknown_model_is_reported_with_zero_available_versions(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, models=["no_such_model"])
    text = exporter.metrics()
    assert sample_value(text, "tfserving_model_available_versions", model="no_such_model") == 0
    assert sample_value(text, "tfserving_exporter_collector_success", collector="status") == 1
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123


def test_disabled_collectors_export_nothing_of_theirs(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, collectors__metadata__enabled=False)
    text = exporter.metrics()
    assert not series(text, "tfserving_model_signature_info")
    assert sample_value(text, "tfserving_exporter_collector_success", collector="metadata") is None
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123


def test_version_cap_drops_and_counts_the_oldest_versions(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, limits__max_versions_per_model=1)
    write_half_plus_two(f"{simulator.models_root}/half_plus_two", 124)

    def only_124_left(text: str) -> bool:
        versions = {s["version"] for s in series(text, "tfserving_model_version_state")
                    if s["model"] == "half_plus_two"}
        return versions == {"124"} and sample_value(
            text, "tfserving_model_serving_version", model="half_plus_two") == 124

    text = exporter.metrics_until(only_124_left, message="only version 124 reported")
    assert sample_value(text, "tfserving_exporter_dropped_total", kind="version") >= 1
