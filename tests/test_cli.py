"""The tfserving-exporter command line, run as a user would run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import requests

from tests.helpers import sample_value, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_check_config_lists_every_problem(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("tfserving:\n  grpc_adress: x\n  timeout: 5x\nweb:\n  listen_address: nope\n")
    result = run_cli("check-config", f"--config.file={config}")
    assert result.returncode == 2
    assert "grpc_adress" in result.stderr
    assert "timeout" in result.stderr
    assert "listen_address" in result.stderr


def test_check_config_accepts_a_valid_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("models: [half_plus_two]\ntfserving:\n  grpc_address: localhost:8500\n")
    result = run_cli("check-config", f"--config.file={config}")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_bad_flag_values_are_reported_before_starting():
    result = run_cli("--web.listen-address=9850", "--collector.status.protocol=http")
    assert result.returncode == 2
    assert "--web.listen-address" in result.stderr
    assert "--collector.status.protocol" in result.stderr


def test_help_lists_the_prometheus_style_flags():
    result = run_cli("run", "--help")
    for flag in ("--config.file", "--web.listen-address", "--web.telemetry-path",
                 "--tfserving.grpc-address", "--tfserving.rest-address",
                 "--tfserving.metrics-path", "--tfserving.model-config-file", "--model",
                 "--log.level", "--log.format"):
        assert flag in result.stdout


def test_demo_serves_both_models_and_stops_cleanly_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address=127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = None
        lines = []
        while url is None:
            line = process.stdout.readline()
            assert line, "demo exited early: " + process.stderr.read()
            lines.append(line)
            match = re.search(r"Exporter metrics: (\S+)", line)
            if match:
                url = match.group(1)

        def both_available_and_canaries_pass():
            text = requests.get(url, timeout=10).text
            return all(sample_value(text, "tfserving_model_version_state", model=m, version=v,
                                    state="AVAILABLE") == 1
                       and sample_value(text, "tfserving_canary_success", model=m, version=v) == 1
                       for m, v in (("half_plus_two", "123"), ("image_classifier", "1")))

        wait_until(both_available_and_canaries_pass, timeout=30,
                   message="both demo models AVAILABLE and their canaries passing")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
