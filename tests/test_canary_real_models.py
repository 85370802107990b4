"""Golden-set canaries end to end on the real CNN, through the exporter (issue 13): a golden set
recorded and calibrated by ``golden record --calibrate``, a retrained version failing as
mismatch, the same weights saved again passing, and no false alarm at batch sizes 1, 7 and 64.

TensorFlow runs only in subprocesses (tests/real_models.py): the model builds and the simulator
serving the CNN. The exporters run in this process (``start_exporter_with``) and as a process
of their own (``ExporterProcess``), and neither maps libtensorflow.

The simulator keeps every version (``model_version_policy { all {} }``), so version 1 stays
AVAILABLE and keeps being canaried while versions 2 and 3 roll in, and the tests do not depend
on their order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import grpc
import numpy as np
import pytest
import requests

from tests.exporter_process import ExporterProcess
from tests.helpers import sample_value, series, wait_until
from tests.real_models import (
    IMAGE_CLASSIFIER, REPO, ImageClassifierBuild, SimulatorProcess, mapped_libraries, save_again)
from tests.test_readme_commands import sh_block_after
from tfserving_wire import protos, tensor_proto

MODEL = IMAGE_CLASSIFIER
SCORES = "probabilities"
RECORDED, RETRAINED, RESAVED = 1, 2, 3
BATCH_SIZES = (1, 7, 64)
CALIBRATION_RUNS = 5
RUNS_PER_BATCH_SIZE = 5  # canary runs each batch size must pass
TIMEOUT = 60
CANARY = {"interval": "200ms", "timeout": "10s"}


def readme_images() -> list[str]:
    """The README's 16 classifier requests, one JSON line each, made by its own heredoc."""
    block = sh_block_after("### Recording a golden set")
    script = re.search(r"python3 - > images\.jsonl <<'PY'\n(.*?\n)PY\n", block, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout.splitlines()


@pytest.fixture(scope="session")
def retrained_build(tmp_path_factory):
    """The CNN trained from seed 1, built once. Session-scoped so that its build starts before
    the session's real models are built (fixtures of wider scope come first), and overlaps."""
    build = ImageClassifierBuild(tmp_path_factory.mktemp("retrained") / "seed-1", seed=1)
    yield build
    build.stop()


@pytest.fixture(scope="module")
def cnn(retrained_build, real_models, tmp_path_factory):
    """The simulator (TensorFlow inside) serving the CNN's version 1 from a base path of its
    own, where the tests roll in more versions."""
    workdir = tmp_path_factory.mktemp("cnn")
    base_path = str(workdir / "models" / MODEL)
    real_models.copy_version(MODEL, base_path, RECORDED)
    with SimulatorProcess(workdir / "simulator", {MODEL: base_path}, monitoring=True,
                          version_policy="all {}") as simulator:
        simulator.base_path = base_path
        yield simulator


@pytest.fixture(scope="module")
def golden(cnn, tmp_path_factory):
    """The README's images recorded from version 1 with ``golden record --calibrate`` over
    gRPC, as a user runs it; the golden file's path, its document and the command's output."""
    workdir = tmp_path_factory.mktemp("golden")
    requests_file = workdir / "images.jsonl"
    requests_file.write_text("\n".join(readme_images()) + "\n")
    path = str(workdir / "golden" / f"{MODEL}.json")
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "golden", "record", "--model", MODEL,
         "--requests", str(requests_file), "--output", path,
         f"--calibrate={CALIBRATION_RUNS}", "--top1", SCORES, "--labels-from-output", "classes",
         f"--tfserving.grpc-address={cnn.grpc_target}"],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    with open(path, encoding="utf-8") as file:
        return {"path": path, "document": json.load(file), "stdout": out.stdout}


def calibrated_atol(golden) -> float:
    return golden["document"]["tolerances"][SCORES]["atol"]


