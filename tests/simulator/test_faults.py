"""Fault injection rules: matching, latency, bounded hangs, errors, output faults, files."""

import json
import os
import threading
import time

import numpy as np
import pytest

from tests.helpers import wait_until
from tfserving_simulator.errors import ServingError
from tfserving_simulator.faults import FaultConfigError, FaultRule, Faults, read_fault_file


def run_in_thread(call):
    outcome = {}

    def target():
        try:
            call()
            outcome["result"] = "returned"
        except ServingError as err:
            outcome["result"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_error_rule_raises_only_for_matching_requests():
    faults = Faults()
    faults.add(FaultRule(model="m", version=2, operations={"predict"}, protocols={"GRPC"},
                         error_code="UNAVAILABLE", error_message="overloaded"))
    for protocol, operation, model, version in [
            ("rest", "predict", "m", 2), ("grpc", "status", "m", 2),
            ("grpc", "predict", "other", 2), ("grpc", "predict", "m", 1),
            ("grpc", "predict", "m", None)]:
        faults.before_request(protocol, operation, model, version)
    with pytest.raises(ServingError) as caught:
        faults.before_request("grpc", "predict", "m", 2)
    assert (caught.value.code, caught.value.message) == ("UNAVAILABLE", "overloaded")


def test_clear_removes_one_rule_or_all():
    faults = Faults()
    first = faults.add(FaultRule(operations={"status"}, error_code="INTERNAL"))
    faults.add(FaultRule(operations={"metadata"}, error_code="INTERNAL"))
    faults.clear(first)
    faults.before_request("rest", "status", "m")
    with pytest.raises(ServingError):
        faults.before_request("rest", "metadata", "m")
    faults.clear()
    faults.before_request("rest", "metadata", "m")
    assert faults.rules() == {}


def test_latency_delays_the_request():
    faults = Faults()
    faults.add(FaultRule(operations={"metrics_page"}, latency_seconds=0.2))
    started = time.monotonic()
    faults.before_request("rest", "metrics_page", None)
    assert time.monotonic() - started >= 0.2


def test_hang_lasts_until_the_rule_is_cleared_then_the_request_proceeds():
    faults = Faults()
    rule_id = faults.add(FaultRule(model="m", hang=True, error_code="INTERNAL"))
    thread, outcome = run_in_thread(lambda: faults.before_request("grpc", "predict", "m"))
    wait_until(lambda: thread.is_alive(), timeout=2)
    assert "result" not in outcome
    faults.clear(rule_id)
    wait_until(lambda: not thread.is_alive(), timeout=2)
    assert outcome["result"] == "returned"  # the cleared rule's error no longer applies


def test_close_releases_hangs():
    faults = Faults()
    faults.add(FaultRule(hang=True))
    thread, outcome = run_in_thread(lambda: faults.before_request("rest", "status", "m"))
    faults.close()
    wait_until(lambda: not thread.is_alive(), timeout=2)


def test_hangs_are_bounded():
    faults = Faults(max_hang_seconds=0.2)
    faults.add(FaultRule(hang=True, error_code="DEADLINE_EXCEEDED"))
    started = time.monotonic()
    with pytest.raises(ServingError) as caught:
        faults.before_request("rest", "predict", "m")
    assert caught.value.code == "DEADLINE_EXCEEDED"
    assert 0.2 <= time.monotonic() - started < 2


def test_output_noise_perturbs_floats_only_for_the_matching_model():
    faults = Faults()
    faults.add(FaultRule(model="m", output_noise=0.5))
    outputs = {"p": np.ones((4, 3), np.float32), "classes": np.arange(4, dtype=np.int64)}
    noisy = faults.transform_outputs("m", 1, outputs)
    assert noisy["p"].dtype == np.float32 and not np.allclose(noisy["p"], 1.0)
    np.testing.assert_array_equal(noisy["classes"], outputs["classes"])
    np.testing.assert_array_equal(outputs["p"], 1.0)  # inputs are not modified in place
    assert faults.transform_outputs("other", 1, outputs) is outputs


def test_nan_outputs_respect_operations():
    faults = Faults()
    faults.add(FaultRule(operations={"status"}, nan_outputs=True))
    outputs = {"y": np.ones(2, np.float32)}
    assert faults.transform_outputs("m", 1, outputs) is outputs
    faults.add(FaultRule(operations={"predict"}, nan_outputs=True))
    assert np.isnan(faults.transform_outputs("m", 1, outputs)["y"]).all()


@pytest.mark.parametrize("fields, fragment", [
    ({"operations": {"train"}}, "unknown operations ['train']"),
    ({"protocols": {"http"}}, "unknown protocols ['http']"),
    ({"error_code": "OK"}, "error_code"),
    ({"latency_seconds": -1}, "latency_seconds"),
    ({"latency_seconds": 601}, "at most 600"),
    ({"version": "2"}, "version"),
])
def test_invalid_rules_are_rejected(fields, fragment):
    with pytest.raises(FaultConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        FaultRule(**fields)


def write_rules(path, rules):
    path.write_text(json.dumps({"rules": rules}))


def test_load_file_replaces_only_file_rules(tmp_path):
    path = tmp_path / "faults.json"
    write_rules(path, [{"model": "m", "operations": ["predict"], "error_code": "INTERNAL",
                        "error_message": "from file"}])
    faults = Faults()
    api_rule = faults.add(FaultRule(operations={"status"}, error_code="UNKNOWN"))
    faults.load_file(str(path))
    with pytest.raises(ServingError, match="from file"):
        faults.before_request("rest", "predict", "m")
    write_rules(path, [])
    faults.load_file(str(path))
    faults.before_request("rest", "predict", "m")
    assert list(faults.rules()) == [api_rule]


@pytest.mark.parametrize("content, fragment", [
    ("{", "is not valid JSON"),
    ('{"rules": {}}', 'must be a JSON object {"rules": [...]}'),
    ('{"rules": [], "x": 1}', "no other keys"),
    ('{"rules": [{"modle": "m"}]}', "rule 0: unknown keys ['modle']"),
    ('{"rules": [{}, {"operations": "predict"}]}', "rule 1: operations must be a list"),
    ('{"rules": [{"hang": "yes"}]}', "hang must be true or false"),
])
def test_bad_fault_files_name_the_file_and_the_problem(tmp_path, content, fragment):
    path = tmp_path / "faults.json"
    path.write_text(content)
    with pytest.raises(FaultConfigError) as caught:
        read_fault_file(str(path))
    assert str(path) in str(caught.value) and fragment in str(caught.value)


def test_missing_fault_file_is_a_clear_error(tmp_path):
    with pytest.raises(FaultConfigError, match="cannot read fault file"):
        Faults().load_file(str(tmp_path / "absent.json"))


def test_reload_file_if_changed_follows_the_file_and_keeps_rules_on_bad_edits(tmp_path):
    path = tmp_path / "faults.json"
    write_rules(path, [])
    faults = Faults()
    assert faults.reload_file_if_changed() is False  # no file loaded yet
    faults.load_file(str(path))
    assert faults.reload_file_if_changed() is False  # unchanged
    write_rules(path, [{"operations": ["predict"], "error_code": "INTERNAL"}])
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert faults.reload_file_if_changed() is True
    assert len(faults.rules()) == 1
    path.write_text("{broken")
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert faults.reload_file_if_changed() is False
    assert len(faults.rules()) == 1 and "not valid JSON" in faults.last_file_error
