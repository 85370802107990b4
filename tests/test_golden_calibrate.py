"""`golden record --calibrate`: tolerances from the measured noise of the recorded version,
against the simulator (its output noise stands in for run-to-run numerical noise), and the
calibrated golden file under a real exporter's canary."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from exporter.canary.golden import GoldenError, load_golden, write_golden
from exporter.canary.golden_calibrate import FACTOR, calibrate
from exporter.canary.golden_record import record_golden
from exporter.canary.golden_types import Calibration, OutputNoise
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.rest_client import RestClient
from tests.helpers import sample_value, series
from tests.test_cli import run_cli
from tests.test_readme_commands import run_bash, sh_block_after
from tfserving_simulator.faults import FaultRule

MODEL, VERSION = "half_plus_two", 123
REQUEST = {"instances": [[1.0], [2.0], [5.0]]}
# Gaussian noise of this sigma on every answer: each answer stays within 5 sigma of the truth
# (probability 1 - 6e-7 per element), so two answers differ by at most 10 sigma.
SIGMA = 1e-3
NOISE_BOUND = 10 * SIGMA


def _client(simulator, protocol: str = "grpc"):
    if protocol == "grpc":
        return GrpcClient(f"127.0.0.1:{simulator.grpc_port}")
    return RestClient(f"http://127.0.0.1:{simulator.rest_port}")


def _add_noise(simulator) -> None:
    simulator.simulator.faults.add(FaultRule(model=MODEL, version=VERSION, output_noise=SIGMA))


def _record_cli(simulator, tmp_path, name: str, *extra: str):
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(REQUEST))
    output = tmp_path / name
    result = run_cli("golden", "record", "--model", MODEL, "--requests", str(requests),
                     "--output", str(output),
                     f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}",
                     f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}", *extra)
    return result, str(output)


def _recorded(simulator, tmp_path, model=MODEL, request=REQUEST, protocol="grpc", **options):
    """A golden set recorded without calibration, loaded as the canary loads it."""
    client = _client(simulator, protocol)
    try:
        document = record_golden(client, protocol, model, [request], timeout=30, **options)
    finally:
        client.close()
    path = str(tmp_path / f"{model}.json")
    write_golden(path, document, force=True)
    return load_golden(path)


def _calibrate(simulator, golden, protocol="grpc", *, version=None, batch_size=64, runs=3,
               seconds=30.0, **options):
    """Calibrate against the recorded version, unless told another."""
    client = _client(simulator, protocol)
    try:
        return calibrate(client, protocol, golden, version or golden.provenance.version,
                         batch_size, runs, Deadline.after(seconds), **options)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_without_noise_the_floor_is_zero_and_atol_the_minimum(simulator, tmp_path, protocol):
    result, path = _record_cli(simulator, tmp_path, "g.json", "--protocol", protocol,
                               "--calibrate", "3")
    assert result.returncode == 0, result.stderr
    assert "y: noise 0 between runs, 0 between batch sizes; atol 1e-06" in result.stdout
    golden = load_golden(path)
    assert golden.provenance.calibration == Calibration(
        runs=3, batch_size=64, factor=FACTOR, min_atol=1e-6,
        outputs={"y": OutputNoise(between_runs=0.0, between_batch_sizes=0.0, atol=1e-6)})
    assert (golden.tolerances["y"].atol, golden.tolerances["y"].rtol) == (1e-6, 1e-6)
    np.testing.assert_array_equal(golden.expected["y"], [[2.5], [3.0], [4.5]])


def test_atol_given_with_calibrate_is_the_minimum(simulator, tmp_path):
    result, path = _record_cli(simulator, tmp_path, "g.json", "--calibrate", "2",
                               "--atol", "0.002", "--rtol", "0")
    assert result.returncode == 0, result.stderr
    golden = load_golden(path)
    assert golden.provenance.calibration.min_atol == 0.002
    assert (golden.tolerances["y"].atol, golden.tolerances["y"].rtol) == (0.002, 0.0)


def test_noise_sets_the_tolerance_and_the_canary_passes_only_with_it(
        simulator, tmp_path, start_exporter_for):
    _add_noise(simulator)
    result, calibrated = _record_cli(simulator, tmp_path, "calibrated.json", "--calibrate", "5")
    assert result.returncode == 0, result.stderr
    golden = load_golden(calibrated)
    noise = golden.provenance.calibration.outputs["y"]
    assert 0 < noise.between_runs <= NOISE_BOUND
    assert 0 < noise.between_batch_sizes <= NOISE_BOUND
    floor = max(noise.between_runs, noise.between_batch_sizes)
    # FACTOR x the floor, rounded up to two significant digits
    assert FACTOR * floor <= golden.tolerances["y"].atol == noise.atol <= FACTOR * floor * 1.1
    result, tight = _record_cli(simulator, tmp_path, "tight.json", "--atol", str(SIGMA / 100))
    assert result.returncode == 0, result.stderr

    # Two exporters, one file each, canarying the same noisy version at another batch size.
    labels = dict(model=MODEL, version=str(VERSION))
    exporters = {path: start_exporter_for(simulator, canary__golden_files=[path],
                                          canary__interval="50ms", canary__jitter=0.0,
                                          canary__batch_size=2)
                 for path in (calibrated, tight)}
    text = exporters[tight].metrics_until(
        lambda t: (sample_value(t, "tfserving_canary_failures_total", reason="mismatch",
                                **labels) or 0) >= 1, message="the tight file to fail")
    assert sample_value(text, "tfserving_canary_success", **labels) == 0
    text = exporters[calibrated].metrics_until(
        lambda t: (sample_value(t, "tfserving_canary_runs_total", **labels) or 0) >= 20,
        timeout=30, message="20 canary runs with the calibrated file")
    assert sample_value(text, "tfserving_canary_max_abs_error", output="y", **labels) > 0
    failures = {s["reason"]: s["__value__"]
                for s in series(text, "tfserving_canary_failures_total")}
    assert set(failures.values()) == {0}, failures


def test_calibrate_measures_a_loaded_golden_set(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path)
    _add_noise(simulator)
    calibration = _calibrate(simulator, golden, protocol="rest", batch_size=2, runs=4)
    assert (calibration.runs, calibration.batch_size) == (4, 2)
    noise = calibration.outputs["y"]
    # The recording had no noise; every run's does, up to 5 sigma.
    assert 0 < noise.between_runs <= NOISE_BOUND / 2
    assert 0 < noise.between_batch_sizes <= NOISE_BOUND / 2


def test_exactly_compared_outputs_keep_their_tolerance(simulator, tmp_path):
    simulator.simulator.faults.add(FaultRule(model="image_classifier", output_noise=SIGMA))
    request = {"instances": np.random.default_rng(3).random((6, 32, 32, 3)).round(3).tolist()}
    client = _client(simulator)
    try:
        document = record_golden(client, "grpc", "image_classifier", [request], timeout=30,
                                 atol=1e-4, rtol=0.0, top1_outputs={"probabilities": True},
                                 labels_from_output="classes", min_accuracy=1.0,
                                 calibrate_runs=3)
    finally:
        client.close()
    calibration = document["provenance"]["calibration"]
    assert "classes" not in calibration["outputs"]  # integers: the noise leaves them alone
    assert document["tolerances"]["classes"] == {"atol": 1e-4, "rtol": 0.0}
    probabilities = calibration["outputs"]["probabilities"]
    assert 0 < probabilities["between_runs"] <= NOISE_BOUND
    assert document["tolerances"]["probabilities"] == {
        "atol": probabilities["atol"], "rtol": 0.0, "top1": True}


def test_nan_in_the_same_place_counts_as_equal(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path, request={"inputs": [[1.0], [math.nan], [5.0]]})
    assert np.isnan(golden.expected["y"][1, 0])
    calibration = _calibrate(simulator, golden, batch_size=2)
    assert calibration.outputs["y"] == OutputNoise(0.0, 0.0, 1e-6)


def test_a_single_example_has_no_other_batch_size(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path, request={"instances": [[1.0]]})
    assert _calibrate(simulator, golden).outputs["y"] == OutputNoise(0.0, None, 1e-6)


@pytest.mark.parametrize("fault, problem", [
    (FaultRule(operations=frozenset({"predict"}), error_code="UNAVAILABLE"),
     "calibration run 1 of 3 at batch size 64 failed with error: "),
    (FaultRule(operations=frozenset({"predict"}), nan_outputs=True),
     "calibration run 1 of 3 at batch size 64 failed with nan: y: NaN or Infinity in 3 of 3 "
     "examples where finite values are expected"),
])
def test_a_failing_run_aborts_the_calibration(simulator, tmp_path, fault, problem):
    golden = _recorded(simulator, tmp_path)
    simulator.simulator.faults.add(fault)
    with pytest.raises(GoldenError) as caught:
        _calibrate(simulator, golden)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_a_shape_change_aborts_the_calibration(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path)
    golden.expected["y"] = golden.expected["y"].reshape(3)  # as if the version's answers changed
    with pytest.raises(GoldenError) as caught:
        _calibrate(simulator, golden)
    assert caught.value.problems == [
        "calibration run 1 of 3 at batch size 64 failed with schema: y: shape [3, 1] differs "
        "from expected [3]"]


def test_a_version_that_is_not_loaded_aborts_the_calibration(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path)
    with pytest.raises(GoldenError) as caught:
        _calibrate(simulator, golden, version=124)
    assert caught.value.problems[0].startswith(
        "calibration run 1 of 3 at batch size 64 failed with error: "), caught.value.problems
    assert "124" in caught.value.problems[0]


def test_an_exact_output_that_changes_aborts_the_calibration(simulator, tmp_path):
    request = {"instances": np.random.default_rng(3).random((4, 32, 32, 3)).round(3).tolist()}
    golden = _recorded(simulator, tmp_path, model="image_classifier", request=request,
                       top1_outputs={"probabilities": True})
    golden.expected["classes"] = golden.expected["classes"].copy()
    golden.expected["classes"][2] += 1
    golden.expected["probabilities"] = golden.expected["probabilities"][:, ::-1].copy()
    with pytest.raises(GoldenError) as caught:
        _calibrate(simulator, golden)
    where = "calibration run 1 of 3 at batch size 64"
    assert caught.value.problems == [
        f'{where}: output "classes" differs from the recording in 1 examples; it is not '
        "floating point, so it is compared exactly",
        f'{where}: the top-1 class of "probabilities" differs from the recording (agreement 0), '
        "and its tolerance requires top-1 agreement",
        "a canary would fail against the very version the golden set is recorded from"]


def test_calibration_shares_the_recordings_deadline(simulator, tmp_path):
    golden = _recorded(simulator, tmp_path)
    simulator.simulator.faults.add(FaultRule(operations=frozenset({"predict"}),
                                             latency_seconds=0.3))
    with pytest.raises(GoldenError) as caught:
        _calibrate(simulator, golden, seconds=1.0)
    assert "out of time: the recording's deadline (golden record --timeout) covers every " \
           "calibration run, so allow more" in caught.value.problems[0]


@pytest.mark.parametrize("runs", [0, -1, 1.5, True])
def test_calibrate_refuses_a_number_of_runs_that_is_not_positive(simulator, tmp_path, runs):
    golden = _recorded(simulator, tmp_path)
    with pytest.raises(ValueError, match="runs must be a positive integer"):
        _calibrate(simulator, golden, runs=runs)


def test_readme_calibration_command_runs_as_written(simulator, tmp_path):
    (tmp_path / "requests.json").write_text(json.dumps(REQUEST))
    tool = (f'tfserving-exporter() {{ "{sys.executable}" -m exporter "$@" '
            f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}; }}\n")
    result = run_bash(tool + sh_block_after("#### Tolerances from measured noise"), tmp_path)
    assert result.returncode == 0, result.stderr
    golden = load_golden(str(tmp_path / "golden" / "half_plus_two.json"))
    assert golden.provenance.calibration.runs == 20
