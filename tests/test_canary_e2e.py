"""Golden-set canaries end to end: simulator, `golden record`, background runner, /metrics."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from exporter.canary.golden import write_golden
from exporter.canary.golden_record import read_requests, record_golden
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.rest_client import RestClient
from tests.conftest import SimulatorHandle
from tests.helpers import sample_value, series
from tfserving_simulator.demo_files import MONITORING_CONFIG, DemoFiles
from tfserving_simulator.demo_models import write_half_plus_two, write_image_classifier
from tfserving_simulator.faults import FaultRule

HALF_PLUS_TWO_REQUEST = {"signature_name": "serving_default",
                         "instances": [[x] for x in (-3.5, 0.0, 1.0, 2.0, 5.0, 10.0, 123.25, 1e4)]}


def _models_config(root: str, names: list[str]) -> str:
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{root}/{name}" model_platform: "tensorflow"\n'
        "    model_version_policy { latest { num_versions: 2 } } }\n" for name in names)
    return "model_config_list {\n" + entries + "}\n"


@pytest.fixture
def two_version_simulator(tmp_path):
    """half_plus_two v1 and image_classifier v1; each model keeps its two latest versions."""
    root = str(tmp_path)
    models = os.path.join(root, "models")
    write_half_plus_two(os.path.join(models, "half_plus_two"), 1)
    write_image_classifier(os.path.join(models, "image_classifier"), 1, seed=7)
    model_config = os.path.join(root, "models.config")
    with open(model_config, "w", encoding="utf-8") as handle:
        handle.write(_models_config(models, ["half_plus_two", "image_classifier"]))
    monitoring = os.path.join(root, "monitoring.config")
    with open(monitoring, "w", encoding="utf-8") as handle:
        handle.write(MONITORING_CONFIG)
    handle = SimulatorHandle(DemoFiles(root, model_config, monitoring,
                                       ("half_plus_two", "image_classifier"))).start()
    yield handle
    handle.stop()


def _client(sim: SimulatorHandle, protocol: str):
    if protocol == "grpc":
        return GrpcClient(f"127.0.0.1:{sim.grpc_port}")
    return RestClient(f"http://127.0.0.1:{sim.rest_port}")


def _record(sim, tmp_path, model, request, protocol="grpc", **options) -> str:
    client = _client(sim, protocol)
    try:
        document = record_golden(client, protocol, model, [request], version=1, timeout=30,
                                 **options)
    finally:
        client.close()
    path = str(tmp_path / f"{model}.golden.json")
    write_golden(path, document, npz=model == "image_classifier")
    return path


def _classifier_request(n: int = 24) -> dict:
    images = np.random.default_rng(11).normal(size=(n, 32, 32, 3)).round(3)
    return {"instances": images.tolist()}


def _canary_exporter(start_exporter_for, sim, golden_files, protocol="grpc", **overrides):
    values = {"canary__golden_files": golden_files, "canary__protocol": protocol,
              "canary__interval": "200ms", "canary__jitter": 0.0, "canary__timeout": "5s",
              "canary__batch_size": 3}
    values.update(overrides)
    return start_exporter_for(sim, **values)


def _canary(text, name, **labels):
    return sample_value(text, f"tfserving_canary_{name}", **labels)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_a_slightly_different_version_fails_while_the_recorded_one_passes(
        two_version_simulator, start_exporter_for, tmp_path, protocol):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST, protocol,
                     atol=1e-6, rtol=1e-6)
    exporter = _canary_exporter(start_exporter_for, sim, [golden], protocol)

    text = exporter.metrics_until(lambda t: _canary(t, "success", model="half_plus_two",
                                                    version="1") == 1,
                                  message="canary on version 1 to pass")
    assert _canary(text, "golden_examples", model="half_plus_two") == 8
    assert _canary(text, "max_abs_error", model="half_plus_two", version="1", output="y") == 0

    write_half_plus_two(f"{sim.models_root}/half_plus_two", 2, b=2.01)
    text = exporter.metrics_until(lambda t: _canary(t, "success", model="half_plus_two",
                                                    version="2") == 0,
                                  message="canary on version 2 to fail")
    assert _canary(text, "mismatched_examples", model="half_plus_two", version="2",
                   output="y") == 8
    assert _canary(text, "max_abs_error", model="half_plus_two", version="2",
                   output="y") == pytest.approx(0.01, rel=1e-3)
    assert _canary(text, "failures_total", model="half_plus_two", version="2",
                   reason="mismatch") >= 1
    assert _canary(text, "success", model="half_plus_two", version="1") == 1
    assert _canary(text, "duration_seconds_count", model="half_plus_two", version="2",
                   protocol=protocol) >= 1

    write_half_plus_two(f"{sim.models_root}/half_plus_two", 3)  # same parameters as version 1
    text = exporter.metrics_until(
        lambda t: _canary(t, "success", model="half_plus_two", version="3") == 1
        and _canary(t, "success", model="half_plus_two", version="1") is None,
        message="version 3 passing and version 1's results gone")
    assert _canary(text, "max_abs_error", model="half_plus_two", version="3", output="y") == 0
    assert _canary(text, "success", model="half_plus_two", version="2") == 0


def test_perturbed_classifier_lowers_top1_agreement_and_accuracy(two_version_simulator,
                                                                 start_exporter_for, tmp_path):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "image_classifier", _classifier_request(),
                     top1_outputs={"probabilities": True}, atol=1e-4, rtol=1e-4,
                     labels_from_output="classes")
    exporter = _canary_exporter(start_exporter_for, sim, [golden])
    labels = dict(model="image_classifier", version="1")
    text = exporter.metrics_until(lambda t: _canary(t, "success", **labels) == 1,
                                  message="classifier canary to pass on version 1")
    assert _canary(text, "accuracy_ratio", **labels) == 1
    assert _canary(text, "top1_agreement_ratio", output="probabilities", **labels) == 1

    write_image_classifier(f"{sim.models_root}/image_classifier", 2, seed=7, weight_noise=0.5)
    v2 = dict(model="image_classifier", version="2")
    text = exporter.metrics_until(lambda t: _canary(t, "success", **v2) == 0,
                                  message="classifier canary to fail on version 2")
    agreement = _canary(text, "top1_agreement_ratio", output="probabilities", **v2)
    accuracy = _canary(text, "accuracy_ratio", **v2)
    assert 0 < agreement < 1
    assert accuracy == pytest.approx(agreement)  # labels are version 1's answers
    assert _canary(text, "success", **labels) == 1


def test_output_noise_below_tolerance_never_fails(two_version_simulator, start_exporter_for,
                                                  tmp_path):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST, atol=1e-3,
                     rtol=1e-6)
    sim.simulator.faults.add(FaultRule(operations=frozenset({"predict"}), output_noise=1e-5))
    exporter = _canary_exporter(start_exporter_for, sim, [golden], canary__interval="10ms",
                                canary__batch_size=8)
    labels = dict(model="half_plus_two", version="1")
    text = exporter.metrics_until(lambda t: (_canary(t, "runs_total", **labels) or 0) >= 100,
                                  timeout=60, message="100 canary runs")
    assert _canary(text, "max_abs_error", output="y", **labels) > 0  # the noise is there
    failures = {s["reason"]: s["__value__"] for s in series(text, "tfserving_canary_failures_total")}
    assert failures == {"mismatch": 0, "error": 0, "timeout": 0, "schema": 0, "nan": 0}


@pytest.mark.parametrize("fault, reason", [
    (FaultRule(operations=frozenset({"predict"}), error_code="INTERNAL"), "error"),
    (FaultRule(operations=frozenset({"predict"}), latency_seconds=1.0), "timeout"),
    (FaultRule(operations=frozenset({"predict"}), nan_outputs=True), "nan"),
])
def test_each_kind_of_failure_counts_under_its_own_reason(two_version_simulator,
                                                          start_exporter_for, tmp_path,
                                                          fault, reason):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST)
    sim.simulator.faults.add(fault)
    exporter = _canary_exporter(start_exporter_for, sim, [golden], canary__timeout="300ms")
    labels = dict(model="half_plus_two", version="1")
    text = exporter.metrics_until(
        lambda t: (_canary(t, "failures_total", reason=reason, **labels) or 0) >= 1,
        message=f"a canary failure with reason {reason}")
    assert _canary(text, "success", **labels) == 0
    others = [s for s in series(text, "tfserving_canary_failures_total")
              if s["reason"] != reason and s["__value__"] > 0]
    assert not others


def test_wrong_output_shape_counts_as_schema(two_version_simulator, start_exporter_for,
                                             tmp_path):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST)
    with open(golden, encoding="utf-8") as handle:
        document = json.load(handle)
    document["expected"]["y"] = [row[0] for row in document["expected"]["y"]]  # (8, 1) → (8,)
    reshaped = str(tmp_path / "reshaped.json")
    write_golden(reshaped, document)
    exporter = _canary_exporter(start_exporter_for, sim, [reshaped])
    text = exporter.metrics_until(
        lambda t: (_canary(t, "failures_total", reason="schema", model="half_plus_two",
                           version="1") or 0) >= 1, message="a schema failure")
    assert _canary(text, "success", model="half_plus_two", version="1") == 0


def test_metrics_keep_answering_while_canaries_hang(two_version_simulator, start_exporter_for,
                                                    tmp_path):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST)
    sim.simulator.faults.add(FaultRule(operations=frozenset({"predict"}), hang=True))
    exporter = _canary_exporter(start_exporter_for, sim, [golden], canary__timeout="2s")
    for _ in range(5):
        started = time.monotonic()
        text = exporter.metrics(scrape_timeout=1)
        assert time.monotonic() - started < 1
        assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    text = exporter.metrics_until(lambda t: (_canary(
        t, "failures_total", reason="timeout", model="half_plus_two", version="1") or 0) >= 1,
        message="the hung canary to time out")
    sim.simulator.faults.clear()


def test_read_requests_accepts_object_array_and_json_lines(tmp_path):
    one = {"instances": [[1.0]]}
    for name, text in (("object.json", json.dumps(one)),
                       ("array.json", json.dumps([one, one])),
                       ("lines.jsonl", json.dumps(one) + "\n" + json.dumps(one) + "\n")):
        path = tmp_path / name
        path.write_text(text)
        requests = read_requests(str(path))
        assert all(r == one for r in requests)
        assert len(requests) == (1 if name == "object.json" else 2)


def test_at_most_one_canary_per_model_is_in_flight(two_version_simulator, start_exporter_for,
                                                   tmp_path):
    sim = two_version_simulator
    golden = _record(sim, tmp_path, "half_plus_two", HALF_PLUS_TWO_REQUEST)
    sim.simulator.faults.add(FaultRule(operations=frozenset({"predict"}), latency_seconds=0.3))
    started = time.monotonic()
    exporter = _canary_exporter(start_exporter_for, sim, [golden], canary__interval="1ms",
                                canary__batch_size=100)
    labels = dict(model="half_plus_two", version="1")
    text = exporter.metrics_until(lambda t: (_canary(t, "runs_total", **labels) or 0) >= 3,
                                  message="three slow canary runs")
    elapsed = time.monotonic() - started
    # Runs of 0.3 s back to back: overlapping runs (1 ms interval) would finish far more.
    assert _canary(text, "runs_total", **labels) <= elapsed / 0.3 + 1
    assert _canary(text, "success", **labels) == 1


def test_intervals_are_jittered_within_bounds():
    import random

    from exporter.canary.runner import CanaryRunner

    runner = CanaryRunner({}, client=None, protocol="grpc", interval=10.0,
                          intervals={"fast": 1.0}, jitter=0.2, rng=random.Random(4))
    now = time.monotonic()
    slow = [runner._next_due("slow") - now for _ in range(200)]
    fast = [runner._next_due("fast") - now for _ in range(200)]
    assert 8.0 <= min(slow) and max(slow) <= 12.0 + 0.5
    assert 0.8 <= min(fast) and max(fast) <= 1.2 + 0.5
    assert max(slow) - min(slow) > 2.0  # actually spread, not constant


def test_version_roll_during_a_canary_run(simulator, start_exporter_for):
    from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

    # Slow predicts and small batches: a run takes ~1.6 s, so the roll lands inside one.
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"predict"}),
                                             latency_seconds=0.2))
    exporter = _canary_exporter(start_exporter_for, simulator,
                                [f"{STANDIN_GOLDEN_DIR}/half_plus_two.json"],
                                canary__batch_size=2, canary__interval="50ms")
    exporter.metrics_until(lambda t: (_canary(t, "runs_total", model="half_plus_two",
                                              version="123") or 0) >= 1,
                           message="a first run on version 123")
    write_half_plus_two(f"{simulator.models_root}/half_plus_two", 124)
    text = exporter.metrics_until(
        lambda t: _canary(t, "success", model="half_plus_two", version="124") == 1
        and _canary(t, "success", model="half_plus_two", version="123") is None,
        timeout=30, message="canaries to move to version 124")
    # A run that straddled the roll may fail as "error" (two versions answered); nothing else.
    failures = {s["reason"]: s["__value__"] for s in series(text, "tfserving_canary_failures_total")
                if s["version"] == "124"}
    assert all(count == 0 for reason, count in failures.items() if reason != "error")
