"""The chart's TLS values: the exporter's web config (exporter.web: HTTPS, client certificates,
basic auth) and gRPC TLS to TF Serving (exporter.tfserving.grpcTls). What the rendered pods
hold is loaded by the exporter's own code; ci/tls-values.yaml and ci/fleet-tls-values.yaml also
go through check-config with every other ci file (test_chart_exporter_args.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helm.rendering import (CHART_DIR, EXPORTER_CONTAINER, Rendered, container,
                                  example_chart, exporter_pods, render, render_error,
                                  require_module, values_file)
from tests.helm.test_chart_exporter_args import (PASSWORD, _web_config_copy, check_config,
                                                 local_args, materialize)

TLS_VALUES = os.path.join(CHART_DIR, "ci", "tls-values.yaml")
FLEET_TLS_VALUES = os.path.join(CHART_DIR, "ci", "fleet-tls-values.yaml")
SECRETS = "/var/run/secrets/tfserving-exporter"
HASH = "$2b$10$NMNswUv.allvvy0/6v20OOCMeaEptew6ouZ2FchsF8Ctbc0q7FWuC"
SCRAPE_CLIENT = {
    "tlsConfig": {"ca": {"secret": {"name": "web-tls", "key": "ca.crt"}},
                  "serverName": "tfs-tfserving-exporter.ml.svc"},
    "basicAuth": {"username": {"name": "creds", "key": "username"},
                  "password": {"name": "creds", "key": "password"}}}


def _exporter(rendered: Rendered) -> dict[str, Any]:
    [pod] = exporter_pods(rendered)
    return container(pod, EXPORTER_CONTAINER)


def _loaded(rendered: Rendered, tmp_path):
    """The exporter's Config and WebSettings as the rendered pod gives them."""
    from exporter.cli import build_parser, overrides_from_args
    from exporter.config import load_config
    from exporter.webconfig import load_web_config

    [pod] = exporter_pods(rendered)
    mapping = materialize(rendered, pod, str(tmp_path))
    args = _web_config_copy(local_args(container(pod, EXPORTER_CONTAINER)["args"], mapping),
                            mapping, str(tmp_path))
    parsed = build_parser().parse_args(["check-config", *args])
    config = load_config(parsed.config_file, overrides_from_args(parsed))
    return config, load_web_config(config.web.config_file), mapping


def test_serving_tls_values_reach_the_exporter(tmp_path):
    config, web, mapping = _loaded(render(values_file(TLS_VALUES)), tmp_path)
    grpc = config.tfserving.grpc_tls
    assert grpc.enabled and grpc.server_name == "tfs-tfserving-exporter.ml.svc"
    tls_dir = mapping[f"{SECRETS}/grpc-tls"]
    assert (grpc.ca_file, grpc.cert_file, grpc.key_file) == tuple(
        os.path.join(tls_dir, name) for name in ("ca.crt", "tls.crt", "tls.key"))
    assert web.tls.client_auth_type == "VerifyClientCertIfGiven"
    assert web.tls.min_version == "TLS13"
    assert web.tls.cert_file == os.path.join(mapping[f"{SECRETS}/web-tls"], "tls.crt")
    assert web.tls.client_ca_file == os.path.join(mapping[f"{SECRETS}/web-client-ca"], "ca.crt")
    # The users came from the Secret, merged in by the init container.
    bcrypt = require_module("bcrypt")
    assert list(web.users) == ["prometheus"]
    assert bcrypt.checkpw(PASSWORD.encode(), web.users["prometheus"])


def test_fleet_tls_values_reach_the_exporter(tmp_path):
    rendered = render(values_file(FLEET_TLS_VALUES))
    config, web, mapping = _loaded(rendered, tmp_path)
    assert config.fleet_only
    grpc = config.tfserving.grpc_tls
    assert grpc.enabled and grpc.ca_file.endswith("/ca.crt") and not grpc.cert_file
    assert web.tls.client_auth_type == "RequireAndVerifyClientCert"
    # No clientCASecretName: the server Secret's ca.crt verifies clients.
    assert web.tls.client_ca_file == os.path.join(mapping[f"{SECRETS}/web-tls"], "ca.crt")
    assert web.users == {"prometheus": HASH.encode()}
    [secret] = rendered.of_kind("Secret")
    assert secret["metadata"]["name"] == "tfs-tfserving-exporter-web-config"
    [pod] = exporter_pods(rendered)
    assert not pod["spec"].get("initContainers")


