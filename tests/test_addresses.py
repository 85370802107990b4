import pytest

from exporter.addresses import (
    parse_grpc_address,
    parse_listen_address,
    parse_rest_address,
    split_listen_address,
)


@pytest.mark.parametrize("value, normalised", [
    ("localhost:8500", "localhost:8500"),
    ("127.0.0.1:8500", "127.0.0.1:8500"),
    ("tfserving.default.svc.cluster.local:8500", "tfserving.default.svc.cluster.local:8500"),
    ("[::1]:8500", "[::1]:8500"),
    ("localhost:08500", "localhost:8500"),
    ("localhost:1", "localhost:1"),
    ("localhost:65535", "localhost:65535"),
    ("dns:///tfserving:8500", "dns:///tfserving:8500"),
    ("unix:/run/tfserving.sock", "unix:/run/tfserving.sock"),
    ("unix:///run/tfserving.sock", "unix:///run/tfserving.sock"),
])
def test_accepts_grpc_addresses(value, normalised):
    assert parse_grpc_address(value) == normalised


@pytest.mark.parametrize("value, reason", [
    ("localhost", "missing port (expected host:port)"),
    (":8500", "missing host"),
    ("localhost:", "missing port"),
    ("localhost:0", "port must be between 1 and 65535, got 0"),
    ("localhost:65536", "port must be between 1 and 65535, got 65536"),
    ("localhost:http", 'port must be a number, got "http"'),
    ("::1:8500", "IPv6 addresses need brackets, as in [::1]:8500"),
    ("[::1]", "missing port (expected [host]:port)"),
    ("[::1:8500", 'missing "]" after IPv6 address'),
    ("[nope]:8500", 'invalid IPv6 address "nope"'),
    ("-bad-:8500", 'invalid host "-bad-"'),
    ("local host:8500", "must not contain spaces"),
    ("http://localhost:8500", "expected host:port without a scheme (or dns:///host:port, unix:/path)"),
    ("dns:", 'nothing after "dns:"'),
    ("unix:", 'nothing after "unix:"'),
    ("", "empty"),
])
def test_rejects_invalid_grpc_addresses(value, reason):
    with pytest.raises(ValueError) as caught:
        parse_grpc_address(value)
    assert str(caught.value) == f'invalid gRPC address "{value}": {reason}'


@pytest.mark.parametrize("value, normalised", [
    ("http://localhost:8501", "http://localhost:8501"),
    ("http://localhost:8501/", "http://localhost:8501"),
    ("https://tfserving:443", "https://tfserving:443"),
    ("https://serving.example.com", "https://serving.example.com"),
    ("localhost:8501", "http://localhost:8501"),
    ("[::1]:8501", "http://[::1]:8501"),
    ("http://[::1]:8501", "http://[::1]:8501"),
    ("http://[::1]", "http://[::1]"),
    ("http://localhost:08501", "http://localhost:8501"),
])
def test_accepts_rest_addresses(value, normalised):
    assert parse_rest_address(value) == normalised


@pytest.mark.parametrize("value, reason", [
    ("localhost", "missing port (expected host:port)"),
    ("http://localhost:8501/v1/models", 'must not have a path, got "/v1/models"'),
    ("http://localhost:8501?x=1", "must not have a query or fragment"),
    ("http://localhost:8501#top", "must not have a query or fragment"),
    ("ftp://localhost:8501", 'scheme must be http or https, got "ftp"'),
    ("http://user:pw@localhost:8501", "credentials in the URL are not supported"),
    ("http://", "missing host"),
    ("http://:8501", "missing host"),
    ("http://localhost:0", "port must be between 1 and 65535, got 0"),
    ("http://localhost:x", 'port must be a number, got "x"'),
    ("http://[::1", 'unbalanced "[" or "]" around an IPv6 address'),
    ("http://bad host:8501", "must not contain spaces"),
])
def test_rejects_invalid_rest_addresses(value, reason):
    with pytest.raises(ValueError) as caught:
        parse_rest_address(value)
    assert str(caught.value) == f'invalid REST address "{value}": {reason}'


@pytest.mark.parametrize("value, normalised, host, port", [
    (":9850", ":9850", "", 9850),
    ("0.0.0.0:9850", "0.0.0.0:9850", "0.0.0.0", 9850),
    ("127.0.0.1:1", "127.0.0.1:1", "127.0.0.1", 1),
    ("localhost:9850", "localhost:9850", "localhost", 9850),
    ("[::]:9850", "[::]:9850", "::", 9850),
    ("[::1]:09850", "[::1]:9850", "::1", 9850),
    ("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1", 0),  # the OS picks a free port
])
def test_accepts_listen_addresses(value, normalised, host, port):
    assert parse_listen_address(value) == normalised
    assert split_listen_address(value) == (host, port)


@pytest.mark.parametrize("value, reason", [
    ("9850", 'missing ":" before the port (for example ":9850")'),
    ("localhost", "missing port (expected host:port)"),
    (":", "missing port"),
    (":70000", "port must be between 0 and 65535, got 70000"),
    (":-1", 'port must be a number, got "-1"'),
    ("::9850", "IPv6 addresses need brackets, as in [::1]:8500"),
    ("", "empty"),
])
def test_rejects_invalid_listen_addresses(value, reason):
    with pytest.raises(ValueError) as caught:
        parse_listen_address(value)
    assert str(caught.value) == f'invalid listen address "{value}": {reason}'
    with pytest.raises(ValueError):
        split_listen_address(value)
