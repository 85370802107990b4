"""examples/compose: the docker-compose example cannot run here (no Docker daemon), so every
file it uses is checked instead: YAML, mounts, ports, addresses, the exporter's arguments (with
its own check-config), Prometheus' config (promtool), Grafana provisioning, TF Serving's
config files (with the parsers the exporter and simulator use), and the model-making script
(run with the TensorFlow the test environment has, then loaded back)."""

from __future__ import annotations

import json
import os
import py_compile
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from exporter.tfserving.models_file import ConfiguredModel, parse_model_config
from tfserving_simulator.monitoring_config import parse_monitoring_config
from tests.helpers import in_ci

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "examples" / "compose"
SERVICES = {"make-model", "tfserving", "exporter", "prometheus", "grafana"}
# Written by other parts of the project (alert rules, dashboards); the example mounts them by
# path. They must exist in the repository like every other mounted file.
FROM_ELSEWHERE = {
    "../../prometheus/rules/tfserving.rules.yaml": "the project's Prometheus rules",
    "../../grafana/dashboards": "the project's Grafana dashboards",
}


def load_yaml(name: str):
    with open(COMPOSE_DIR / name, encoding="utf-8") as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml("docker-compose.yml")


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path relative to the compose dir, container path) of a service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(service: dict, container_path: str) -> Path:
    """Where a path inside the container comes from on the host, through the bind mounts."""
    for source, target in bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (COMPOSE_DIR / source / os.path.relpath(container_path, target)).resolve()
    raise AssertionError(f"{container_path} is not bind-mounted into the container")


def flag_values(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)