def test_an_unusable_certificate_fails_check_config(tmp_path, monkeypatch):
    from tests.helm import test_chart_exporter_args as args_module

    files = dict(args_module._pki())
    files["tls.key"] = b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    monkeypatch.setattr(args_module, "_pki", lambda: files)
    [result] = check_config(render(values_file(TLS_VALUES)), tmp_path)
    assert result.returncode == 2, result.stdout
    assert "invalid web config file" in result.stderr, result.stderr


def test_defaults_have_no_web_config_and_no_tls_files():
    rendered = render({"serviceMonitor": {"enabled": True}})
    exporter = _exporter(rendered)
    assert not any(arg.startswith(("--web.config.file", "--tfserving.grpc-tls"))
                   for arg in exporter["args"])
    assert not any(m["mountPath"].startswith(SECRETS) for m in exporter["volumeMounts"])
    assert exporter["livenessProbe"]["httpGet"].get("scheme") is None
    assert not rendered.of_kind("Secret")
    assert "web-config.yaml" not in rendered.config_map("tfs-tfserving-exporter")["data"]
    [endpoint] = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint


def test_tls_only_renders_the_web_config_into_the_configmap():
    rendered = render({"exporter": {"web": {"tls": {"enabled": True, "secretName": "web-tls"}}}})
    exporter = _exporter(rendered)
    assert "--web.config.file=/etc/tfserving-exporter/web-config.yaml" in exporter["args"]
    text = rendered.config_map("tfs-tfserving-exporter")["data"]["web-config.yaml"]
    assert "client_auth_type: NoClientCert" in text and "client_ca_file" not in text
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"]["scheme"] == "HTTPS"
    [pod] = exporter_pods(rendered)
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "tfserving-exporter-web-tls"]
    assert [item["key"] for item in volume["secret"]["items"]] == ["tls.crt", "tls.key"]


def test_required_client_certificates_turn_http_probes_into_tcp_probes():
    exporter = _exporter(render(values_file(FLEET_TLS_VALUES)))
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["tcpSocket"] == {"port": "metrics"}
        assert "httpGet" not in exporter[probe]


