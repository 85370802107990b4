"""Configuration reload (POST /-/reload and SIGHUP): a valid one is applied without a restart,
an invalid one (config or golden file) is rejected whole and the running one stays."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
import requests

from exporter.config import load_config
from exporter.runtime import start_exporter
from tests.conftest import ExporterHandle
from tests.exporter_process import ExporterProcess
from tests.helpers import sample_value, wait_until
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR


def _write_config(path, models, golden_dir=None):
    text = "models: [" + ", ".join(models) + "]\n"
    if golden_dir:
        text += f"canary:\n  golden_dir: {golden_dir}\n  interval: 200ms\n"
    path.write_text(text)


@pytest.fixture
def reloadable(simulator, tmp_path):
    golden_dir = tmp_path / "golden"
    shutil.copytree(STANDIN_GOLDEN_DIR, golden_dir)
    config_file = tmp_path / "config.yaml"
    _write_config(config_file, ["half_plus_two"], golden_dir)
    overrides = {"tfserving.grpc_address": f"127.0.0.1:{simulator.grpc_port}",
                 "tfserving.rest_address": f"http://127.0.0.1:{simulator.rest_port}",
                 "web.listen_address": "127.0.0.1:0"}
    running = start_exporter(load_config(str(config_file), overrides), str(config_file),
                             overrides)
    yield running, ExporterHandle(running), config_file, golden_dir
    running.stop()


def _reload(exporter) -> requests.Response:
    return requests.post(exporter.url + "/-/reload", timeout=30)


def test_valid_reload_applies_the_new_configuration(reloadable):
    _, exporter, config_file, golden_dir = reloadable
    assert sample_value(exporter.metrics(), "tfserving_model_available_versions",
                        model="no_such_model") is None
    _write_config(config_file, ["half_plus_two", "no_such_model"], golden_dir)
    reply = _reload(exporter)
    assert (reply.status_code, reply.text) == (200, "configuration reloaded\n")
    text = exporter.metrics()
    assert sample_value(text, "tfserving_model_available_versions", model="no_such_model") == 0
    assert sample_value(text, "tfserving_exporter_config_last_reload_successful") == 1


@pytest.mark.parametrize("breakage", ["yaml", "unknown_key", "corrupt_golden", "deleted_golden"])
def test_invalid_reload_keeps_the_running_configuration(reloadable, breakage):
    _, exporter, config_file, golden_dir = reloadable
    exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_canary_success", model="half_plus_two", version="123") == 1,
        message="canaries running before the reload")
    before = sample_value(exporter.metrics(),
                          "tfserving_exporter_config_last_reload_success_timestamp_seconds")
    if breakage == "yaml":
        config_file.write_text("models: [half_plus_two\n")
    elif breakage == "unknown_key":
        config_file.write_text("modles: [half_plus_two]\n")
    elif breakage == "corrupt_golden":
        (golden_dir / "half_plus_two.json").write_text('{"format": 1, "model": "half_')
    else:
        os.remove(golden_dir / "image_classifier.npz")

    reply = _reload(exporter)
    assert reply.status_code == 500
    assert "keeping the running configuration" in reply.text
    expected = {"yaml": "invalid YAML", "unknown_key": 'did you mean "models"',
                "corrupt_golden": "half_plus_two.json", "deleted_golden": "image_classifier"}
    assert expected[breakage] in reply.text

    text = exporter.metrics()
    assert sample_value(text, "tfserving_exporter_config_last_reload_successful") == 0
    assert sample_value(text, "tfserving_exporter_config_last_reload_success_timestamp_seconds") \
        == before
    assert sample_value(text, "tfserving_model_serving_version", model="half_plus_two") == 123
    # The old golden sets keep running: results keep coming.
    runs = sample_value(text, "tfserving_canary_runs_total", model="half_plus_two", version="123")
    exporter.metrics_until(lambda t: sample_value(
        t, "tfserving_canary_runs_total", model="half_plus_two", version="123") > runs,
        message="canaries still running on the old golden set")


def test_reload_needs_post(reloadable):
    _, exporter, _, _ = reloadable
    reply = requests.get(exporter.url + "/-/reload", timeout=10)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "POST, PUT"


def test_sighup_reloads_a_running_exporter(simulator, tmp_path):
    config_file = tmp_path / "config.yaml"
    _write_config(config_file, ["half_plus_two"])
    exporter = ExporterProcess(str(tmp_path / "exporter.log"),
                               f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}",
                               f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}",
                               config_file=str(config_file))
    url = exporter.url + "/metrics"
    try:
        assert sample_value(requests.get(url, timeout=10).text,
                            "tfserving_model_available_versions", model="other") is None
        _write_config(config_file, ["half_plus_two", "other"])
        exporter.signal(signal.SIGHUP)
        wait_until(lambda: sample_value(requests.get(url, timeout=10).text,
                                        "tfserving_model_available_versions", model="other") == 0,
                   timeout=15, message="the SIGHUP reload")
    except BaseException:
        exporter.stop()
        raise
    assert exporter.stop() == 0  # SIGTERM: a clean stop
