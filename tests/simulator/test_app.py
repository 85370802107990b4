"""Flags, monitoring config, startup order and the CLI as a real subprocess."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading

import pytest
import requests

from tests.helpers import free_port, wait_until
from tfserving_simulator.app import Simulator, SimulatorOptions, SimulatorStartError
from tfserving_simulator.demo_models import write_broken_version, write_half_plus_two
from tfserving_simulator.flags import FlagError, parse_flags, validate
from tfserving_simulator.monitoring_config import parse_monitoring_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 5


def test_flag_defaults_match_tensorflow_model_server():
    flags = parse_flags([])
    assert (flags.port, flags.rest_api_port, flags.rest_api_timeout_in_ms) == (8500, 0, 30000)
    assert (flags.model_name, flags.file_system_poll_wait_seconds) == ("default", 1)
    assert (flags.max_num_load_retries, flags.load_retry_interval_micros) == (5, 60_000_000)
    assert flags.bind_address == "0.0.0.0"


def test_flag_forms():
    flags = parse_flags(["--port=9000", "--rest_api_port", "9001", "-model_name=m",
                         "--rest_api_enable_cors_support", "--noenable_grpc_healthcheck_service",
                         "--allow_version_labels_for_unavailable_models=false",
                         "--enable_batching=true", "--rest_api_num_threads", "8"])
    assert (flags.port, flags.rest_api_port, flags.model_name) == (9000, 9001, "m")
    assert flags.rest_api_enable_cors_support is True
    assert flags.enable_grpc_healthcheck_service is False
    assert flags.ignored == ["enable_batching", "rest_api_num_threads"]


@pytest.mark.parametrize("argv, message", [
    (["--no_such_flag=1"], "unknown flag --no_such_flag"),
    (["--port=abc"], "invalid value for --port (int): 'abc'"),
    (["--port"], "flag --port needs a value"),
    (["--rest_api_enable_cors_support=maybe"],
     "invalid value for --rest_api_enable_cors_support (bool): 'maybe'"),
    (["stray"], "unexpected positional argument: 'stray'"),
])
def test_flag_errors(argv, message):
    with pytest.raises(FlagError) as info:
        parse_flags(argv)
    assert str(info.value) == message


def test_a_model_is_required():
    with pytest.raises(FlagError, match="--model_base_path or --model_config_file"):
        validate(parse_flags(["--port=1"]))


def test_monitoring_config_parser():
    config = parse_monitoring_config('# comment\nprometheus_config {\n  enable: true,\n'
                                     '  path: "/m"\n}\n')
    assert (config.prometheus_enable, config.effective_path) == (True, "/m")
    assert parse_monitoring_config("prometheus_config: < enable: true >").effective_path == \
        "/monitoring/prometheus/metrics"
    with pytest.raises(ValueError, match="unknown field 'enabled'"):
        parse_monitoring_config("prometheus_config { enabled: true }")
    with pytest.raises(ValueError, match="missing '}'"):
        parse_monitoring_config("prometheus_config { enable: true")


def test_failed_initial_load_is_a_start_error_and_opens_no_port(tmp_path):
    base = tmp_path / "broken"
    write_broken_version(str(base), 1)
    port = free_port()
    sim = Simulator(SimulatorOptions(model_name="broken", model_base_path=str(base),
                                     bind_address="127.0.0.1", grpc_port=port,
                                     max_num_load_retries=0))
    with pytest.raises(SimulatorStartError) as info:
        sim.start(timeout=10)
    message = str(info.value)
    assert message.startswith("UNKNOWN: 1 servable(s) did not become available: {")
    assert "{name: broken version: 1} due to error: NOT_FOUND: Specified file path does not " \
           "appear to contain a SavedModel bundle" in message
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)


def test_rest_is_off_unless_a_port_is_given(tmp_path):
    write_half_plus_two(str(tmp_path / "m"), 1)
    with Simulator(SimulatorOptions(model_name="m", model_base_path=str(tmp_path / "m"),
                                    bind_address="127.0.0.1", grpc_port=0)) as sim:
        assert sim.rest_port is None and sim.grpc_port > 0


def _spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tfserving_simulator", *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_serves_and_stops_on_sigterm(tmp_path):
    base = tmp_path / "half_plus_two"
    write_half_plus_two(str(base), 123)
    grpc_port, rest_port = free_port(), free_port()
    process = _spawn(f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                     "--model_name=half_plus_two", f"--model_base_path={base}",
                     "--bind_address=127.0.0.1")
    try:
        url = f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict"
        response = wait_until(lambda: requests.post(url, data=b'{"instances": [2.0]}',
                                                    timeout=TIMEOUT),
                              timeout=20, message="the CLI simulator to serve REST")
        assert response.content == b'{\n    "predictions": [3.0\n    ]\n}'
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
        assert process.returncode == 0
        assert f'msg="Running gRPC ModelServer at 127.0.0.1:{grpc_port} ..."' in stderr
        assert f'msg="Exporting HTTP/REST API at:localhost:{rest_port} ..."' in stderr
        assert all(LOGFMT_LINE.fullmatch(line) for line in stderr.splitlines()), stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


LOGFMT_LINE = re.compile(r'ts=\S+Z level=(debug|info|warn|error) logger=tfserving_simulator\S* '
                         r'msg="([^"\\]|\\.)*"')


def test_cli_logs_logfmt_and_repeats_what_a_missing_base_path_waits_for(tmp_path):
    # TF Serving's texts (server.cc BuildSingleModelConfig, server_core.cc ReloadConfig,
    # file_system_storage_path_source.cc), the last logged on every poll while nothing opens.
    missing = tmp_path / "missing"
    process = _spawn(f"--port={free_port()}", "--model_name=m", f"--model_base_path={missing}",
                     "--file_system_poll_wait_seconds=1", "--bind_address=127.0.0.1")
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr],
                     daemon=True).start()
    seen: list[str] = []
    waiting = ('msg="FileSystemStoragePathSource encountered a filesystem access error: Could '
               f'not find base path {missing} for servable m with error NOT_FOUND: {missing} '
               'not found"')

    def waited_twice() -> bool:
        while not lines.empty():
            seen.append(lines.get_nowait().rstrip("\n"))
        return sum(line.endswith(waiting) for line in seen) >= 2

    try:
        wait_until(waited_twice, timeout=15, message="two polls' error lines")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0
    assert all(LOGFMT_LINE.fullmatch(line) for line in seen), seen
    assert [line.split(" ", 1)[1] for line in seen[:3]] == [
        'level=info logger=tfserving_simulator.app msg="Building single TensorFlow model file '
        f'config:  model_name: m model_base_path: {missing}"',
        'level=info logger=tfserving_simulator.server_core msg="Adding/updating models."',
        'level=info logger=tfserving_simulator.server_core msg=" (Re-)adding model: m"']


def test_config_file_is_reapplied_on_every_poll_so_a_refused_label_takes_later(tmp_path, caplog):
    # server.cc, PollFilesystemAndReloadConfig applies the file whether or not it changed, and
    # ServerCore::ReloadConfig checks the labels each time: a label refused while its version
    # loads takes effect on a later poll of the same text.
    base = tmp_path / "m"
    write_half_plus_two(str(base), 1)
    config = tmp_path / "models.config"

    def write_config(labels: str = "") -> None:
        staged = tmp_path / "models.config.new"
        staged.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{base}" '
                          f'model_platform: "tensorflow" model_version_policy {{ all {{}} }} '
                          f'{labels} }} }}')
        os.replace(staged, config)

    write_config()
    caplog.set_level(logging.INFO, logger="tfserving_simulator")
    options = SimulatorOptions(model_config_file=str(config), bind_address="127.0.0.1",
                               grpc_port=0, model_config_file_poll_wait_seconds=0.1,
                               file_system_poll_wait_seconds=0.05)
    with Simulator(options) as sim:
        write_half_plus_two(str(base), 2, load_seconds=1.5)
        wait_until(lambda: sim.core.model_status("m", 2)[0].state == "LOADING", timeout=5)
        write_config('version_labels { key: "canary" value: 2 }')
        refused = ("PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign "
                   "label to version 2 of model m, which is not currently available for "
                   "inference")
        wait_until(lambda: refused in caplog.messages, timeout=5, message="a refused poll")
        wait_until(lambda: sim.core.version_labels("m") == {"canary": 2}, timeout=10,
                   message="a later poll to apply the label")
        assert sim.core.get_servable("m", label="canary").version == 2


def test_cli_failed_initial_load_exits_255(tmp_path):
    base = tmp_path / "broken"
    write_broken_version(str(base), 1)
    process = _spawn(f"--port={free_port()}", "--model_name=broken",
                     f"--model_base_path={base}", "--max_num_load_retries=0",
                     "--bind_address=127.0.0.1")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 255
    assert "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available" \
        in stderr


def test_cli_unknown_flag_exits_1():
    process = _spawn("--bogus=1")
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1 and "unknown flag --bogus" in stderr


def test_cli_version():
    process = _spawn("--version")
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert stdout.startswith("TensorFlow ModelServer: ") and "TensorFlow Library: " in stdout


def test_help_lists_every_supported_flag_with_its_default(capsys):
    from tfserving_simulator import flags
    from tfserving_simulator.app import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_kind, default) in flags.SUPPORTED.items():
        assert f"--{name}={default}" in out


def test_a_taken_grpc_port_is_a_clear_start_error(tmp_path):
    import socket

    from tfserving_simulator.app import Simulator, SimulatorOptions, SimulatorStartError
    from tfserving_simulator.demo_models import write_half_plus_two

    write_half_plus_two(str(tmp_path / "hpt"), 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        simulator = Simulator(SimulatorOptions(
            model_name="half_plus_two", model_base_path=str(tmp_path / "hpt"),
            bind_address="127.0.0.1", grpc_port=taken.getsockname()[1], rest_api_port=None))
        with pytest.raises(SimulatorStartError, match="cannot bind the gRPC port"):
            simulator.start(timeout=10)
