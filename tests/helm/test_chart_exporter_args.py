"""The exporter container the chart renders starts: its args and mounted files pass the
exporter's own `check-config` (flags, config file, models.config, golden files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.helm.rendering import (CHART_DIR, CI_VALUES, EXPORTER_CONTAINER, ROOT, Rendered,
                                  ci_id, container, example_chart, exporter_pods, render,
                                  values_file)
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

CONFIG_MOUNT = "/etc/tfserving-exporter"
CASES_WITH_GOLDEN_FILES = ("canary-golden-inline", "canary-existing-configmap", "canary-volume",
                           "fleet-canary")


def materialize(rendered: Rendered, pod: dict[str, Any], root: str) -> dict[str, str]:
    """Write what the exporter container would see under ``root``.

    ConfigMap volumes rendered by the chart get their data; a ConfigMap made outside the chart
    or another volume source (a golden-set PVC) gets the demo's golden files. Returns
    {container path: local path} for every mount.
    """
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mapping = {}
    for mount in container(pod, EXPORTER_CONTAINER)["volumeMounts"]:
        local = os.path.join(root, mount["mountPath"].strip("/"))
        os.makedirs(local, exist_ok=True)
        volume = volumes[mount["name"]]
        source = volume.get("configMap")
        config_map = rendered.config_map(source["name"]) if source else None
        if config_map is not None:
            for key, text in config_map["data"].items():
                with open(os.path.join(local, key), "w", encoding="utf-8") as handle:
                    handle.write(text)
        elif mount["mountPath"] != CONFIG_MOUNT:
            shutil.copytree(STANDIN_GOLDEN_DIR, local, dirs_exist_ok=True)
        mapping[mount["mountPath"]] = local
    return mapping


def local_args(args: list[str], mapping: dict[str, str]) -> list[str]:
    """The container's args with its file paths pointing at the materialized copies."""
    result = []
    for arg in args:
        flag, sep, value = arg.partition("=")
        for mount in sorted(mapping, key=len, reverse=True):
            if sep and (value == mount or value.startswith(mount + "/")):
                value = mapping[mount] + value[len(mount):]
                break
        result.append(flag + sep + value)
    return result


def check_config(rendered: Rendered, tmp_path) -> list[subprocess.CompletedProcess]:
    results = []
    pods = exporter_pods(rendered)
    assert pods, "no pod with the exporter container"
    for index, pod in enumerate(pods):
        exporter = container(pod, EXPORTER_CONTAINER)
        mapping = materialize(rendered, pod, str(tmp_path / f"pod{index}"))
        assert mapping[CONFIG_MOUNT], "config ConfigMap not mounted"
        args = local_args(exporter["args"], mapping)
        results.append(subprocess.run(
            [sys.executable, "-m", "exporter", "check-config", *args], cwd=ROOT,
            capture_output=True, text=True, timeout=60))
    return results


# The chart's own pods: serving and fleet modes (sidecar-only is checked through the example).
CHART_POD_CASES = [pytest.param(None, id="defaults")] + [
    pytest.param(path, id=ci_id(path)) for path in CI_VALUES
    if values_file(path).get("mode", "serving") in ("serving", "fleet")]


@pytest.mark.parametrize("values_path", CHART_POD_CASES)
def test_rendered_exporter_args_pass_check_config(values_path, tmp_path):
    rendered = render(values_file(values_path) if values_path else {})
    for result in check_config(rendered, tmp_path):
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("configuration is valid"), result.stdout
        if values_path and ci_id(values_path) in CASES_WITH_GOLDEN_FILES:
            assert "golden sets" in result.stdout, result.stdout


def test_inline_golden_sets_load_as_golden_files(tmp_path):
    rendered = render(values_file(os.path.join(CHART_DIR, "ci",
                                               "canary-golden-inline-values.yaml")))
    [result] = check_config(rendered, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 golden sets (half_plus_three, half_plus_two)" in result.stdout


def test_a_broken_inline_golden_set_fails_check_config(tmp_path):
    rendered = render({"canary": {"goldenSets": {"bad.json": '{"format": 1, "model": "m"}'}}})
    [result] = check_config(rendered, tmp_path)
    assert result.returncode == 2
    assert "bad.json" in result.stderr


def test_custom_config_reaches_the_exporter(tmp_path):
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "custom-config-values.yaml")))
    [pod] = exporter_pods(rendered)
    args = container(pod, EXPORTER_CONTAINER)["args"]
    assert {"--web.listen-address=:9101", "--web.telemetry-path=/tfserving/metrics",
            "--collector.native.passthrough=true", "--log.level=debug"} <= set(args)
    mapping = materialize(rendered, pod, str(tmp_path))
    from exporter.cli import build_parser, overrides_from_args
    from exporter.config import load_config

    parsed = build_parser().parse_args(["check-config", *local_args(args, mapping)])
    config = load_config(parsed.config_file, overrides_from_args(parsed))
    assert config.canary.interval == 120 and config.canary.intervals == {"half_plus_two": 30}
    assert config.log.format == "json" and config.log.level == "debug"
    assert config.collectors.native.max_passthrough_series == 500
    assert config.web.listen_address == ":9101"
    assert config.tfserving.model_config_file == os.path.join(mapping["/config"], "models.config")


