"""TLS, mutual TLS and basic auth on the exporter's own endpoint (--web.config.file), with
certificates generated at test time; secrets never shown."""

from __future__ import annotations

import datetime
import json
import ipaddress
import logging
import ssl

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.config import load_config
from exporter.runtime import start_exporter
from exporter.webconfig import WebConfigError, load_web_config
from tests.test_cli import run_cli


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, key, cert):
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _cert(subject_key, name, issuer_key=None, issuer_name=None, ca=False, san_ip=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                          issuer_name or name)]))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False)
    return builder.sign(issuer_key or subject_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all fresh."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert(ca_key, "test-ca", ca=True)
    _write(root / "ca", ca_key, ca)
    server_key = _key()
    _write(root / "server", server_key,
           _cert(server_key, "exporter", ca_key, "test-ca", san_ip="127.0.0.1"))
    client_key = _key()
    _write(root / "client", client_key, _cert(client_key, "prometheus", ca_key, "test-ca"))
    return root


PASSWORD = "s3cret-scrape"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # low cost: tests only


@pytest.fixture
def secured_exporter(simulator, tmp_path):
    started = []

    def start(web_yaml: str):
        web_file = tmp_path / "web.yaml"
        web_file.write_text(web_yaml)
        config = load_config(None, {
            "tfserving.grpc_address": f"127.0.0.1:{simulator.grpc_port}",
            "tfserving.rest_address": f"http://127.0.0.1:{simulator.rest_port}",
            "models": ["half_plus_two"], "web.listen_address": "127.0.0.1:0",
            "web.config_file": str(web_file)})
        running = start_exporter(config)
        started.append(running)
        return running.port

    yield start
    for running in started:
        running.stop()


def test_tls_serves_https_and_refuses_plain_http(secured_exporter, pki):
    port = secured_exporter(f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
                            f"  key_file: {pki}/server.key\n")
    reply = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(pki / "ca.crt"),
                         timeout=10)
    assert reply.status_code == 200 and "tfserving_up" in reply.text
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    # The server keeps serving after a failed handshake.
    assert requests.get(f"https://127.0.0.1:{port}/-/healthy", verify=str(pki / "ca.crt"),
                        timeout=10).status_code == 200


def test_mutual_tls_requires_a_client_certificate(secured_exporter, pki):
    port = secured_exporter(
        f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki}/ca.crt\n")
    url = f"https://127.0.0.1:{port}/metrics"
    with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
        requests.get(url, verify=str(pki / "ca.crt"), timeout=10)
    reply = requests.get(url, verify=str(pki / "ca.crt"),
                         cert=(str(pki / "client.crt"), str(pki / "client.key")), timeout=10)
    assert reply.status_code == 200


