"""Fixtures: a real simulator (gRPC + REST on 127.0.0.1) and a real exporter scraping it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests

from exporter.config import load_config
from exporter.runtime import start_exporter
from tests import real_models as _real_models
from tests.helpers import in_ci, wait_until
from tests.prometheus_versions import VERSIONS as PROMETHEUS_VERSIONS
from tests.prometheus_versions import require_binary
from tfserving_simulator.app import Simulator, SimulatorOptions
from tfserving_simulator.demo_files import write_demo_files

# The session's real SavedModels (built with TensorFlow in a subprocess), for every suite, and
# the guard keeping TensorFlow's runtime out of this process.
real_models = _real_models.real_models
no_tensorflow_in_this_process = _real_models.no_tensorflow_in_this_process


def require_tool(name: str) -> str:
    """Path of an external tool. Under CI=true a missing tool fails the test, never skips it."""
    path = shutil.which(name)
    if path:
        return path
    if in_ci():
        pytest.fail(f"{name} is required in CI but not installed (apt-get install prometheus)")
    pytest.skip(f"{name} not installed")


class SimulatorHandle:
    """A started simulator that tests can stop and start again on the same ports."""

    def __init__(self, files, **options) -> None:
        self.files = files
        self._options = options
        self.simulator: Simulator | None = None
        self.grpc_port = 0
        self.rest_port = 0

    def start(self) -> "SimulatorHandle":
        self.simulator = Simulator(SimulatorOptions(
            grpc_port=self.grpc_port, rest_api_port=self.rest_port,
            model_config_file=self.files.model_config_file,
            monitoring_config_file=self.files.monitoring_config_file,
            bind_address="127.0.0.1", file_system_poll_wait_seconds=0.1,
            max_num_load_retries=0, **self._options))
        self.simulator.start(timeout=30)
        self.grpc_port, self.rest_port = self.simulator.grpc_port, self.simulator.rest_port
        return self

    def stop(self) -> None:
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None

    @property
    def models_root(self) -> str:
        return os.path.join(self.files.root, "models")


@pytest.fixture
def simulator(tmp_path):
    handle = SimulatorHandle(write_demo_files(str(tmp_path))).start()
    yield handle
    handle.stop()


@pytest.fixture
def simulators(tmp_path):
    """Factory of simulators, each with its own model files; all stopped after the test."""
    started: list[SimulatorHandle] = []

    def start() -> SimulatorHandle:
        handle = SimulatorHandle(write_demo_files(str(tmp_path / f"tfserving-{len(started)}")))
        started.append(handle)
        return handle.start()

    yield start
    for handle in started:
        handle.stop()


class ExporterHandle:
    def __init__(self, running) -> None:
        self.running = running
        self.url = f"http://127.0.0.1:{running.port}"

    def get(self, path: str = "/metrics", timeout: float = 15, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=timeout, **kwargs)

    def metrics(self, scrape_timeout: float = 10) -> str:
        reply = self.get(headers={"X-Prometheus-Scrape-Timeout-Seconds": str(scrape_timeout)})
        assert reply.status_code == 200, reply.text
        return reply.text

    def metrics_until(self, predicate, timeout: float = 20, message: str = "metrics") -> str:
        """Scrape until ``predicate(text)`` holds; return that exposition."""
        def attempt():
            text = self.metrics()
            return text if predicate(text) else None
        return wait_until(attempt, timeout=timeout, message=message)


@pytest.fixture
def start_exporter_with():
    """Factory: start an exporter from settings (dotted paths to values, as flags give
    them); every one started is stopped after the test."""
    started = []

    def start(values: dict) -> ExporterHandle:
        running = start_exporter(load_config(None, {"web.listen_address": "127.0.0.1:0",
                                                    **values}))
        started.append(running)
        return ExporterHandle(running)

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def start_exporter_for(start_exporter_with):
    """Factory: start an exporter against a simulator with config overrides."""
    def start(sim: SimulatorHandle, **overrides) -> ExporterHandle:
        values = {
            "tfserving.grpc_address": f"127.0.0.1:{sim.grpc_port}",
            "tfserving.rest_address": f"http://127.0.0.1:{sim.rest_port}",
            "tfserving.model_config_file": sim.files.model_config_file,
        }
        values.update({key.replace("__", "."): value for key, value in overrides.items()})
        return start_exporter_with(values)

    return start


@pytest.fixture
def exporter(simulator, start_exporter_for):
    return start_exporter_for(simulator)


# ---- Prometheus 2.x and 3.x (tests/prometheus_versions.py) ------------------------------------
# A test that runs a real Prometheus or promtool takes ``prometheus_binary`` or ``promtool`` (or
# ``prometheus_version`` itself) and so runs once per major version. Under CI=true a missing
# version fails the test, never skips it.

@pytest.fixture(params=PROMETHEUS_VERSIONS, ids=lambda version: f"prometheus{version}")
def prometheus_version(request) -> str:
    """The major version ("2" or "3") of the Prometheus this test runs on."""
    return request.param


@pytest.fixture
def prometheus_binary(prometheus_version) -> str:
    return require_binary("prometheus", prometheus_version)


@pytest.fixture
def promtool(prometheus_version) -> str:
    return require_binary("promtool", prometheus_version)


def promtool_check_metrics(text: str, promtool: str) -> subprocess.CompletedProcess:
    """``promtool check metrics`` of ``text``; ``promtool`` is the fixture's path."""
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
