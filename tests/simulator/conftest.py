"""Fixtures: demo models written with ``demo_models`` and a real simulator on 127.0.0.1."""

from __future__ import annotations

import pytest

from tfserving_simulator.app import Simulator, SimulatorOptions
from tfserving_simulator.demo_models import write_half_plus_two, write_image_classifier

METRICS_PATH = "/monitoring/prometheus/metrics"
MONITORING_CONFIG = 'prometheus_config {\n  enable: true,\n  path: "%s"\n}\n' % METRICS_PATH


def write_models(root) -> dict[str, str]:
    """half_plus_two/00000123 (as in TF Serving's Docker demo) and image_classifier/1."""
    paths = {"half_plus_two": str(root / "half_plus_two"),
             "image_classifier": str(root / "image_classifier")}
    write_half_plus_two(paths["half_plus_two"], 123, dir_name="00000123")
    write_image_classifier(paths["image_classifier"], 1)
    return paths


def start_simulator(root, **overrides) -> Simulator:
    """half_plus_two on ephemeral ports with monitoring enabled through a real config file."""
    paths = write_models(root)
    monitoring = root / "monitoring.config"
    monitoring.write_text(MONITORING_CONFIG)
    options = dict(model_name="half_plus_two", model_base_path=paths["half_plus_two"],
                   bind_address="127.0.0.1", grpc_port=0, rest_api_port=0,
                   monitoring_config_file=str(monitoring), file_system_poll_wait_seconds=0.2,
                   rest_api_timeout_in_ms=2000)
    options.update(overrides)
    simulator = Simulator(SimulatorOptions(**options))
    simulator.start(timeout=15)
    return simulator


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    """One simulator shared by a test module (tests must not depend on its metric counts)."""
    sim = start_simulator(tmp_path_factory.mktemp("models"))
    yield sim
    sim.stop()


@pytest.fixture
def fresh_simulator(tmp_path):
    """A simulator of the test's own, for exact metric counts and fault injection."""
    sim = start_simulator(tmp_path)
    yield sim
    sim.stop()


@pytest.fixture
def rest_url(simulator) -> str:
    return f"http://127.0.0.1:{simulator.rest_port}"