def test_sidecar_only_example_args_pass_check_config(tmp_path):
    rendered = render(chart_dir=example_chart(tmp_path / "chart"))
    [result] = check_config(rendered, tmp_path / "files")
    assert result.returncode == 0, result.stderr
    assert "1 golden sets (half_plus_two)" in result.stdout


def test_sidecar_only_ports_and_protocols_reach_the_args(tmp_path):
    values = values_file(os.path.join(CHART_DIR, "ci", "sidecar-only-podmonitor-values.yaml"))
    chart_dir = example_chart(tmp_path / "chart")
    rendered = render({"tfserving-exporter": values}, chart_dir=chart_dir)
    [pod] = exporter_pods(rendered)
    args = container(pod, EXPORTER_CONTAINER)["args"]
    assert "--tfserving.grpc-address=127.0.0.1:9000" in args
    assert "--tfserving.rest-address=" in args
    assert "--no-collector.native" in args
    [result] = check_config(rendered, tmp_path / "files")
    assert result.returncode == 0, result.stderr


def _loaded_config(rendered: Rendered, tmp_path):
    """The exporter's Config as the rendered container's args and files give it."""
    from exporter.cli import build_parser, overrides_from_args
    from exporter.config import load_config

    [pod] = exporter_pods(rendered)
    mapping = materialize(rendered, pod, str(tmp_path))
    args = local_args(container(pod, EXPORTER_CONTAINER)["args"], mapping)
    parsed = build_parser().parse_args(["check-config", *args])
    return load_config(parsed.config_file, overrides_from_args(parsed))


def test_fleet_values_reach_the_exporter(tmp_path):
    rendered = render(values_file(os.path.join(CHART_DIR, "ci", "fleet-values.yaml")))
    [result] = check_config(rendered, tmp_path / "check")
    assert result.returncode == 0, result.stderr
    assert "fleet mode" in result.stderr, result.stderr  # the exporter says it has no address
    config = _loaded_config(rendered, tmp_path / "load")
    assert config.fleet_only
    assert config.probe.allowed_targets == ("10.0.0.0/8", "*.tfserving.svc.cluster.local")
    assert config.probe.rest_port == 8501
    assert config.fleet.max_targets == 50 and config.fleet.target_expiry == 900
    assert config.fleet.max_concurrent_probes == 8  # from exporter.config
    assert sorted(config.modules) == ["default", "many-models", "tls"]
    tls = config.module("tls")
    assert tls.probe.rest_port == 0 and tls.tfserving.grpc_tls.enabled
    assert not tls.collectors.native.enabled
    assert config.module("many-models").limits.max_models == 1000
    # Modules inherit what they leave out; the default module is fleet.modules.default.
    assert tls.probe.allowed_targets == config.probe.allowed_targets
    assert config.module(None).models == ("half_plus_two",)
    assert config.canary.interval == 120


def test_fleet_defaults_reach_the_exporter(tmp_path):
    rendered = render({"mode": "fleet", "fleet": {"allowedTargets": ["10.0.0.0/8"]}})
    config = _loaded_config(rendered, tmp_path)
    assert config.fleet_only and config.probe.allowed_targets == ("10.0.0.0/8",)
    assert (config.probe.rest_port, config.fleet.max_targets, config.fleet.target_expiry) == (
        8501, 100, 600)
    assert not config.modules


def test_a_fleet_module_the_exporter_refuses_fails_check_config(tmp_path):
    # The schema checks a module's keys and types; the exporter checks its values too.
    rendered = render({"mode": "fleet", "fleet": {
        "allowedTargets": ["10.0.0.0/8"],
        "modules": {"broken": {"probe": {"allowed_targets": ["10.0.0.0/33"]}}}}})
    [result] = check_config(rendered, tmp_path)
    assert result.returncode == 2, result.stdout
    assert "fleet.modules.broken.probe.allowed_targets" in result.stderr, result.stderr