def metrics(url: str) -> str:
    reply = requests.get(url + "/metrics", timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.text


def canary_result(text: str, version: int) -> dict | None:
    """The exposition's canary results for one version of the CNN; None before its first run."""
    labels = {"model": MODEL, "version": str(version)}
    runs = sample_value(text, "tfserving_canary_runs_total", **labels)
    if runs is None:
        return None
    return {"runs": runs,
            "success": sample_value(text, "tfserving_canary_success", **labels),
            "failures": {s["reason"]: s["__value__"]  # reasons that ever failed a run
                         for s in series(text, "tfserving_canary_failures_total")
                         if (s["model"], s["version"]) == (MODEL, str(version))
                         and s["__value__"]},
            "top1": sample_value(text, "tfserving_canary_top1_agreement_ratio", output=SCORES,
                                 **labels),
            "max_abs_error": sample_value(text, "tfserving_canary_max_abs_error",
                                          output=SCORES, **labels),
            "accuracy": sample_value(text, "tfserving_canary_accuracy_ratio", **labels)}


def wait_for_runs(url: str, version: int, runs: int = 1) -> dict:
    """Poll the exporter until version ``version`` has had ``runs`` canary runs."""
    def attempt():
        result = canary_result(metrics(url), version)
        return result if result and result["runs"] >= runs else None
    return wait_until(attempt, timeout=TIMEOUT, interval=0.1,
                      message=f"{runs} canary runs on version {version} at {url}")


def assert_passes(result: dict, atol: float) -> None:
    assert (result["success"], result["failures"]) == (1, {}), result
    assert (result["top1"], result["accuracy"]) == (1, 1), result
    assert result["max_abs_error"] <= atol, result


def roll_out(base_path: str, version: int, source: str) -> None:
    """``source`` (a finished SavedModel directory) renamed into place whole as ``version``."""
    os.rename(source, os.path.join(base_path, str(version)))


# --- the recording -------------------------------------------------------------------------

def test_golden_record_calibrates_the_cnns_tolerance(golden):
    document = golden["document"]
    provenance = document["provenance"]
    assert (provenance["model"], provenance["version"], provenance["protocol"]) == (
        MODEL, RECORDED, "grpc")
    calibration = provenance["calibration"]
    assert {key: calibration[key] for key in ("runs", "batch_size", "factor", "min_atol")} == {
        "runs": CALIBRATION_RUNS, "batch_size": 64, "factor": 10.0, "min_atol": 1e-6}
    # classes (int64) is compared exactly: no noise, its tolerance as given.
    assert list(calibration["outputs"]) == [SCORES]
    noise = calibration["outputs"][SCORES]
    worst = max(noise["between_runs"], noise["between_batch_sizes"])
    assert noise["atol"] == calibrated_atol(golden) >= max(1e-6, 10 * worst)
    assert document["tolerances"][SCORES]["top1"] is True
    assert np.array(document["expected"][SCORES]).shape == (16, 10)
    assert document["labels"] == document["expected"]["classes"]
    print(f"\n{MODEL} calibration ({CALIBRATION_RUNS} runs at batch size 64 and at 1): "
          f"between_runs={noise['between_runs']!r} "
          f"between_batch_sizes={noise['between_batch_sizes']!r} atol={noise['atol']!r}\n"
          + golden["stdout"])


# --- canaries through the exporter ----------------------------------------------------------

def test_calibrated_tolerances_raise_no_false_alarm_at_any_batch_size(cnn, golden,
                                                                      start_exporter_with):
    exporters = {batch_size: start_exporter_with({
        "tfserving.grpc_address": cnn.grpc_target, "tfserving.rest_address": cnn.rest_url,
        "tfserving.model_config_file": str(cnn.model_config_file),
        "canary.golden_files": [golden["path"]], "canary.jitter": 0.0,
        "canary.batch_size": batch_size, **{f"canary.{k}": v for k, v in CANARY.items()}})
        for batch_size in BATCH_SIZES}
    for batch_size, exporter in exporters.items():
        result = wait_for_runs(exporter.url, RECORDED, RUNS_PER_BATCH_SIZE)
        assert_passes(result, calibrated_atol(golden))
        print(f"batch size {batch_size}: {result['runs']:g} runs passed, max abs error "
              f"{result['max_abs_error']!r}")
    assert mapped_libraries() == []  # the exporters above ran in this process


def test_a_retrained_version_fails_as_mismatch_and_the_same_weights_again_pass(
        cnn, golden, retrained_build, real_models, tmp_path):
    # The exporter as deployed: its own process, flags as the chart passes them.
    exporter = ExporterProcess(
        str(tmp_path / "exporter.log"), f"--tfserving.grpc-address={cnn.grpc_target}",
        f"--tfserving.rest-address={cnn.rest_url}",
        f"--tfserving.model-config-file={cnn.model_config_file}",
        f"--canary.golden-file={golden['path']}",
        *(f"--canary.{k}={v}" for k, v in CANARY.items()))
    atol = calibrated_atol(golden)
    try:
        assert_passes(wait_for_runs(exporter.url, RECORDED), atol)

        roll_out(cnn.base_path, RETRAINED, retrained_build.wait())
        retrained = wait_for_runs(exporter.url, RETRAINED, 2)
        assert retrained["success"] == 0, retrained
        assert set(retrained["failures"]) == {"mismatch"}, retrained
        assert retrained["top1"] < 1 and retrained["max_abs_error"] > atol, retrained

        save_again(os.path.join(cnn.base_path, str(RECORDED)),
                   os.path.join(cnn.base_path, str(RESAVED)))
        resaved = wait_for_runs(exporter.url, RESAVED, 2)
        assert_passes(resaved, atol)
        text = metrics(exporter.url)
        assert canary_result(text, RETRAINED)["success"] == 0
        assert_passes(canary_result(text, RECORDED), atol)  # no false alarm meanwhile
        print(f"retrained version: top-1 agreement {retrained['top1']!r}, accuracy "
              f"{retrained['accuracy']!r}, max abs error {retrained['max_abs_error']!r}; "
              f"saved again: max abs error {resaved['max_abs_error']!r}")
        assert mapped_libraries(exporter.pid) == []
        assert cnn.mapped_libraries(), "the simulator itself runs TensorFlow"
    finally:
        exporter.stop()


# --- the noise itself -----------------------------------------------------------------------

def predicted_scores(target: str, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Version 1's probabilities for ``images``, sent ``batch_size`` at a time over gRPC."""
    parts = []
    with grpc.insecure_channel(target) as channel:
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for start in range(0, len(images), batch_size):
            request = protos.predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.model_spec.version.value = RECORDED
            request.inputs["image"].CopyFrom(
                tensor_proto.from_numpy(images[start:start + batch_size], True))
            request.output_filter.append(SCORES)
            response = stub.Predict(request, timeout=TIMEOUT)
            parts.append(tensor_proto.to_numpy(response.outputs[SCORES], SCORES))
    return np.concatenate(parts)


def test_batch_size_noise_of_the_cnn(cnn, golden):
    readme = np.array([json.loads(line)["instances"][0] for line in readme_images()],
                      np.float32)
    sets = {"README's 16 images": readme,
            "256 random images": np.random.default_rng(0).random((256, 32, 32, 3),
                                                                 dtype=np.float32)}
    noise = {}
    for name, images in sets.items():
        at_64 = predicted_scores(cnn.grpc_target, images, 64)
        for batch_size in (1, 7):
            other = predicted_scores(cnn.grpc_target, images, batch_size)
            noise[name, batch_size] = float(np.abs(other - at_64).max())
            print(f"{name}: max |probabilities(batch {batch_size}) - probabilities(batch 64)|"
                  f" = {noise[name, batch_size]!r}")
    np.testing.assert_array_equal(predicted_scores(cnn.grpc_target, readme, 64),
                                  np.array(golden["document"]["expected"][SCORES], np.float32))
    assert max(noise.values()) <= calibrated_atol(golden), noise
