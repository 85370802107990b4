"""`tfserving-exporter golden record` and golden files in `check-config`, run as a user would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exporter.canary.golden import load_golden
from tests.test_cli import run_cli
from tfserving_simulator.demo_files import DEMO_GOLDEN_DIR, STANDIN_GOLDEN_DIR
from tfserving_simulator.faults import FaultRule

REQUEST = {"instances": [[1.0], [2.0], [5.0]]}


def _record(simulator, tmp_path, *extra):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(REQUEST))
    output = tmp_path / "golden.json"
    result = run_cli("golden", "record", "--model", "half_plus_two", "--requests",
                     str(requests), "--output", str(output),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}",
                     f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}", *extra)
    return result, output


def test_record_writes_the_answers_as_expectations(simulator, tmp_path):
    result, output = _record(simulator, tmp_path, "--atol", "0.001")
    assert result.returncode == 0, result.stderr
    assert "version 123" in result.stdout
    golden = load_golden(str(output))
    assert golden.model == "half_plus_two"
    assert golden.provenance.version == 123
    assert golden.provenance.protocol == "grpc"
    np.testing.assert_array_equal(golden.expected["y"], [[2.5], [3.0], [4.5]])
    assert golden.tolerances["y"].atol == 0.001


def test_record_over_rest_gives_the_same_expectations(simulator, tmp_path):
    result, output = _record(simulator, tmp_path, "--protocol", "rest")
    assert result.returncode == 0, result.stderr
    golden = load_golden(str(output))
    assert golden.provenance.protocol == "rest"
    np.testing.assert_array_equal(golden.expected["y"], [[2.5], [3.0], [4.5]])


def test_record_refuses_to_overwrite_without_force(simulator, tmp_path):
    assert _record(simulator, tmp_path)[0].returncode == 0
    result, output = _record(simulator, tmp_path)
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert _record(simulator, tmp_path, "--force")[0].returncode == 0


def test_record_names_the_problem_with_bad_requests(simulator, tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text('{"instances": [[1.0], "x"]}')
    result = run_cli("golden", "record", "--model", "half_plus_two", "--requests",
                     str(requests), "--output", str(tmp_path / "g.json"),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}")
    assert result.returncode == 1
    assert "request.instances[1]" in result.stderr
    assert not (tmp_path / "g.json").exists()


def test_record_from_an_unknown_model_fails_clearly(simulator, tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(REQUEST))
    result = run_cli("golden", "record", "--model", "nope", "--requests", str(requests),
                     "--output", str(tmp_path / "g.json"),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}")
    assert result.returncode == 1
    assert "nope" in result.stderr and "NOT_FOUND" in result.stderr


def test_check_config_reports_bad_golden_files(tmp_path):
    golden_dir = tmp_path / "golden"
    golden_dir.mkdir()
    (golden_dir / "broken.json").write_text('{"format": 1, "model": 3}')
    config = tmp_path / "config.yaml"
    config.write_text(f"models: [half_plus_two]\ncanary:\n  golden_dir: {golden_dir}\n")
    result = run_cli("check-config", f"--config.file={config}")
    assert result.returncode == 2
    assert "broken.json: model: expected a string, got number" in result.stderr
    assert "broken.json: provenance: required" in result.stderr  # every problem, not the first


@pytest.mark.parametrize("golden_dir", [DEMO_GOLDEN_DIR, STANDIN_GOLDEN_DIR])
def test_check_config_accepts_the_demo_golden_sets(golden_dir):
    result = run_cli("check-config", "--model=half_plus_two", f"--canary.golden-dir={golden_dir}")
    assert result.returncode == 0, result.stderr
    assert "2 golden sets (half_plus_two, image_classifier)" in result.stdout


def test_record_creates_a_missing_output_directory(simulator, tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(REQUEST))
    output = tmp_path / "golden" / "half_plus_two.json"  # golden/ does not exist
    result = run_cli("golden", "record", "--model", "half_plus_two", "--requests",
                     str(requests), "--output", str(output),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}")
    assert result.returncode == 0, result.stderr
    assert load_golden(str(output)).n_examples == 3


def test_record_names_the_missing_directory_instead_of_a_temporary_file(simulator, tmp_path):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(REQUEST))
    output = tmp_path / "nope" / "deeper" / "half_plus_two.json"
    result = run_cli("golden", "record", "--model", "half_plus_two", "--requests",
                     str(requests), "--output", str(output),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"tfserving-exporter golden record: {output}: cannot "
                                     f"write: {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "nope").exists()


def test_record_without_calibrate_writes_no_calibration(simulator, tmp_path):
    result, output = _record(simulator, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "calibration" not in json.loads(output.read_text())["provenance"]
    assert load_golden(str(output)).provenance.calibration is None


@pytest.mark.parametrize("runs", ["0", "-3", "2.5", "many"])
def test_record_refuses_a_calibration_that_is_not_a_positive_number_of_runs(simulator, tmp_path,
                                                                             runs):
    result, output = _record(simulator, tmp_path, "--calibrate", runs)
    assert result.returncode == 2
    assert (f"golden record: error: argument --calibrate: expected a whole number of runs >= 1, "
            f"got '{runs}'") in result.stderr
    assert not output.exists()


def test_record_with_calibration_out_of_time_writes_nothing(simulator, tmp_path):
    # The recording's one request fits in --timeout; its calibration runs do not.
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"predict"}),
                                             latency_seconds=0.3))
    result, output = _record(simulator, tmp_path, "--calibrate", "5", "--timeout", "1s")
    assert result.returncode == 1
    assert result.stderr.startswith("tfserving-exporter golden record: calibration run ")
    assert "out of time: the recording's deadline (golden record --timeout) covers every " \
           "calibration run, so allow more" in result.stderr
    assert not output.exists()
