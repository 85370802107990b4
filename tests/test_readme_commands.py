"""The README's walk-throughs, run as written: recording the demo's golden sets, and rolling
out a bad version under the running demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import requests

from exporter.canary.golden import load_golden
from tests.helpers import sample_value, wait_until
from tfserving_simulator.demo_files import DEMO_GOLDEN_DIR

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


def test_recording_commands_record_the_shipped_demo_golden_sets(simulator, tmp_path):
    # `tfserving-exporter` and `python3` as installed, pointed at the test's simulator; the
    # README's commands otherwise run as they are (golden/ does not exist yet).
    shims = (f'tfserving-exporter() {{ "{sys.executable}" -m exporter "$@" '
             f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port} "
             f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}; }}\n"
             f'python3() {{ "{sys.executable}" "$@"; }}\n')
    result = run_bash(shims + sh_block_after("### Recording a golden set"), tmp_path)
    assert result.returncode == 0, result.stderr
    for model in ("half_plus_two", "image_classifier"):
        recorded = load_golden(str(tmp_path / "golden" / f"{model}.json"))
        shipped = load_golden(os.path.join(DEMO_GOLDEN_DIR, f"{model}.json"))
        assert recorded.n_examples == shipped.n_examples
        assert (recorded.signature_name, recorded.label_output, recorded.tolerances) == \
            (shipped.signature_name, shipped.label_output, shipped.tolerances)
        for alias in shipped.expected:
            np.testing.assert_array_equal(recorded.expected[alias], shipped.expected[alias])
        whole = shipped.n_examples  # one batch of every example: the requests themselves
        assert recorded.batches(whole)[0].rest_body() == shipped.batches(whole)[0].rest_body()
        if shipped.labels is not None:
            np.testing.assert_array_equal(recorded.labels, shipped.labels)
    assert load_golden(os.path.join(DEMO_GOLDEN_DIR, "half_plus_two.json")).n_examples == 3
    assert load_golden(os.path.join(DEMO_GOLDEN_DIR, "image_classifier.json")).n_examples == 16


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
        result = run_bash(steps, tmp_path)
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