def test_basic_auth_protects_everything_but_health(secured_exporter, caplog):
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        port = secured_exporter(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
        base = f"http://127.0.0.1:{port}"
        denied = requests.get(base + "/metrics", timeout=10)
        assert denied.status_code == 401
        assert denied.headers["WWW-Authenticate"].startswith('Basic realm="tfserving-exporter"')
        assert requests.get(base + "/metrics", auth=("prometheus", "wrong"),
                            timeout=10).status_code == 401
        assert requests.get(base + "/metrics", auth=("nobody", PASSWORD),
                            timeout=10).status_code == 401
        for _ in range(3):  # remembered after the first bcrypt check
            assert requests.get(base + "/metrics", auth=("prometheus", PASSWORD),
                                timeout=10).status_code == 200
        assert requests.get(base + "/-/healthy", timeout=10).status_code == 200
        assert requests.get(base + "/-/ready", timeout=10).status_code == 200
        assert requests.post(base + "/-/reload", timeout=10).status_code == 401
        landing = requests.get(base + "/", auth=("prometheus", PASSWORD), timeout=10).text
    assert "basic auth (1 users)" in landing
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for secret in (HASH, PASSWORD):
        assert secret not in landing and secret not in logged


@pytest.mark.parametrize("content, problem", [
    ("tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
     'tls_server_config.cert_file: cannot read "/nope.crt"'),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: Sometimes\n", "client_auth_type: must be one of"),
    ("tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n", "client_ca_file: expected a file path"),
    ("tls_server_config:\n  cert_file: {pki}/ca.crt\n  key_file: {pki}/server.key\n",
     "certificate or key unusable"),
    ("basic_auth_users:\n  alice: plaintext-password\n",
     "basic_auth_users.alice: expected a bcrypt hash"),
    ("tls_config: {{}}\n", "tls_config: unknown key"),
])
def test_bad_web_config_files_name_the_problem_without_echoing_secrets(tmp_path, pki, content,
                                                                       problem):
    path = tmp_path / "web.yaml"
    path.write_text(content.format(pki=pki))
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    assert problem in str(caught.value)
    assert "plaintext-password" not in str(caught.value)
    result = run_cli("check-config", "--model=m", f"--web.config.file={path}")
    assert result.returncode == 2 and problem in result.stderr


def test_tls_context_defaults_to_tls12_or_newer(pki, tmp_path):
    path = tmp_path / "web.yaml"
    path.write_text(f"tls_server_config:\n  cert_file: {pki}/server.crt\n"
                    f"  key_file: {pki}/server.key\n  min_version: TLS13\n")
    from exporter.webconfig import ssl_context
    assert ssl_context(load_web_config(str(path)).tls).minimum_version == ssl.TLSVersion.TLSv1_3


# --- TLS and mutual TLS from the exporter to TF Serving's gRPC port -------------------------

def _ssl_config(tmp_path, pki, client_verify: bool) -> str:
    def pem(name):
        return json.dumps((pki / name).read_text())  # text-proto strings escape like JSON
    lines = [f"server_key: {pem('server.key')}", f"server_cert: {pem('server.crt')}"]
    if client_verify:
        lines += [f"custom_ca: {pem('ca.crt')}", "client_verify: true"]
    path = tmp_path / "ssl.config"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def tls_simulator(tmp_path, pki, request):
    from tfserving_simulator.demo_files import write_demo_files
    from tests.conftest import SimulatorHandle

    handle = SimulatorHandle(write_demo_files(str(tmp_path / "demo")),
                             ssl_config_file=_ssl_config(tmp_path, pki, request.param)).start()
    yield handle
    handle.stop()


def _grpc_up(simulator, **tls) -> float:
    from tests.helpers import sample_value

    overrides = {"tfserving.grpc_address": f"127.0.0.1:{simulator.grpc_port}",
                 "tfserving.rest_address": f"http://127.0.0.1:{simulator.rest_port}",
                 "models": ["half_plus_two"], "web.listen_address": "127.0.0.1:0"}
    overrides.update({f"tfserving.grpc_tls.{k}": v for k, v in tls.items()})
    running = start_exporter(load_config(None, overrides))
    try:
        text = requests.get(f"http://127.0.0.1:{running.port}/metrics", timeout=15,
                            headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}).text
        return (sample_value(text, "tfserving_up", protocol="grpc"),
                sample_value(text, "tfserving_model_serving_version", model="half_plus_two"))
    finally:
        running.stop()


@pytest.mark.parametrize("tls_simulator", [False], indirect=True)
def test_grpc_tls_to_tfserving(tls_simulator, pki):
    assert _grpc_up(tls_simulator, enabled=True, ca_file=str(pki / "ca.crt")) == (1, 123)
    # Plaintext to a TLS port, or TLS without trusting its CA: not reachable, never hanging.
    assert _grpc_up(tls_simulator) == (0, None)
    assert _grpc_up(tls_simulator, enabled=True) == (0, None)


@pytest.mark.parametrize("tls_simulator", [True], indirect=True)
def test_grpc_mutual_tls_to_tfserving(tls_simulator, pki):
    assert _grpc_up(tls_simulator, enabled=True, ca_file=str(pki / "ca.crt")) == (0, None)
    assert _grpc_up(tls_simulator, enabled=True, ca_file=str(pki / "ca.crt"),
                    cert_file=str(pki / "client.crt"),
                    key_file=str(pki / "client.key")) == (1, 123)


def test_grpc_client_certificate_needs_its_key(tmp_path, pki):
    from exporter.config import ConfigError
    with pytest.raises(ConfigError, match="tfserving.grpc_tls.key_file: needed with cert_file"):
        load_config(None, {"tfserving.grpc_tls.enabled": True,
                           "tfserving.grpc_tls.cert_file": str(pki / "client.crt")})
