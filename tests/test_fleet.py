"""Fleet mode: /probe?target=... against real simulators, and the settings behind it.

An exporter with no TF Serving of its own serves /probe for any server its allow-list admits;
each probe carries that server's families only. The end-to-end run with a real Prometheus
(file_sd, relabelling, alerts) is tests/test_fleet_prometheus.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import pytest
import requests

from exporter.config import ConfigError, load_config
from tests.conftest import SimulatorHandle
from tests.helpers import problems_raised, sample_value, wait_until
from tests.test_web_security import HASH, PASSWORD
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

FLEET = {"tfserving.grpc_address": "", "tfserving.rest_address": "",
         "probe.allowed_targets": ["127.0.0.1/32"], "probe.rest_port": 0}


@pytest.fixture
def fleet_exporter(start_exporter_with):
    def start(**overrides):
        return start_exporter_with({**FLEET, **{key.replace("__", "."): value
                                                for key, value in overrides.items()}})
    return start


def probe_query(sim: SimulatorHandle, **extra: str) -> dict:
    return {"target": f"127.0.0.1:{sim.grpc_port}",
            "rest_target": f"http://127.0.0.1:{sim.rest_port}", **extra}


def probe(exporter, params, timeout: float = 15, **kwargs) -> requests.Response:
    return exporter.get("/probe", params=params, timeout=timeout, **kwargs)


class Listener:
    """A TCP port that only counts who connects to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _ = self.socket.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1

    def close(self) -> None:
        self.socket.close()


# --- the probe's answer ----------------------------------------------------------------------

def test_a_fleet_exporter_probes_the_server_named_by_the_target(simulators, fleet_exporter):
    first, second = simulators(), simulators()
    exporter = fleet_exporter(models=["half_plus_two"])

    own = exporter.metrics()
    assert "tfserving_up{" not in own  # no TF Serving of its own
    assert "process_resident_memory_bytes" in own

    for sim in (first, second):
        reply = probe(exporter, probe_query(sim))
        assert reply.status_code == 200, reply.text
        text = reply.text
        assert sample_value(text, "tfserving_up", protocol="grpc") == 1
        assert sample_value(text, "tfserving_up", protocol="rest") == 1
        assert sample_value(text, "tfserving_exporter_collector_success", collector="native") == 1
        assert sample_value(text, "tfserving_model_available_versions",
                            model="half_plus_two") is not None
        # This target's own calls and drops; not the exporter's process.
        assert "tfserving_probe_duration_seconds_count" in text
        assert 'tfserving_exporter_dropped_total{kind="model"}' in text
        for absent in ("process_resident_memory_bytes", "tfserving_exporter_build_info",
                       "tfserving_exporter_scrape_errors_total", 'kind="target"',
                       "tfserving_exporter_fleet_targets"):
            assert absent not in text

    assert sample_value(exporter.metrics(), "tfserving_exporter_fleet_targets") == 2


def test_model_parameters_add_models_and_the_rest_port_derives_rest(simulators,
                                                                   fleet_exporter):
    sim = simulators()
    exporter = fleet_exporter(probe__rest_port=sim.rest_port)
    text = probe(exporter, {"target": f"127.0.0.1:{sim.grpc_port}",
                            "model": ["half_plus_two,image_classifier", "half_plus_two"]}).text
    assert sample_value(text, "tfserving_up", protocol="rest") == 1  # 127.0.0.1:<rest_port>
    for model in ("half_plus_two", "image_classifier"):
        assert sample_value(text, "tfserving_model_available_versions", model=model) == 1