def test_compose_file_has_the_expected_services_and_volumes(compose):
    assert set(compose["services"]) == SERVICES
    services = compose["services"]
    assert services["tfserving"]["image"].startswith("tensorflow/serving:")
    assert services["make-model"]["image"].startswith("tensorflow/tensorflow:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["tfserving"]["depends_on"]["make-model"] == {
        "condition": "service_completed_successfully"}
    declared = set(compose.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: named volume {source} is not declared"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_local_path_exists(compose, service):
    for source, _target in bind_mounts(compose["services"][service]):
        path = (COMPOSE_DIR / source).resolve()
        assert REPO in path.parents, f"{service}: {source} is outside the repository"
        if source in FROM_ELSEWHERE:
            assert path.exists(), (f"{service}: {source} ({FROM_ELSEWHERE[source]}) is not in "
                                   "the repository yet")
        else:
            assert path.exists(), f"{service}: {source} does not exist"


def test_published_ports_are_unique_and_the_expected_ones(compose):
    published = {}
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            host, container = str(mapping).split(":")
            assert host not in published, f"port {host} published twice"
            published[host] = (name, container)
    assert published == {
        "8500": ("tfserving", "8500"), "8501": ("tfserving", "8501"),
        "9850": ("exporter", "9850"), "9090": ("prometheus", "9090"),
        "3000": ("grafana", "3000"),
    }


def test_exporter_is_built_from_the_repository_dockerfile_and_points_at_tfserving(compose):
    exporter = compose["services"]["exporter"]
    context = (COMPOSE_DIR / exporter["build"]["context"]).resolve()
    assert context == REPO
    assert (context / exporter["build"]["dockerfile"]).is_file()
    command = exporter["command"]
    assert command[0] == "run"
    flags = flag_values(command)
    assert flags["--tfserving.grpc-address"] == "tfserving:8500"
    assert flags["--tfserving.rest-address"] == "http://tfserving:8501"
    assert host_path(exporter, flags["--tfserving.model-config-file"]) == \
        COMPOSE_DIR / "models.config"
    assert host_path(exporter, flags["--canary.golden-file"]) == \
        REPO / "tfserving_simulator" / "demo_data" / "golden" / "half_plus_two.json"


def test_exporter_arguments_pass_its_own_check_config(compose):
    exporter = compose["services"]["exporter"]
    args = []
    for arg in exporter["command"][1:]:
        flag, _, value = arg.partition("=")
        if value.startswith("/"):  # a path in the container: use the mounted host file
            value = str(host_path(exporter, value))
        args.append(f"{flag}={value}")
    out = subprocess.run([sys.executable, "-m", "exporter", "check-config", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 golden sets (half_plus_two)" in out.stdout


def test_tfserving_reads_the_mounted_config_files(compose):
    tfserving = compose["services"]["tfserving"]
    flags = flag_values(tfserving["command"])
    assert host_path(tfserving, flags["--model_config_file"]) == COMPOSE_DIR / "models.config"
    assert host_path(tfserving, flags["--monitoring_config_file"]) == \
        COMPOSE_DIR / "monitoring.config"


def test_models_config_parses_and_points_into_the_models_volume(compose):
    models = parse_model_config((COMPOSE_DIR / "models.config").read_text(), "models.config")
    assert models == [ConfiguredModel("half_plus_two", "/models/half_plus_two")]
    # The model maker writes where TF Serving looks, through the shared named volume.
    maker = compose["services"]["make-model"]
    tfserving = compose["services"]["tfserving"]
    assert "models:/models" in maker["volumes"]
    assert "models:/models:ro" in tfserving["volumes"]
    assert maker["command"][-1] == models[0].base_path
    script = host_path(maker, maker["command"][1])
    assert script == COMPOSE_DIR / "make_half_plus_two.py"


def test_monitoring_config_parses_and_prometheus_scrapes_that_path():
    monitoring = parse_monitoring_config((COMPOSE_DIR / "monitoring.config").read_text())
    assert monitoring.prometheus_enable is True
    jobs = {job["job_name"]: job for job in load_yaml("prometheus.yml")["scrape_configs"]}
    assert jobs["tfserving"]["metrics_path"] == monitoring.effective_path
    assert jobs["tfserving"]["static_configs"][0]["targets"] == ["tfserving:8501"]
    assert jobs["tfserving-exporter"]["static_configs"][0]["targets"] == ["exporter:9850"]


def test_exporter_job_name_matches_the_rules_selector():
    rules = (REPO / "prometheus" / "rules" / "tfserving.rules.yaml")
    assert rules.is_file(), "prometheus/rules/tfserving.rules.yaml (the project's rules) is missing"
    expressions = [rule["expr"] for group in yaml.safe_load(rules.read_text())["groups"]
                   for rule in group["rules"]]
    selectors = {selector for expr in expressions
                 for selector in re.findall(r'job=~"([^"]+)"', expr)}
    jobs = [job["job_name"] for job in load_yaml("prometheus.yml")["scrape_configs"]]
    assert "tfserving-exporter" in jobs
    for selector in selectors:  # PromQL regexes are anchored, like fullmatch
        assert re.fullmatch(selector, "tfserving-exporter"), selector


def test_prometheus_config_passes_promtool(compose, tmp_path, promtool):
    prometheus = compose["services"]["prometheus"]
    config = load_yaml("prometheus.yml")
    container_config = flag_values(prometheus["command"])["--config.file"]
    assert host_path(prometheus, container_config) == COMPOSE_DIR / "prometheus.yml"
    # rule_files are container paths; promtool needs them to exist, so check a copy whose
    # paths point at the mounted host files.
    config["rule_files"] = [str(host_path(prometheus, path)) for path in config["rule_files"]]
    for path in config["rule_files"]:
        assert Path(path).is_file(), f"{path} (the project's rules) is missing"
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    out = subprocess.run([promtool, "check", "config", str(checked)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_grafana_datasource_provisioning(compose):
    provisioning = load_yaml("grafana/provisioning/datasources/prometheus.yaml")
    assert provisioning["apiVersion"] == 1
    (datasource,) = provisioning["datasources"]
    assert {"name", "type", "access", "url", "uid", "isDefault"} <= set(datasource)
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["isDefault"] is True
    grafana = compose["services"]["grafana"]
    assert host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yaml") == \
        COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"


def test_grafana_dashboard_provisioning_loads_the_project_dashboards(compose):
    provisioning = load_yaml("grafana/provisioning/dashboards/tfserving.yaml")
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert {"name", "type", "folder", "options"} <= set(provider)
    assert provider["type"] == "file"
    grafana = compose["services"]["grafana"]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert dashboards == REPO / "grafana" / "dashboards"
    files = sorted(dashboards.glob("*.json"))
    assert files, "grafana/dashboards/ (the project's dashboards) has no dashboard yet"
    for file in files:
        dashboard = json.loads(file.read_text())
        assert dashboard.get("uid") and dashboard.get("title"), file.name


def test_make_half_plus_two_compiles(tmp_path):
    py_compile.compile(str(COMPOSE_DIR / "make_half_plus_two.py"),
                       cfile=str(tmp_path / "make_half_plus_two.pyc"), doraise=True)


VERIFY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, golden_file = sys.argv[1], sys.argv[2]
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    golden = json.load(open(golden_file))
    x = np.array(golden["request"]["instances"], dtype=np.float32)
    y = signature(x=tf.constant(x))["y"].numpy()
    print(json.dumps({
        "inputs": sorted(signature.structured_input_signature[1]),
        "outputs": sorted(signature.structured_outputs),
        "shape": spec.shape.as_list(), "dtype": spec.dtype.name,
        "y": y.tolist(), "expected": golden["expected"]["y"],
    }))
""")


@pytest.mark.timeout(300)
def test_make_half_plus_two_writes_the_model_the_golden_set_expects(tmp_path):
    """Runs the script with the TensorFlow installed for the tests (tensorflow-serving-api
    brings it): the image's job, minus the image."""
    import importlib.util
    if importlib.util.find_spec("tensorflow") is None:
        if in_ci():
            pytest.fail("tensorflow is required in CI (pip install -e .[test] installs it)")
        pytest.skip("tensorflow not installed")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    base = tmp_path / "half_plus_two"
    script = str(COMPOSE_DIR / "make_half_plus_two.py")
    out = subprocess.run([sys.executable, script, str(base)], capture_output=True, text=True,
                         timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (base / "1" / "saved_model.pb").is_file()
    assert [p.name for p in base.iterdir()] == ["1"]  # no staging directory left behind
    again = subprocess.run([sys.executable, script, str(base)], capture_output=True, text=True,
                           timeout=240, env=env)
    assert again.returncode == 0 and "leaving it" in again.stdout

    golden = REPO / "tfserving_simulator" / "demo_data" / "golden" / "half_plus_two.json"
    out = subprocess.run([sys.executable, "-c", VERIFY, str(base / "1"), str(golden)],
                         capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["inputs"] == ["x"] and result["outputs"] == ["y"]
    assert result["shape"] == [None, 1] and result["dtype"] == "float32"
    tolerance = json.loads(golden.read_text())["tolerances"]["y"]
    for got, want in zip(result["y"], result["expected"]):
        assert abs(got[0] - want[0]) <= tolerance["atol"] + tolerance["rtol"] * abs(want[0])
