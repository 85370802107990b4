"""The simulator as a whole: ``Simulator`` (in-process API) and ``main`` (the CLI).

Startup follows ``tensorflow_model_server`` (docs/tfserving-behaviour.md §1.3): the core loads every configured
model and only then does the gRPC port open, then the monitoring config is read, then the REST
port. A failed initial load is a startup error (the CLI prints ``Failed to start server. Error:
...`` and exits 255).

Python API::

    options = SimulatorOptions(model_name="half_plus_two", model_base_path="/models/hp2",
                               bind_address="127.0.0.1", grpc_port=0, rest_api_port=0,
                               prometheus_path="/monitoring/prometheus/metrics")
    with Simulator(options) as sim:       # start() ... stop()
        sim.grpc_port, sim.rest_port      # the ports actually bound
        sim.faults.add(FaultRule(model="half_plus_two", latency_seconds=0.2))

``grpc_port=0`` and ``rest_api_port=0`` pick free ports; ``rest_api_port=None`` disables REST.
(On the command line ``--rest_api_port=0`` means "REST off", as in TF Serving.)
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from tfserving_simulator import flags as flags_module
from tfserving_simulator import logfmt
from tfserving_simulator.errors import ServingError
from tfserving_simulator.faults import FaultConfigError, Faults
from tfserving_simulator.grpc_api import GrpcApiOptions, GrpcServer
from tfserving_simulator.monitoring_config import read_monitoring_config
from tfserving_simulator.rest_api import RestApi, RestApiOptions
from tfserving_simulator.rest_server import MetricsPage, RestServer
from tfserving_simulator.server_config import ModelConfig, parse_model_config_text
from tfserving_simulator.server_core import ServerCore
from tfserving_simulator.ssl_config import server_credentials
from tfserving_simulator.tf_metrics import ServingMetrics

log = logging.getLogger(__name__)

SIMULATED_VERSION = "2.20.0-simulator"
_FAULT_FILE_CHECK_SECONDS = 0.5
STOP_TIMEOUT_SECONDS = 1.0


class SimulatorStartError(RuntimeError):
    """Startup failed; ``str()`` is the TF status text (``UNKNOWN: ...``)."""


@dataclass
class SimulatorOptions:
    """The flags of ``tensorflow_model_server`` plus Python-only conveniences."""

    grpc_port: int = 8500  # --port; 0 = OS-chosen
    rest_api_port: int | None = None  # --rest_api_port; None = off, 0 = OS-chosen
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    monitoring_config_file: str = ""
    enable_grpc_healthcheck_service: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    enable_serialization_as_tensor_content: bool = False
    bind_address: str = "0.0.0.0"
    fault_config_file: str = ""
    ssl_config_file: str = ""  # --ssl_config_file: TLS (and client verification) on gRPC
    # Python-only: models given directly (instead of a name/base path or a config file), and
    # the Prometheus page without writing a monitoring config file.
    models: list[ModelConfig] = field(default_factory=list)
    prometheus_path: str | None = None

    @classmethod
    def from_flags(cls, parsed: flags_module.ParsedFlags) -> "SimulatorOptions":
        values = dict(parsed.values)
        rest_port = values.pop("rest_api_port")
        values.pop("version")
        return cls(grpc_port=values.pop("port"), rest_api_port=rest_port or None, **values)


class Simulator:
    """A running TF Serving look-alike; see the module docstring."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.metrics = ServingMetrics()
        self.faults = Faults()
        self._core: ServerCore | None = None
        self._grpc: GrpcServer | None = None
        self._rest: RestServer | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- properties ---

    @property
    def core(self) -> ServerCore:
        if self._core is None:
            raise RuntimeError("the simulator has not been started")
        return self._core

    @property
    def grpc_port(self) -> int:
        if self._grpc is None:
            raise RuntimeError("the gRPC server is not running")
        return self._grpc.port

    @property
    def rest_port(self) -> int | None:
        return self._rest.port if self._rest is not None else None

    # --- lifecycle ---

    def __enter__(self) -> "Simulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float | None = None) -> None:
        """Load the initial models (up to ``timeout`` seconds, None = as long as it takes),
        then open gRPC, then REST. Raises :class:`SimulatorStartError`."""
        options = self.options
        try:
            if options.fault_config_file:
                self.faults.load_file(options.fault_config_file)
            self._core = ServerCore(
                self._initial_models(), metrics=self.metrics, faults=self.faults,
                file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
                allow_version_labels_for_unavailable_models=(
                    options.allow_version_labels_for_unavailable_models))
            self._core.start()
            self._core.wait_for_initial_models(timeout)
            self._start_grpc()
            metrics_path = self._metrics_path()
            self._start_rest(metrics_path)
        except (ServingError, FaultConfigError, OSError) as err:
            self.stop()
            if isinstance(err, ServingError):
                raise SimulatorStartError(f"{err.code}: {err.message}") from err
            raise SimulatorStartError(f"INVALID_ARGUMENT: {err}") from err
        self._watcher = threading.Thread(target=self._watch_files, name="simulator-watcher",
                                         daemon=True)
        self._watcher.start()

    def _initial_models(self) -> list[ModelConfig]:
        options = self.options
        if options.models:
            return list(options.models)
        if options.model_config_file:
            return parse_model_config_text(_read_text(options.model_config_file)) or []
        if not options.model_base_path:
            raise ServingError("INVALID_ARGUMENT",
                               "Both server_options.model_base_path and "
                               "server_options.model_config_file are empty!")
        # server.cc, BuildSingleModelConfig (the double space is TF's).
        log.info("Building single TensorFlow model file config:  model_name: %s "
                 "model_base_path: %s", options.model_name, options.model_base_path)
        return [ModelConfig(options.model_name, options.model_base_path)]

    def _start_grpc(self) -> None:
        options = self.options
        if options.grpc_port is None:
            raise ServingError("INVALID_ARGUMENT", "At least one of server_options.grpc_port or "
                                                   "server_options.grpc_socket_path must be set.")
        self._grpc = GrpcServer(
            options.bind_address, options.grpc_port, self._core, self.metrics, self.faults,
            GrpcApiOptions(serialize_as_tensor_content=(
                options.enable_serialization_as_tensor_content)),
            enable_health=options.enable_grpc_healthcheck_service,
            credentials=(server_credentials(options.ssl_config_file)
                         if options.ssl_config_file else None))
        self._grpc.start()
        log.info("Running gRPC ModelServer at %s:%d ...", options.bind_address, self._grpc.port)

    def _metrics_path(self) -> str | None:
        """The Prometheus path if monitoring is enabled (read after gRPC starts, like TF)."""
        if self.options.monitoring_config_file:
            config = read_monitoring_config(self.options.monitoring_config_file)
            return config.effective_path if config.prometheus_enable else None
        return self.options.prometheus_path

    def _start_rest(self, metrics_path: str | None) -> None:
        options = self.options
        if options.rest_api_port is None:
            return
        if options.rest_api_port and options.rest_api_port == options.grpc_port:
            log.error("--rest_api_port cannot be same as --port. Please use a different port "
                      "for HTTP/REST API. Skipped exporting HTTP/REST API.")
            return
        rest_api = RestApi(self._core, self.metrics, self.faults, RestApiOptions(
            options.rest_api_timeout_in_ms, options.rest_api_enable_cors_support))
        page = (MetricsPage(metrics_path, self.metrics.render, self.faults)
                if metrics_path else None)
        self._rest = RestServer(options.bind_address, options.rest_api_port, rest_api, page)
        self._rest.start()
        log.info("Exporting HTTP/REST API at:localhost:%d ...", self._rest.port)

    def stop(self) -> None:
        """Release hangs, close both ports and stop the core's threads (about a second)."""
        self._stop.set()
        self.faults.close()
        if self._rest is not None:
            self._rest.stop(STOP_TIMEOUT_SECONDS)
            self._rest = None
        if self._grpc is not None:
            self._grpc.stop(grace=STOP_TIMEOUT_SECONDS / 2)
            self._grpc = None
        if self._core is not None:
            self._core.stop()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(STOP_TIMEOUT_SECONDS)
            self._watcher = None

    # --- file watching ---

    def _watch_files(self) -> None:
        """Re-read the fault file when it changes, and with
        --model_config_file_poll_wait_seconds re-apply the model config file on every poll,
        the first one at once (server.cc starts a PeriodicFunction after ServerCore::Create)."""
        config_every = self.options.model_config_file_poll_wait_seconds
        polling = bool(self.options.model_config_file) and config_every > 0
        next_faults = next_config = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_faults:
                self.faults.reload_file_if_changed()
                next_faults = now + _FAULT_FILE_CHECK_SECONDS
            if polling and now >= next_config:
                self._reload_model_config()
                next_config = now + config_every
            wake = min(next_faults, next_config) if polling else next_faults
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def _reload_model_config(self) -> None:
        """server.cc, PollFilesystemAndReloadConfig: the file is applied whether or not it
        changed, so what a poll refused (a label on a version still loading) is tried again
        on the next one (ServerCore::ReloadConfig re-validates the labels every time)."""
        try:
            models = parse_model_config_text(_read_text(self.options.model_config_file))
        except ServingError as err:
            log.error("Failed to read ModelServerConfig file: %s", err.message)
            return
        if models is None:
            log.info("Taking no action for empty config.")  # server_core.cc, ReloadConfig
            return
        try:
            self.core.reload_config(models)
        except ServingError as err:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", err.message)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as err:
        raise ServingError("NOT_FOUND", f"{path}; {err.strerror or err}") from None


