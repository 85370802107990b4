"""The query of one ``/probe`` request, checked: which server, over what, with which module.

Every problem is a ``ProbeRefused`` carrying the HTTP status and a message naming the
parameter, raised before anything connects anywhere.
"""

from __future__ import annotations

import functools
import socket
import urllib.parse
from dataclasses import dataclass

from exporter.addresses import parse_grpc_address, parse_rest_address
from exporter.config import DEFAULT_MODULE, Config
from exporter.fleet.allow_list import AllowList, ip_address
from exporter.suggest import suggestion

PARAMETERS = ("target", "rest_target", "module", "model")
# Parameters a query may repeat; the others are given once.
_REPEATABLE = frozenset({"model"})


class ProbeRefused(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bad(message: str) -> ProbeRefused:
    return ProbeRefused("400 Bad Request", message)


@dataclass(frozen=True)
class ProbeRequest:
    module_name: str
    module: Config
    grpc_address: str  # normalised host:port
    rest_address: str  # normalised base URL, "" for none
    models: tuple[str, ...]  # from the query, sorted, in addition to the module's

    @property
    def grpc_target(self) -> str:
        """What the gRPC channel is given. Always through the DNS resolver (which takes IP
        literals without a lookup): a bare ``name:port`` whose name is a resolver scheme
        (``unix-abstract:8500``, ``xds:8500``) would otherwise be read by grpcio as that
        scheme's target, which the allow-list never judged."""
        return f"dns:///{self.grpc_address}"

    @property
    def key(self) -> tuple:
        """What identifies a tracked target: the same server read the same way."""
        return (self.module_name, self.grpc_address, self.rest_address, self.models)


def parse_probe_query(query: str, config: Config) -> ProbeRequest:
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                                       errors="strict", max_num_fields=64)
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(f"invalid query string: {err}") from None
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in PARAMETERS:
            raise _bad(f'unknown parameter "{name}"'
                       f"{suggestion(name, PARAMETERS, 'parameters of /probe')}")
        values.setdefault(name, []).append(value)
    for name, given in values.items():
        if len(given) > 1 and name not in _REPEATABLE:
            raise _bad(f"{name}: given {len(given)} times, at most once")

    module_name = values.get("module", [DEFAULT_MODULE])[0]
    module = config.module(module_name)
    if module is None:
        known = sorted(set(config.modules) | {DEFAULT_MODULE})
        raise _bad(f'module: unknown module "{module_name}"'
                   f"{suggestion(module_name, known, 'modules of fleet.modules')}")

    if not values.get("target", [""])[0]:
        raise _bad("target: missing; give the TF Serving gRPC address as "
                   "target=HOST:PORT")
    grpc_address, grpc_host = _grpc_target(values["target"][0])
    rest_address, rest_host = _rest_target(values.get("rest_target", [""])[0], grpc_host,
                                           module)
    if not rest_address:
        over_rest = _rest_readers(module)
        if over_rest:
            raise _bad(f"rest_target: needed: {' and '.join(over_rest)} of module "
                       f'"{module_name}" use REST, and its probe.rest_port is 0')
    allowed = _allow_list(module.probe.allowed_targets)
    for name, host in (("target", grpc_host), ("rest_target", rest_host)):
        if host is not None:
            _unambiguous(name, host)
        if host is not None and not allowed.allows(host):
            why = ("probe.allowed_targets is empty: no target is allowed until it is set"
                   if not allowed else f'host "{host}" matches no pattern of '
                   "probe.allowed_targets")
            raise ProbeRefused("403 Forbidden", f"{name}: not allowed: {why}")
    models = _models(values.get("model", []), module)
    return ProbeRequest(module_name, module, grpc_address, rest_address, models)


@functools.lru_cache(maxsize=64)  # a few per configuration: compiled once, not per probe
def _allow_list(patterns: tuple[str, ...]) -> AllowList:
    return AllowList(patterns)


def _grpc_target(text: str) -> tuple[str, str]:
    # Only host:port: a unix socket or a resolver scheme would reach what the allow-list
    # cannot judge.
    if text.startswith(("unix:", "dns:", "ipv4:", "ipv6:", "vsock:")) or "/" in text:
        raise _bad(f'target: expected HOST:PORT (TF Serving\'s gRPC port), got "{text}"')
    try:
        address = parse_grpc_address(text)
    except ValueError as err:
        raise _bad(f"target: {err}") from None
    return address, _host_of(address)


def _rest_target(text: str, grpc_host: str, module: Config) -> tuple[str, str | None]:
    if text:
        try:
            address = parse_rest_address(text)
        except ValueError as err:
            raise _bad(f"rest_target: {err}") from None
        return address, urllib.parse.urlsplit(address).hostname or ""
    port = module.probe.rest_port
    if not port:
        return "", None
    host = f"[{grpc_host}]" if ":" in grpc_host else grpc_host
    return f"{module.probe.rest_scheme}://{host}:{port}", grpc_host


def _rest_readers(module: Config) -> list[str]:
    """What of ``module`` cannot run without REST (the native collector is simply off)."""
    collectors, canary = module.collectors, module.canary
    readers = [f"collectors.{name}" for name, collector in
               (("status", collectors.status), ("metadata", collectors.metadata))
               if collector.enabled and collector.protocol == "rest"]
    if canary.enabled and (canary.golden_files or canary.golden_dir) \
            and canary.protocol == "rest":
        readers.append("canary")
    return readers


def _host_of(hostport: str) -> str:
    host = hostport.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def _unambiguous(name: str, host: str) -> None:
    """Refuse a host that the allow-list and the resolver that dials it could read as two
    different addresses."""
    if "%" in host:
        # grpcio percent-decodes an IPv6 zone id after the check, and can dial another address.
        raise _bad(f'{name}: IPv6 zone ids ("%") are not accepted, got "{host}"')
    if ip_address(host) is None:
        try:
            socket.inet_aton(host)
        except OSError:
            return
        # 0x7f000001, 0177.1, 127.1: a name to the allow-list, 127.0.0.1 to getaddrinfo.
        raise _bad(f'{name}: "{host}" is an IPv4 address in a short, octal or hex form; '
                   "write it as four decimal numbers")


def _models(given: list[str], module: Config) -> tuple[str, ...]:
    if not given:
        return ()
    if not module.probe.model_params:
        raise _bad("model: this module takes no model parameters (probe.model_params is "
                   "false); its models come from its settings")
    names: set[str] = set()
    for value in given:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            # Model names end up in TF Serving URLs (/v1/models/<name>:predict).
            if "/" in name or ":" in name or not name.isprintable():
                raise _bad(f'model: invalid model name "{name}": no "/", ":" or control '
                           "characters")
            names.add(name)
    if len(names) > module.limits.max_models:
        raise _bad(f"model: {len(names)} names, more than limits.max_models "
                   f"({module.limits.max_models})")
    return tuple(sorted(names))