def test_a_probe_scheme_given_is_kept():
    exporter = _exporter(render({"exporter": {
        "web": {"tls": {"enabled": True, "secretName": "web-tls"}},
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "metrics",
                                       "scheme": "HTTP"}}}}))
    assert exporter["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert exporter["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_monitors_scrape_over_https_with_basic_auth():
    rendered = render(values_file(TLS_VALUES))
    [endpoint] = rendered.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "tfs-tfserving-exporter.ml.svc"
    assert endpoint["basicAuth"]["password"] == {"name": "prometheus-scrape-credentials",
                                                 "key": "password"}
    fleet = render(values_file(FLEET_TLS_VALUES))
    scrape = fleet.one("ScrapeConfig")["spec"]
    assert scrape["scheme"] == "HTTPS"  # the ScrapeConfig CRD's enum is upper case
    assert scrape["tlsConfig"]["keySecret"] == {"name": "prometheus-client-tls", "key": "tls.key"}
    assert "basicAuth" in scrape
    [pod_endpoint] = fleet.one("PodMonitor")["spec"]["podMetricsEndpoints"]
    assert pod_endpoint["scheme"] == "https" and pod_endpoint["tlsConfig"] == scrape["tlsConfig"]


def test_basic_auth_from_a_secret_runs_the_merge_in_an_init_container():
    rendered = render(values_file(TLS_VALUES))
    [pod] = exporter_pods(rendered)
    [init] = pod["spec"]["initContainers"]
    exporter = container(pod, EXPORTER_CONTAINER)
    assert init["image"] == exporter["image"]
    assert init["securityContext"] == exporter["securityContext"]
    assert init["command"][-1] == "/run/tfserving-exporter/web/web-config.yaml"
    assert "--web.config.file=/run/tfserving-exporter/web/web-config.yaml" in exporter["args"]
    data = rendered.config_map("tfs-tfserving-exporter")["data"]
    assert "web-config-base.yaml" in data and "web-config.yaml" not in data


def test_init_containers_of_the_user_come_first():
    values = values_file(TLS_VALUES)
    values["tfserving"]["initContainers"] = [{"name": "fetch-models", "image": "busybox"}]
    [pod] = exporter_pods(render(values))
    assert [c["name"] for c in pod["spec"]["initContainers"]] == [
        "fetch-models", "tfserving-exporter-web-config"]


def test_web_config_changes_roll_the_pods():
    def checksum(users):
        [pod] = exporter_pods(render({"exporter": {"web": {"basicAuth": {"users": users}}}}))
        return pod["metadata"]["annotations"]["checksum/config"]

    assert checksum({"a": HASH}) != checksum({"b": HASH})


def test_sidecar_only_example_with_tls_passes_check_config(tmp_path):
    values = {"tfserving-exporter": {"exporter": {
        "tfserving": {"grpcTls": {"enabled": True, "secretName": "grpc-ca"}},
        "web": {"tls": {"enabled": True, "secretName": "web-tls"},
                "basicAuth": {"users": {"prometheus": HASH}},
                "scrapeClient": SCRAPE_CLIENT}}}}
    rendered = render(values, chart_dir=example_chart(tmp_path / "chart"))
    [result] = check_config(rendered, tmp_path / "files")
    assert result.returncode == 0, result.stderr
    args = _exporter(rendered)["args"]
    assert f"--tfserving.grpc-tls.ca-file={SECRETS}/grpc-tls/ca.crt" in args
    assert f"--web.config.file={SECRETS}/web-config/web-config.yaml" in args


@pytest.mark.parametrize("values, message", [
    ({"exporter": {"web": {"tls": {"enabled": True}}}},
     "exporter.web.tls.enabled needs exporter.web.tls.secretName"),
    ({"exporter": {"web": {"tls": {"clientAuthType": "VerifyClientCertIfGiven"}}}},
     "apply only with exporter.web.tls.enabled=true"),
    ({"exporter": {"web": {"basicAuth": {"users": {"a": HASH}, "secretName": "users"}}}},
     "set users or secretName, not both"),
    ({"exporter": {"tfserving": {"grpcTls": {"enabled": True, "clientCertificate": True}}}},
     "clientCertificate needs exporter.tfserving.grpcTls.secretName"),
    ({"exporter": {"tfserving": {"grpcTls": {"secretName": "grpc"}}}},
     "apply only with exporter.tfserving.grpcTls.enabled=true"),
    ({"serviceMonitor": {"enabled": True},
      "exporter": {"web": {"tls": {"enabled": True, "secretName": "web-tls"}}}},
     "the ServiceMonitor (serviceMonitor.enabled) scrapes over HTTPS and needs "
     "exporter.web.scrapeClient.tlsConfig"),
    ({"podMonitor": {"enabled": True},
      "exporter": {"web": {"basicAuth": {"users": {"a": HASH}}}}},
     "the PodMonitor (podMonitor.enabled) needs exporter.web.scrapeClient.basicAuth"),
    ({"serviceMonitor": {"enabled": True},
      "exporter": {"web": {"tls": {"enabled": True, "secretName": "web-tls",
                                   "clientAuthType": "RequireAndVerifyClientCert"},
                           "scrapeClient": {"tlsConfig": SCRAPE_CLIENT["tlsConfig"]}}}},
     "needs a client certificate, exporter.web.scrapeClient.tlsConfig.cert and keySecret"),
    ({"serviceMonitor": {"enabled": True},
      "exporter": {"web": {"scrapeClient": {"tlsConfig": SCRAPE_CLIENT["tlsConfig"]}}}},
     "exporter.web.scrapeClient.tlsConfig is set but the exporter serves plain HTTP"),
    ({"serviceMonitor": {"enabled": True},
      "exporter": {"web": {"scrapeClient": {"basicAuth": SCRAPE_CLIENT["basicAuth"]}}}},
     "exporter.web.scrapeClient.basicAuth is set but the exporter has no basic auth users"),
], ids=["tls-without-secret", "client-auth-without-tls", "users-twice",
        "client-cert-without-secret", "grpc-secret-without-tls", "monitor-without-tls-config",
        "monitor-without-basic-auth", "mtls-monitor-without-cert", "tls-config-without-tls",
        "basic-auth-without-users"])
def test_inconsistent_tls_values_are_refused(values, message):
    assert message in render_error(values)


@pytest.mark.parametrize("values, message", [
    ({"exporter": {"web": {"tls": {"clientAuthType": "RequireClientCert"}}}},
     "clientAuthType"),
    ({"exporter": {"web": {"tls": {"minVersion": "TLS11"}}}}, "minVersion"),
    ({"exporter": {"web": {"basicAuth": {"users": {"a": "plain-text"}}}}}, "users"),
    ({"exporter": {"web": {"tls": {"enable": True}}}}, "enable"),
    ({"exporter": {"tfserving": {"grpcTls": {"caFile": "/ca.crt"}}}}, "caFile"),
    ({"exporter": {"web": {"scrapeClient": {"tlsConfig": {"caFile": "/ca.crt"}}}}}, "caFile"),
    ({"exporter": {"web": {"scrapeClient": {"basicAuth": {"username": {"name": "x"}}}}}},
     "key"),
], ids=["client-auth-type", "min-version", "plain-password", "typo", "grpc-typo",
        "file-based-tls-config", "selector-without-key"])
def test_the_schema_refuses_bad_tls_values(values, message):
    assert message in render_error(values)