# --- CLI ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``tfserving-exporter simulate`` / ``python -m tfserving_simulator``: runs until SIGINT
    or SIGTERM, then stops cleanly (0). Flag errors exit 1, startup failures 255."""
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help", "-help", "--helpfull") for arg in argv):
        print(flags_module.usage())
        return 0
    if not logging.getLogger().handlers:  # an embedding program's own setup wins
        logfmt.configure_logging(sys.stderr)
    try:
        parsed = flags_module.parse_flags(argv)
        flags_module.validate(parsed)
    except flags_module.FlagError as err:
        print(f"tensorflow_model_server (simulator): {err}", file=sys.stderr)
        return 1
    if parsed.version:
        print(f"TensorFlow ModelServer: {SIMULATED_VERSION}")
        print(f"TensorFlow Library: {SIMULATED_VERSION}")
        return 0
    if parsed.port == 0:
        print("Failed to start server. Error: INVALID_ARGUMENT: At least one of "
              "server_options.grpc_port or server_options.grpc_socket_path must be set.",
              file=sys.stderr)
        return 255
    simulator = Simulator(SimulatorOptions.from_flags(parsed))
    stop_requested = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop_requested.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    outcome: dict[str, BaseException] = {}
    started = threading.Event()

    def start() -> None:
        try:
            simulator.start()
        except SimulatorStartError as err:
            outcome["error"] = err
        finally:
            started.set()

    threading.Thread(target=start, name="simulator-start", daemon=True).start()
    try:
        # Bounded waits so signals are handled promptly while models load or serve.
        while not stop_requested.wait(0.2):
            if started.is_set() and "error" in outcome:
                print(f"Failed to start server. Error: {outcome['error']}", file=sys.stderr,
                      flush=True)
                return 255
        simulator.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