def test_modules_select_settings_and_inherit_the_rest(simulators, fleet_exporter, tmp_path):
    sim = simulators()
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models: [half_plus_two]\n"
        "fleet:\n"
        "  modules:\n"
        "    grpc_only:\n"
        "      collectors: {native: {enabled: false}, metadata: {enabled: false}}\n"
        "      probe: {rest_port: 0}\n"
        "    pinned:\n"
        "      models: [image_classifier]\n"
        "      probe: {model_params: false}\n")
    running_config = load_config(str(config), {**FLEET, "web.listen_address": "127.0.0.1:0",
                                               "probe.rest_port": sim.rest_port})
    from exporter.runtime import start_exporter
    running = start_exporter(running_config)
    try:
        url = f"http://127.0.0.1:{running.port}/probe"
        target = {"target": f"127.0.0.1:{sim.grpc_port}"}
        # The top-level settings: REST derived from probe.rest_port, every collector on.
        text = requests.get(url, params=target, timeout=15).text
        assert sample_value(text, "tfserving_up", protocol="rest") == 1
        assert sample_value(text, "tfserving_exporter_collector_success",
                            collector="native") == 1
        text = requests.get(url, params={**target, "module": "grpc_only"}, timeout=15).text
        assert 'collector="native"' not in text and 'collector="metadata"' not in text
        assert sample_value(text, "tfserving_up", protocol="grpc") == 1
        assert 'protocol="rest"' not in text  # the module's probe.rest_port 0
        assert sample_value(text, "tfserving_model_available_versions",
                            model="half_plus_two") == 1  # inherited models
        text = requests.get(url, params={**target, "module": "pinned"}, timeout=15).text
        assert sample_value(text, "tfserving_model_available_versions",
                            model="image_classifier") == 1
        # Status covers the module's models only (TF Serving's page lists every model).
        assert sample_value(text, "tfserving_model_available_versions",
                            model="half_plus_two") is None
        refused = requests.get(url, params={**target, "module": "pinned",
                                            "model": "half_plus_two"}, timeout=15)
        assert refused.status_code == 400
        assert "probe.model_params is false" in refused.text
    finally:
        running.stop()


# --- bad requests, refusals and bounds -------------------------------------------------------

@pytest.mark.parametrize("params, status, message", [
    ({}, 400, "target: missing"),
    ({"target": "127.0.0.1"}, 400, 'target: invalid gRPC address "127.0.0.1": missing port'),
    ({"target": "unix:/run/tfserving.sock"}, 400, "target: expected HOST:PORT"),
    ({"target": "dns:///127.0.0.1:8500"}, 400, "target: expected HOST:PORT"),
    ({"target": ["127.0.0.1:1", "127.0.0.1:2"]}, 400, "target: given 2 times"),
    ({"target": "127.0.0.1:1", "modul": "x"}, 400, 'unknown parameter "modul" (did you mean '
                                                    '"module"?)'),
    ({"target": "127.0.0.1:1", "module": "tls"}, 400, 'module: unknown module "tls"'),
    ({"target": "127.0.0.1:1", "rest_target": "ftp://x"}, 400, "rest_target: invalid REST"),
    ({"target": "127.0.0.1:1", "model": "a/b"}, 400, 'model: invalid model name "a/b"'),
    ({"target": "10.1.2.3:8500"}, 403, 'target: not allowed: host "10.1.2.3" matches no '
                                       "pattern of probe.allowed_targets"),
    ({"target": "localhost:8500"}, 403, 'host "localhost" matches no pattern'),
    ({"target": "127.0.0.1:1", "rest_target": "http://10.0.0.1:8501"}, 403,
     "rest_target: not allowed"),
    # Hosts a resolver reads differently from the check: refused, whatever the allow-list.
    ({"target": "0x7f000001:8500"}, 400, 'target: "0x7f000001" is an IPv4 address in a short, '
                                         "octal or hex form"),
    ({"target": "127.1:8500"}, 400, '"127.1" is an IPv4 address in a short'),
    ({"target": "127.0.0.1:1", "rest_target": "http://0177.0.0.1:1"}, 400,
     'rest_target: "0177.0.0.1" is an IPv4 address'),
    ({"target": "[::ffff:7f00:0%31]:8500"}, 400, 'target: IPv6 zone ids ("%") are not accepted'),
    # An IPv4-mapped IPv6 address is the IPv4 address it is dialled as.
    ({"target": "[::ffff:10.1.2.3]:8500"}, 403, 'host "::ffff:10.1.2.3" matches no pattern'),
])
def test_a_bad_probe_gets_an_error_naming_the_parameter(fleet_exporter, params, status,
                                                        message):
    reply = probe(fleet_exporter(), params)
    assert reply.status_code == status
    assert message in reply.text


