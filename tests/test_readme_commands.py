"""The README's walk-throughs, run as written: recording the demo's golden sets, and rolling
out a bad version under the running demo."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import requests

from exporter.canary.golden import load_golden
from tests.helpers import sample_value, wait_until
from tests.real_models import SimulatorProcess
from tfserving_simulator.demo_files import DEMO_GOLDEN_DIR, DEMO_MODELS_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh_block_after(heading: str) -> str:
    """The first ```sh block after ``heading`` in README.md."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(heading)
    return re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1)


def run_bash(script: str, cwd, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, **env))


def record_with_readme_commands(simulator, workdir) -> str:
    """Run README's recording block in ``workdir`` against ``simulator``; the golden folder."""
    os.makedirs(workdir, exist_ok=True)
    # `tfserving-exporter` and `python3` as installed, pointed at this simulator; the README's
    # commands otherwise run as they are (golden/ does not exist yet).
    shims = (f'tfserving-exporter() {{ "{sys.executable}" -m exporter "$@" '
             f"--tfserving.grpc-address={simulator.grpc_target} "
             f"--tfserving.rest-address={simulator.rest_url}; }}\n"
             f'python3() {{ "{sys.executable}" "$@"; }}\n')
    result = run_bash(shims + sh_block_after("### Recording a golden set"), workdir)
    assert result.returncode == 0, result.stderr
    return os.path.join(workdir, "golden")


def demo_simulator(tmp_path) -> SimulatorProcess:
    """The demo's real SavedModels, served as the demo serves them."""
    models = tmp_path / "models"
    shutil.copytree(DEMO_MODELS_DIR, models)
    return SimulatorProcess(tmp_path / "simulator",
                            {name: str(models / name) for name in sorted(os.listdir(models))})


def test_recording_commands_record_the_shipped_demo_golden_sets(tmp_path):
    with demo_simulator(tmp_path) as simulator:
        golden_dir = record_with_readme_commands(simulator, tmp_path / "work")
    for model in ("half_plus_two", "image_classifier"):
        recorded = load_golden(os.path.join(golden_dir, f"{model}.json"))
        shipped = load_golden(os.path.join(DEMO_GOLDEN_DIR, f"{model}.json"))
        assert recorded.n_examples == shipped.n_examples
        assert (recorded.signature_name, recorded.label_output) == \
            (shipped.signature_name, shipped.label_output)
        whole = shipped.n_examples  # one batch of every example: the requests themselves
        assert recorded.batches(whole)[0].rest_body() == shipped.batches(whole)[0].rest_body()
        # Real numerics may move by their noise on other hardware: within the shipped file's
        # own tolerances is what a canary would accept.
        for alias, expected in shipped.expected.items():
            tolerance = shipped.tolerances[alias]
            np.testing.assert_allclose(recorded.expected[alias], expected,
                                       atol=tolerance.atol, rtol=tolerance.rtol)
        if shipped.labels is not None:
            np.testing.assert_array_equal(recorded.labels, shipped.labels)
    assert load_golden(os.path.join(DEMO_GOLDEN_DIR, "half_plus_two.json")).n_examples == 3
    classifier = load_golden(os.path.join(DEMO_GOLDEN_DIR, "image_classifier.json"))
    assert classifier.n_examples == 16 and classifier.provenance.calibration.runs == 5


def test_bad_version_walk_through_under_the_running_demo(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address=127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        base = url = None
        while url is None:  # the demo's banner: base paths, then the metrics URL
            line = process.stdout.readline()
            assert line, "demo exited early"
            found = re.match(r"\s+half_plus_two\s+(\S+)$", line)
            base = found.group(1) if found else base
            found = re.search(r"Exporter metrics: (\S+)", line)
            url = found.group(1) if found else None
        assert base and os.path.isdir(os.path.join(base, "00000123")), base

        steps = sh_block_after("Try a bad version")
        steps = re.sub(r"^BASE=.*$", f"BASE={base}", steps, count=1, flags=re.M)
        shim = f'python3() {{ "{sys.executable}" "$@"; }}\n'
        result = run_bash(shim + steps, ROOT)  # "from the repository's folder"
        assert result.returncode == 0, result.stderr

        def canary_of_124():
            text = requests.get(url, timeout=10).text
            success = sample_value(text, "tfserving_canary_success", model="half_plus_two",
                                   version="124")
            error = sample_value(text, "tfserving_canary_max_abs_error", model="half_plus_two",
                                 version="124", output="y")
            return (success, error) if success is not None else None

        success, error = wait_until(canary_of_124, timeout=60, interval=0.2,
                                    message="a canary result for version 124")
        assert success == 0
        assert abs(error - 0.01) < 1e-4
    finally:
        process.terminate()
        process.wait(timeout=15)
