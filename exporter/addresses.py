"""Addresses the exporter dials (gRPC, REST) or listens on, validated and normalised.

Each parser returns the normalised text or raises ``ValueError('invalid <kind> "<input>": why')``
so a config error can be shown to the user as is.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# RFC 1123 host names, plus "_" which Kubernetes and Docker service names sometimes carry.
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")

# gRPC name-resolver schemes whose targets are passed to grpcio untouched: it knows their
# grammar better than we do.
_GRPC_PASSTHROUGH_SCHEMES = ("dns:", "unix:")


def parse_grpc_address(value: str) -> str:
    """Validate a gRPC target: ``host:port``, ``[::1]:8500``, or ``dns:``/``unix:`` as is."""
    kind = "gRPC address"
    if value.startswith(_GRPC_PASSTHROUGH_SCHEMES):
        scheme, _, rest = value.partition(":")
        if not rest.strip("/"):
            raise _invalid(kind, value, f'nothing after "{scheme}:"')
        return value
    if "://" in value:
        raise _invalid(kind, value,
                       "expected host:port without a scheme (or dns:///host:port, unix:/path)")
    host, port = _split_host_port(kind, value)
    if not host:
        raise _invalid(kind, value, "missing host")
    return _join_host_port(host, port)


def parse_rest_address(value: str) -> str:
    """Validate a REST base URL; ``host:port`` gets ``http://``. Returns it without a trailing "/".

    The exporter appends TF Serving's own paths (``/v1/models/...``), so a base path would be
    silently dropped or doubled: it is rejected instead.
    """
    kind = "REST address"
    if "://" not in value:
        host, port = _split_host_port(kind, value)
        if not host:
            raise _invalid(kind, value, "missing host")
        return f"http://{_join_host_port(host, port)}"

    try:
        url = urlsplit(value)
    except ValueError:  # urlsplit's only complaint: an unbalanced "[" or "]" in the host
        raise _invalid(kind, value, 'unbalanced "[" or "]" around an IPv6 address') from None
    if url.scheme not in ("http", "https"):
        raise _invalid(kind, value, f'scheme must be http or https, got "{url.scheme}"')
    if "@" in url.netloc:
        raise _invalid(kind, value, "credentials in the URL are not supported")
    if url.path not in ("", "/"):
        raise _invalid(kind, value, f'must not have a path, got "{url.path}"')
    if url.query or url.fragment or value.endswith(("?", "#")):
        raise _invalid(kind, value, "must not have a query or fragment")
    netloc = url.netloc
    if not netloc:
        raise _invalid(kind, value, "missing host")
    # A URL may leave the port to its scheme (https://serving.example.com behind an ingress).
    if _has_port(netloc):
        host, port = _split_host_port(kind, value, netloc)
        hostport = _join_host_port(host, port)
    else:
        host = _check_host(kind, value, netloc[1:-1] if netloc.startswith("[") else netloc)
        hostport = f"[{host}]" if ":" in host else host
    if not host:
        raise _invalid(kind, value, "missing host")
    return f"{url.scheme}://{hostport}"


def parse_listen_address(value: str) -> str:
    """Validate ``[host]:port`` to listen on; an empty host (``:9850``) means all interfaces.

    Port 0 is allowed here (and only here): the OS picks a free port, which tests and
    ``demo`` rely on.
    """
    if value.isdigit():
        # A common slip: "9850" where Prometheus exporters write ":9850".
        raise _invalid("listen address", value,
                       f'missing ":" before the port (for example ":{value}")')
    host, port = _split_host_port("listen address", value, lowest_port=0)
    return _join_host_port(host, port)


def split_listen_address(value: str) -> tuple[str, int]:
    """``"[::1]:9850"`` -> ``("::1", 9850)``; ``":9850"`` -> ``("", 9850)`` (all interfaces)."""
    host, port = _split_host_port("listen address", parse_listen_address(value), lowest_port=0)
    return host, port


def _split_host_port(kind: str, value: str, hostport: str | None = None,
                     lowest_port: int = 1) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port``; ``value`` is what error messages quote."""
    text = value if hostport is None else hostport
    if not text:
        raise _invalid(kind, value, "empty")
    if any(ch.isspace() for ch in text):
        raise _invalid(kind, value, "must not contain spaces")
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0:
            raise _invalid(kind, value, 'missing "]" after IPv6 address')
        host, rest = text[1:closing], text[closing + 1:]
        if not rest.startswith(":"):
            raise _invalid(kind, value, "missing port (expected [host]:port)")
        port_text = rest[1:]
        _check_ipv6(kind, value, host)
    else:
        if ":" not in text:
            raise _invalid(kind, value, "missing port (expected host:port)")
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise _invalid(kind, value, "IPv6 addresses need brackets, as in [::1]:8500")
        if host:
            _check_host(kind, value, host)
    return host, _parse_port(kind, value, port_text, lowest_port)


def _parse_port(kind: str, value: str, text: str, lowest: int) -> int:
    if not text:
        raise _invalid(kind, value, "missing port")
    if not text.isdigit():
        raise _invalid(kind, value, f'port must be a number, got "{text}"')
    port = int(text)
    if not lowest <= port <= 65535:
        raise _invalid(kind, value, f"port must be between {lowest} and 65535, got {port}")
    return port


def _check_host(kind: str, value: str, host: str) -> str:
    if ":" in host:
        _check_ipv6(kind, value, host)
    elif not _HOSTNAME.fullmatch(host):
        raise _invalid(kind, value, f'invalid host "{host}"')
    return host


def _check_ipv6(kind: str, value: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _invalid(kind, value, f'invalid IPv6 address "{host}"') from None


def _has_port(netloc: str) -> bool:
    return netloc.rpartition("]")[2].count(":") == 1 if netloc.startswith("[") else ":" in netloc


def _join_host_port(host: str, port: int) -> str:
    # int() above already dropped leading zeros ("08500" -> 8500).
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _invalid(kind: str, value: str, reason: str) -> ValueError:
    return ValueError(f'invalid {kind} "{value}": {reason}')