def test_globs_match_names_label_by_label_and_cidrs_match_addresses(fleet_exporter):
    exporter = fleet_exporter(probe__allowed_targets=["tfserving-*.ml.svc", "127.0.0.0/8"])
    for target, status in (("tfserving-a.ml.svc:8500", 200), ("TFSERVING-A.ML.SVC:8500", 200),
                           ("tfserving-a.attacker.example:8500", 403),  # "*" spans no dot
                           ("tfserving-a.b.ml.svc:8500", 403),
                           ("[::ffff:127.0.0.1]:1", 200), ("[::1]:1", 403)):
        reply = probe(exporter, {"target": target},
                      headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert reply.status_code == status, (target, reply.text)
    # As globs, IP prefixes would admit names such as 10.0.0.1.nip.io: CIDRs are asked for.
    assert problems_raised(ConfigError, load_config, None,
                           {**FLEET, "probe.allowed_targets": ["10.*"]}) == [
        '--probe.allowed-target: "10.*" looks like an IP address pattern: write a CIDR such '
        'as "10.0.0.0/8" (globs match host names only)']


def test_a_rest_target_without_a_port_is_judged_by_its_host(fleet_exporter):
    reply = probe(fleet_exporter(probe__allowed_targets=["127.0.0.1/32", "*.example.com"]),
                  {"target": "127.0.0.1:1", "rest_target": "https://tfserving.example.com"},
                  headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    assert reply.status_code == 200, reply.text


def test_an_ipv6_target_is_probed(fleet_exporter, simulators):
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    listener.listen(4)
    listener.setblocking(False)
    try:
        port = listener.getsockname()[1]
        reply = probe(fleet_exporter(probe__allowed_targets=["::1/128"]),
                      {"target": f"[::1]:{port}"},
                      headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert reply.status_code == 200
        assert sample_value(reply.text, "tfserving_up", protocol="grpc") == 0
        assert wait_until(lambda: _accepted(listener), timeout=10, message="a connection")
    finally:
        listener.close()


def _accepted(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_too_many_model_names_are_refused(fleet_exporter):
    reply = probe(fleet_exporter(limits__max_models=2),
                  {"target": "127.0.0.1:1", "model": "a,b,c"})
    assert reply.status_code == 400
    assert "model: 3 names, more than limits.max_models (2)" in reply.text


def test_a_target_outside_the_allow_list_is_never_connected_to(fleet_exporter):
    listener = Listener()
    try:
        exporter = fleet_exporter(probe__allowed_targets=["*.svc.cluster.local", "10.0.0.0/8"])
        for params in ({"target": f"127.0.0.1:{listener.port}"},
                       {"target": "tfserving.ml.svc.cluster.local:8500",
                        "rest_target": f"http://127.0.0.1:{listener.port}"}):
            reply = probe(exporter, params)
            assert reply.status_code == 403, reply.text
        head = exporter.running  # HEAD checks the query too, and connects nowhere either
        assert requests.head(f"http://127.0.0.1:{head.port}/probe",
                             params={"target": f"127.0.0.1:{listener.port}"},
                             timeout=10).status_code == 403
        assert listener.connections() == 0
        # The same listener, allowed: the probe does connect (so the check above can fail).
        allowed = fleet_exporter()
        probe(allowed, {"target": f"127.0.0.1:{listener.port}"},
              headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        assert wait_until(listener.connections, timeout=10, message="a connection") > 0
    finally:
        listener.close()


def test_a_name_that_is_a_resolver_scheme_is_resolved_as_a_name(fleet_exporter):
    """grpcio reads a bare "unix-abstract:N" as an abstract unix socket: the allow-list judged
    a host name, so the probe must resolve it as one (and fail), never open the socket."""
    listener = socket.socket(socket.AF_UNIX)
    name = str(10000 + (os.getpid() * 7919 + time.monotonic_ns()) % 50000)  # a valid port
    listener.bind("\0" + name)
    listener.listen(4)
    listener.setblocking(False)
    try:
        reply = probe(fleet_exporter(probe__allowed_targets=["*"]),
                      {"target": f"unix-abstract:{name}"},
                      headers={"X-Prometheus-Scrape-Timeout-Seconds": "2"})
        assert reply.status_code == 200, reply.text
        assert sample_value(reply.text, "tfserving_up", protocol="grpc") == 0
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_an_empty_allow_list_refuses_every_target(fleet_exporter):
    reply = probe(fleet_exporter(probe__allowed_targets=[]), {"target": "127.0.0.1:8500"})
    assert reply.status_code == 403
    assert "probe.allowed_targets is empty" in reply.text


def test_probes_beyond_the_concurrency_cap_get_503_on_time(fleet_exporter, simulators):
    listener = Listener()  # accepts, never answers: a probe of it waits until its deadline
    try:
        exporter = fleet_exporter(fleet__max_concurrent_probes=1)
        hung = threading.Thread(target=probe, args=(exporter, {
            "target": f"127.0.0.1:{listener.port}"}), kwargs={
            "headers": {"X-Prometheus-Scrape-Timeout-Seconds": "4"}})
        hung.start()
        wait_until(lambda: sample_value(exporter.metrics(), "tfserving_exporter_fleet_targets")
                   == 1, timeout=10, message="the first probe under way")
        started = time.monotonic()
        reply = probe(exporter, {"target": f"127.0.0.1:{listener.port}"},
                      headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
        waited = time.monotonic() - started
        hung.join(timeout=15)
        assert not hung.is_alive()
        assert reply.status_code == 503
        assert "fleet.max_concurrent_probes" in reply.text
        assert waited < 1.0  # within the scrape timeout it announced
        assert sample_value(exporter.metrics(), "tfserving_exporter_scrape_errors_total",
                            reason="too_many_concurrent_probes") == 1
    finally:
        listener.close()


def test_a_stuck_target_does_not_take_the_calls_of_another_probe(fleet_exporter, simulators):
    """Each probe slot has its own call pools: a server that never answers, probed for many
    models over REST, holds only its own probe's workers until its deadline."""
    healthy = simulators()
    listener = Listener()
    try:
        exporter = fleet_exporter(collectors__status__protocol="rest",
                                  collectors__metadata__protocol="rest",
                                  fleet__max_concurrent_probes=2)
        stuck = threading.Thread(target=probe, args=(exporter, {
            "target": f"127.0.0.1:{listener.port}",
            "rest_target": f"http://127.0.0.1:{listener.port}",
            "model": ",".join(f"m{index}" for index in range(50))}), kwargs={
            "headers": {"X-Prometheus-Scrape-Timeout-Seconds": "5"}})
        stuck.start()
        wait_until(listener.connections, timeout=10, message="the stuck probe's calls")
        text = probe(exporter, probe_query(healthy, model="half_plus_two"),
                     headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"}).text
        stuck.join(timeout=15)
        assert sample_value(text, "tfserving_up", protocol="rest") == 1
        assert sample_value(text, "tfserving_model_available_versions",
                            model="half_plus_two") == 1
    finally:
        listener.close()


def test_basic_auth_covers_probe(fleet_exporter, simulators, tmp_path):
    sim = simulators()
    web = tmp_path / "web.yaml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    exporter = fleet_exporter(web__config_file=str(web))
    assert probe(exporter, probe_query(sim)).status_code == 401
    assert probe(exporter, probe_query(sim), auth=("prometheus", PASSWORD)).status_code == 200


def test_targets_past_the_cap_are_probed_without_canaries_and_counted(
        simulators, fleet_exporter, caplog):
    first, second = simulators(), simulators()
    exporter = fleet_exporter(fleet__max_targets=1, canary__golden_dir=STANDIN_GOLDEN_DIR,
                              canary__interval="1s")
    assert probe(exporter, probe_query(first)).status_code == 200
    with caplog.at_level(logging.WARNING, logger="exporter.fleet.targets"):
        for _ in range(3):
            text = probe(exporter, probe_query(second)).text
            assert sample_value(text, "tfserving_up", protocol="grpc") == 1
            assert "tfserving_canary_" not in text
    assert len([r for r in caplog.records if "fleet.max_targets (1) reached" in r.message]) == 1
    own = exporter.metrics()
    assert sample_value(own, "tfserving_exporter_dropped_total", kind="target") == 3
    assert sample_value(own, "tfserving_exporter_fleet_targets") == 1


# --- canaries per target ---------------------------------------------------------------------

def _canary_passed(exporter, sim) -> str | None:
    text = probe(exporter, probe_query(sim)).text
    return text if sample_value(text, "tfserving_canary_success", model="half_plus_two",
                                version="123") == 1 else None


def test_canaries_run_per_target_and_are_forgotten_with_it(simulators, fleet_exporter):
    first, second = simulators(), simulators()
    exporter = fleet_exporter(canary__golden_dir=STANDIN_GOLDEN_DIR, canary__interval="1s",
                              fleet__target_expiry="3s")
    for sim in (first, second):
        wait_until(lambda sim=sim: _canary_passed(exporter, sim), timeout=30,
                   message="a passing canary of this target")

    # The second target keeps its last results while its server is down...
    second.stop()
    text = probe(exporter, probe_query(second)).text
    assert sample_value(text, "tfserving_up", protocol="grpc") == 0
    assert sample_value(text, "tfserving_canary_success", model="half_plus_two",
                        version="123") == 1

    # ...until it is not probed for fleet.target_expiry: then its canaries and results go.
    # The first target, probed meanwhile, keeps its own.
    def forgotten() -> bool:
        assert _canary_passed(exporter, first)
        return sample_value(exporter.metrics(), "tfserving_exporter_fleet_targets") == 1

    wait_until(forgotten, timeout=20, message="the unprobed target forgotten")
    text = probe(exporter, probe_query(second)).text
    assert sample_value(text, "tfserving_up", protocol="grpc") == 0
    assert "tfserving_canary_success{" not in text


# --- settings --------------------------------------------------------------------------------

def test_fleet_mode_is_valid_without_addresses_and_says_so():
    config = load_config(None, {"tfserving.grpc_address": "", "tfserving.rest_address": ""})
    assert config.fleet_only
    assert any("fleet mode" in warning and "probe.allowed_targets is empty" in warning
               for warning in config.warnings)
    assert not any("no models configured" in warning for warning in config.warnings)


def test_module_problems_name_the_module(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "fleet:\n"
        "  modules:\n"
        "    tls:\n"
        "      tfserving: {grpc_address: 'x:1', timeout: 5x, grpc_tls: {cert_file: "
        f"'{path}'}}}}\n"
        "      web: {listen_address: ':1'}\n"
        "      colectors: {}\n"
        "      probe: {allowed_targets: ['not a host']}\n"
        "    'bad name': {}\n")
    problems = problems_raised(ConfigError, load_config, str(path))
    assert problems == [f'{path}: fleet.modules.bad name: module names are 1 to 64 letters, '
                        'digits, "_", "." or "-"']
    path.write_text(path.read_text().replace("    'bad name': {}\n", ""))
    problems = problems_raised(ConfigError, load_config, str(path))
    prefix = f"{path}: fleet.modules.tls."
    assert problems == [
        f'{prefix}colectors: unknown key (did you mean "collectors"?)',
        f"{prefix}tfserving.grpc_address: not a module setting: a probe's addresses are its "
        "target and rest_target",
        f'{prefix}tfserving.timeout: invalid duration "5x": unknown unit "x"; units are ms, s, '
        "m, h, d, w, y",
        f"{prefix}web.listen_address: not a module setting: a module holds tfserving, models, "
        "collectors, limits, canary and probe settings",
        f'{prefix}probe.allowed_targets[0]: invalid host pattern "not a host": a host name or '
        'a glob such as "*.svc.cluster.local" (a "*" stands for one label or part of one), or a '
        'CIDR such as "10.0.0.0/8"',
        f"{prefix}tfserving.grpc_tls.key_file: needed with cert_file for mutual TLS",
    ]


def test_modules_load_back_from_config_as_served(tmp_path):
    golden = tmp_path / "golden"
    golden.mkdir()
    path = tmp_path / "config.yaml"
    path.write_text("fleet:\n  modules:\n    canaries:\n      canary: {golden_dir: golden}\n"
                    "      limits: {max_models: 5}\n")
    config = load_config(str(path))
    module = config.module("canaries")
    assert module.canary.golden_dir == str(golden)  # relative to the config file
    assert module.limits.max_models == 5 and module.limits.max_versions_per_model == 20
    assert config.module(None) is config and config.module("nope") is None
    again = tmp_path / "again" / "config.yaml"
    again.parent.mkdir()
    again.write_text(config.to_yaml())
    reloaded = load_config(str(again))
    assert reloaded == config
    assert reloaded.module("canaries") == module


def test_modules_given_as_overrides_are_loaded_and_checked():
    config = load_config(None, {"fleet.modules": {"fast": {"tfserving": {"timeout": "2s"}}}})
    assert config.module("fast").tfserving.timeout == 2
    assert problems_raised(ConfigError, load_config, None, {"fleet.modules": {
        "fast": {"tfserving": {"timeout": "2x"}, "colectors": {}}}}) == [
        'fleet.modules.fast.colectors: unknown key (did you mean "collectors"?)',
        'fleet.modules.fast.tfserving.timeout: invalid duration "2x": unknown unit "x"; units '
        "are ms, s, m, h, d, w, y"]


def test_a_reload_starts_over_with_no_targets(simulators, tmp_path):
    from exporter.runtime import start_exporter
    sim = simulators()
    path = tmp_path / "config.yaml"
    path.write_text("tfserving: {grpc_address: '', rest_address: ''}\n"
                    "probe: {allowed_targets: [127.0.0.1/32], rest_port: 0}\n")
    running = start_exporter(load_config(str(path), {"web.listen_address": "127.0.0.1:0"}),
                             str(path), {"web.listen_address": "127.0.0.1:0"})
    try:
        url = f"http://127.0.0.1:{running.port}"
        assert requests.get(url + "/probe", params={"target": f"127.0.0.1:{sim.grpc_port}"},
                            timeout=15).status_code == 200
        assert sample_value(requests.get(url + "/metrics", timeout=15).text,
                            "tfserving_exporter_fleet_targets") == 1
        assert running.reload() == (True, "configuration reloaded")
        assert sample_value(requests.get(url + "/metrics", timeout=15).text,
                            "tfserving_exporter_fleet_targets") == 0
    finally:
        running.stop()


def test_probes_get_threads_and_connections_of_their_own(fleet_exporter, start_exporter_with):
    from exporter.http_server import (HANDLER_THREADS, MAX_CONNECTIONS,
                                      _connections_the_fd_limit_allows)
    fd_cap = _connections_the_fd_limit_allows()
    fleet = fleet_exporter(fleet__max_concurrent_probes=32).running.server
    assert fleet.handler_threads == HANDLER_THREADS + 64
    assert fleet.max_connections == min(MAX_CONNECTIONS + 64, fd_cap)
    sidecar = start_exporter_with({"models": ["half_plus_two"]}).running.server  # no allow-list
    assert sidecar.handler_threads == HANDLER_THREADS
    assert sidecar.max_connections == min(MAX_CONNECTIONS, fd_cap)


def test_a_sidecar_serves_probe_too(simulators, start_exporter_for):
    own, other = simulators(), simulators()
    exporter = start_exporter_for(own, probe__allowed_targets=["127.0.0.1/32"])
    text = probe(exporter, probe_query(other)).text
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    assert sample_value(exporter.metrics(), "tfserving_up", protocol="grpc") == 1
    refused = start_exporter_for(own)  # an empty allow-list: nothing to probe
    assert probe(refused, probe_query(other)).status_code == 403


def test_the_telemetry_path_cannot_be_probe():
    assert problems_raised(ConfigError, load_config, None, {"web.telemetry_path": "/probe"}) \
        == ['--web.telemetry-path: must not be "/probe", which serves fleet mode\'s probes']


# --- the canary schedule all targets share ---------------------------------------------------

class _Runner:
    """The part of a CanaryRunner the schedule drives: a cycle per model, and stopping."""

    def __init__(self, name: str, ran: list, gate: threading.Event | None = None) -> None:
        self.name, self.ran, self.gate, self.stopped = name, ran, gate, False

    def _cycle(self, model: str) -> None:
        self.ran.append((self.name, model, self.stopped))
        if self.gate is not None:
            self.gate.wait(10)

    def _next_due(self, model: str) -> float:
        return time.monotonic() + 3600


def test_a_runner_stopped_while_its_cycle_waits_in_the_pool_does_not_run():
    from exporter.canary.runner import CanarySchedule
    schedule = CanarySchedule(max_concurrent=1)
    ran: list = []
    gate = threading.Event()
    busy, forgotten = _Runner("busy", ran, gate), _Runner("forgotten", ran)
    try:
        now = time.monotonic()
        schedule.add(busy, "m", now)
        wait_until(lambda: ran, timeout=10, message="the first cycle running")
        schedule.add(forgotten, "m", now)  # due, but the one worker is busy
        wait_until(lambda: not schedule._due, timeout=10, message="the second cycle queued")
        forgotten.stopped = True
        schedule.forget(forgotten)
        gate.set()
        schedule.add(busy, "after", time.monotonic())  # runs after the queued one would
        wait_until(lambda: len(ran) == 2, timeout=10, message="the next cycle")
        assert ran == [("busy", "m", False), ("busy", "after", False)]
    finally:
        gate.set()
        schedule.stop()


def test_a_target_runs_one_canary_cycle_at_a_time_in_the_shared_pool():
    """A target whose server never answers holds one worker, and the others keep theirs."""
    from exporter.canary.runner import CanarySchedule
    schedule = CanarySchedule(max_concurrent=2, per_runner=1)
    ran: list = []
    gate = threading.Event()
    stuck, healthy = _Runner("stuck", ran, gate), _Runner("healthy", ran)
    try:
        now = time.monotonic()
        for model in ("a", "b", "c"):
            schedule.add(stuck, model, now)
        schedule.add(healthy, "m", now + 0.05)
        wait_until(lambda: ("healthy", "m", False) in ran, timeout=10,
                   message="the healthy target's cycle, beside the stuck one")
        assert [name for name, _, _ in ran].count("stuck") == 1
        gate.set()  # the stuck server answers: its held cycles run, one after the other
        wait_until(lambda: len(ran) == 4, timeout=10, message="the held cycles")
        assert sorted(model for name, model, _ in ran if name == "stuck") == ["a", "b", "c"]
    finally:
        gate.set()
        schedule.stop()


def test_a_closed_cache_gives_its_share_of_the_budget_back():
    from exporter.tfserving.loaded_versions import LoadedSignatures, TensorBudget
    from exporter.tfserving.types import Signature
    budget = TensorBudget(10)
    first, second = LoadedSignatures(100, budget), LoadedSignatures(100, budget)
    signatures = {"serving_default": Signature("serving_default", "predict",
                                               tuple(range(8)), ())}  # tensors only counted
    first.get(("m", 1), lambda: signatures)
    assert budget.used == 8
    second.get(("m", 1), lambda: signatures)
    assert second.cached(("m", 1)) is None  # over the shared budget: not cached
    first.close()
    assert budget.used == 0
    second.get(("m", 1), lambda: signatures)
    assert second.cached(("m", 1)) is not None and budget.used == 8
