"""The tfserving-exporter command line, run as a user would run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
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


# --- flags, derived from the settings' declarations ------------------------------------------

def parsed_overrides(*flags: str) -> dict:
    from exporter.cli import build_parser, overrides_from_args

    return overrides_from_args(build_parser().parse_args(["check-config", *flags]))


def test_every_declared_flag_sets_its_setting():
    from exporter.config import SCHEMA
    from exporter.config_kinds import BOOLEAN

    for setting in SCHEMA:
        if setting.flag is None:
            continue
        if setting.kind is BOOLEAN:
            assert parsed_overrides(setting.flag) == {setting.path: True}, setting.flag
        elif setting.kind.flag_repeats:
            assert parsed_overrides(setting.flag, "a", f"{setting.flag}=b") == {
                setting.path: ["a", "b"]}, setting.flag
        else:
            assert parsed_overrides(f"{setting.flag}=x") == {setting.path: "x"}, setting.flag
            assert parsed_overrides(setting.flag, "y") == {setting.path: "y"}, setting.flag


@pytest.mark.parametrize("flags, value", [
    (["--collector.status"], True),
    (["--no-collector.status"], False),
    (["--collector.status=false"], False),
    (["--collector.status", "false"], False),
    (["--web.enable-lifecycle=false"], False),
    (["--web.enable-lifecycle", "true"], True),
    (["--web.enable-lifecycle"], True),
    (["--no-web.enable-lifecycle"], False),
    (["--web.enable-lifecycle=true", "--web.enable-lifecycle=false"], False),  # last one wins
])
def test_boolean_flags_take_every_spelling(flags, value):
    path = "collectors.status.enabled" if "collector" in flags[0] else "web.enable_lifecycle"
    assert parsed_overrides(*flags) == {path: value}


def test_boolean_flags_and_flag_values_reach_the_configuration():
    from exporter.config import load_config

    config = load_config(None, parsed_overrides(
        "--tfserving.grpc-tls", "--no-collector.native", "--collector.native.passthrough=true",
        "--web.enable-lifecycle", "false", "--canary.timeout=3s", "--model", "a"))
    assert config.tfserving.grpc_tls.enabled is True
    assert config.collectors.native.enabled is False
    assert config.collectors.native.passthrough is True
    assert config.web.enable_lifecycle is False
    assert config.canary.timeout == 3.0 and config.models == ("a",)


@pytest.mark.parametrize("flags, message", [
    (["--web.enable-lifecycle=yes"], '--web.enable-lifecycle: expected true or false, got "yes"'),
    (["--no-collector.status=true"], '--no-collector.status: takes no value, got "true"'),
    (["--collector.status", "--no-collector.status"],
     "argument --no-collector.status: not allowed with argument --collector.status"),
])
def test_bad_boolean_flags_are_refused_by_name(flags, message):
    result = run_cli("check-config", *flags)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"tfserving-exporter check-config: error: {message}"


@pytest.mark.parametrize("command", [["check-config"], [], ["run"]])
def test_a_mistyped_flag_gets_the_nearest_one(command):
    result = run_cli(*command, "--tfserving.timout=5s", "--no-collector.stauts")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'tfserving-exporter: unknown flag --tfserving.timout (did you mean "--tfserving.timeout"?)',
        'tfserving-exporter: unknown flag --no-collector.stauts '
        '(did you mean "--no-collector.status"?)']


def test_an_unknown_flag_far_from_any_lists_the_flags():
    result = run_cli("check-config", "--zzz")
    assert result.returncode == 2
    assert result.stderr.startswith("tfserving-exporter: unknown flag --zzz (valid flags: ")
    assert "--tfserving.timeout," in result.stderr and "--no-" not in result.stderr


def test_help_shows_both_boolean_spellings_and_the_defaults():
    result = run_cli("check-config", "--help")
    assert "--collector.status[=true|false], --no-collector.status" in result.stdout
    assert "--web.enable-lifecycle[=true|false], --no-web.enable-lifecycle" in result.stdout
    assert "Default: 10s." in result.stdout
