"""The exporter container the chart renders starts: its args and mounted files pass the
exporter's own `check-config` (flags, config file, models.config, golden files)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.helm.rendering import (CHART_DIR, CI_VALUES, EXPORTER_CONTAINER, ROOT, Rendered,
                                  ci_id, container, example_chart, exporter_pods, render,
                                  require_module, values_file)
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

CONFIG_MOUNT = "/etc/tfserving-exporter"
CASES_WITH_GOLDEN_FILES = ("canary-golden-inline", "canary-existing-configmap", "canary-volume",
                           "fleet-canary")


# Keys of the Secrets the chart mounts but does not render (TLS files, basic auth users), and
# the password of the user the test writes.
PASSWORD = "scrape-password"


@functools.lru_cache(maxsize=None)
def _pki() -> dict[str, bytes]:
    """A CA and a certificate it signed, as the PEM files of a kubernetes.io/tls Secret (with
    cert-manager's ca.crt), and a basic-auth users file."""
    import datetime

    bcrypt = require_module("bcrypt")
    require_module("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(key, name, issuer_key, issuer, ca):
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                               critical=False)
                .sign(issuer_key, hashes.SHA256()))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert(ca_key, "test-ca", ca_key, "test-ca", True)
    leaf = cert(key, "tfs-tfserving-exporter.ml.svc", ca_key, "test-ca", False)
    users = "prometheus: " + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode() + "\n"
    return {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "tls.crt": leaf.public_bytes(serialization.Encoding.PEM),
        "tls.key": key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()),
        "users.yaml": users.encode(),
    }


def _fill_volume(rendered: Rendered, volume: dict[str, Any], local: str) -> None:
    """Write what a volume holds: a ConfigMap or Secret the chart renders gets its data; a
    Secret made outside the chart gets the test's PKI and users file under each item's path; an
    emptyDir stays empty (an init container fills it); a ConfigMap made outside the chart or
    another volume source (a golden-set PVC) gets the demo's golden files."""
    os.makedirs(local, exist_ok=True)
    if "emptyDir" in volume:
        return
    if "secret" in volume:
        secret = next((obj for obj in rendered.of_kind("Secret")
                       if obj["metadata"]["name"] == volume["secret"]["secretName"]), None)
        if secret is not None:
            files = {key: text.encode() for key, text in secret.get("stringData", {}).items()}
        else:
            files = {item["path"]: _pki()[os.path.basename(item["path"])]
                     for item in volume["secret"]["items"]}
        for path, content in files.items():
            with open(os.path.join(local, path), "wb") as handle:
                handle.write(content)
        return
    source = volume.get("configMap")
    config_map = rendered.config_map(source["name"]) if source else None
    if config_map is not None:
        for key, text in config_map["data"].items():
            with open(os.path.join(local, key), "w", encoding="utf-8") as handle:
                handle.write(text)
    elif volume["name"] != "tfserving-exporter-config":
        shutil.copytree(STANDIN_GOLDEN_DIR, local, dirs_exist_ok=True)


def _mounts(item: dict[str, Any], volume_dirs: dict[str, str]) -> dict[str, str]:
    return {mount["mountPath"]: volume_dirs[mount["name"]]
            for mount in item.get("volumeMounts", [])}


def materialize(rendered: Rendered, pod: dict[str, Any], root: str) -> dict[str, str]:
    """Write what the exporter container would see under ``root``: every volume the pod's
    exporter containers mount gets a directory of its own (``_fill_volume``), and the chart's
    init containers (they run the exporter image's python) run on those directories. Returns
    {container path: local path} for every mount of the exporter container."""
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    init = [item for item in pod["spec"].get("initContainers", [])
            if item["name"].startswith(EXPORTER_CONTAINER)]
    used = {mount["name"] for item in [container(pod, EXPORTER_CONTAINER), *init]
            for mount in item.get("volumeMounts", [])}
    volume_dirs = {name: os.path.join(root, name) for name in sorted(used)}
    for name, local in volume_dirs.items():
        _fill_volume(rendered, volumes[name], local)
    for item in init:
        command = item["command"]
        assert command[:2] == ["python", "-c"], command
        args = local_args([f"={arg}" for arg in command[3:]], _mounts(item, volume_dirs))
        subprocess.run([sys.executable, "-c", command[2], *(a[1:] for a in args)], check=True,
                       timeout=60)
    return _mounts(container(pod, EXPORTER_CONTAINER), volume_dirs)


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


def _web_config_copy(args: list[str], mapping: dict[str, str], root: str) -> list[str]:
    """The web config file names files by their container paths: give check-config a copy
    whose paths point at the materialized files."""
    result = []
    for arg in args:
        flag, sep, value = arg.partition("=")
        if flag == "--web.config.file":
            import yaml

            with open(value, encoding="utf-8") as handle:
                web = yaml.safe_load(handle) or {}
            tls = web.get("tls_server_config") or {}
            for key in ("cert_file", "key_file", "client_ca_file"):
                if key in tls:
                    [tls[key]] = [a[1:] for a in local_args(["=" + tls[key]], mapping)]
            value = os.path.join(root, "web-config.local.yaml")
            with open(value, "w", encoding="utf-8") as handle:
                yaml.safe_dump(web, handle)
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
        args = _web_config_copy(local_args(exporter["args"], mapping), mapping,
                                str(tmp_path / f"pod{index}"))
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
