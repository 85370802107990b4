"""Builds a running exporter (clients, collectors, HTTP app) from a validated Config."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from exporter.addresses import split_listen_address
from exporter.assembly import (build_canaries, build_clients, build_collection,
                               golden_of_modules, load_golden)
from exporter.config import DEFAULT_MODULE
from exporter.durations import format_duration
from exporter.files import FileReadError
from exporter.fleet.prober import Prober
from exporter.reloader import CoalescingReloader
from exporter.selfmetrics import SelfMetrics
from exporter.http_server import HANDLER_THREADS
from exporter.server import (ExporterState, Pipeline, create_app, health_answers, probe_room,
                             serve)
from exporter.webconfig import BasicAuth, WebSettings, load_web_config, ssl_context
from tfserving_wire import protos

if TYPE_CHECKING:
    from exporter.canary.runner import CanaryRunner

log = logging.getLogger(__name__)

# Stack of each thread the exporter starts (HTTP workers, call pools, canaries, reloads).
# Python's recursion limit stops deep recursion at well under half of this (a JSON document
# nested 1,000 deep parses in 512 KiB), and the default of 8 MiB would let a thread touch
# far more memory than the pod has to spare.
THREAD_STACK_BYTES = 1 << 20


def _summary(config, models: Callable[[], list[str]], runner: CanaryRunner | None) -> dict:
    """The landing page's table. Models are read when the page is shown: models.config may
    have changed since the pipeline was built."""
    tf, canary = config.tfserving, config.canary

    def models_in_effect() -> str:
        # What a scrape covers: --model/models, models.config and the golden sets' models.
        return ", ".join(models()) or "(none: give --model or --tfserving.model-config-file)"

    if not canary.enabled:
        canaries = "off"
    elif runner is None and config.fleet_only:
        canaries = "per probed target, in the background, when its module has golden files"
    elif runner is None:
        canaries = "no golden files (--canary.golden-file, --canary.golden-dir)"
    else:
        files = ", ".join(f"{model}: {path}" for model, path in runner.golden_paths.items())
        canaries = f"over {canary.protocol}, every {format_duration(canary.interval)}; {files}"
    allowed = ", ".join(config.probe.allowed_targets) or "none: every probe is refused"
    fleet = (f"/probe?target=HOST:PORT, allowed targets: {allowed}; modules: "
             f"{', '.join(sorted(set(config.modules) | {DEFAULT_MODULE}))}; "
             f"up to {config.fleet.max_targets} targets tracked")
    return {
        "Fleet mode": ("on (no TF Serving of its own): " if config.fleet_only else "") + fleet,
        "gRPC address": tf.grpc_address or "(disabled)",
        "REST address": tf.rest_address or "(disabled)",
        "Models": models_in_effect,
        "Model config file": tf.model_config_file or "(none)",
        "Canaries": canaries,
        "Collectors": ", ".join(
            f"{name}={c.protocol}" for name, c in
            (("status", config.collectors.status), ("metadata", config.collectors.metadata))
            if c.enabled) + (", native=rest" if config.collectors.native.enabled else ""),
    }


class InvalidConfig(Exception):
    """A configuration that cannot be applied; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class BuiltPipeline:
    pipeline: Pipeline
    canary: CanaryRunner | None

    def start(self) -> None:
        if self.canary is not None:
            self.canary.start()

    def close(self) -> None:
        if self.canary is not None:
            self.canary.stop()
        self.pipeline.prober.close()
        self.pipeline.collection.close()


def build_pipeline(config, selfmetrics: SelfMetrics, strict_golden: bool) -> BuiltPipeline:
    """Clients, collectors and canaries for ``config``. With ``strict_golden`` a golden file
    that does not load rejects the whole configuration (a reload keeps the old one); at
    startup it is only reported, so the rest of the exporter still runs."""
    golden, golden_problems = load_golden(config)
    module_golden, module_problems = golden_of_modules(config, (golden, golden_problems))
    problems = golden_problems + module_problems
    if problems:
        if strict_golden:
            raise InvalidConfig(problems)
        for problem in problems:
            log.error("golden file rejected: %s", problem)
    try:
        clients = build_clients(config, selfmetrics)
    except FileReadError as err:  # a TLS file replaced since the config was checked
        raise InvalidConfig([f"tfserving.grpc_tls: {err}"]) from None
    runner, canary_collector = build_canaries(config, golden, golden_problems, clients)
    extra = [canary_collector] if canary_collector else []
    try:
        collection = build_collection(config, selfmetrics, clients, extra,
                                      runner.models if runner else [])
    except BaseException:
        for client in clients.values():  # channels and connections must not outlive this
            client.close()
        raise
    pipeline = Pipeline(
        collection=collection,
        prober=Prober(config, selfmetrics, module_golden),
        telemetry_path=config.web.telemetry_path,
        timeout=config.tfserving.timeout,
        timeout_offset=config.tfserving.timeout_offset,
        summary=_summary(config, collection.models, runner),
        config_yaml=config.to_yaml(),
    )
    return BuiltPipeline(pipeline, runner)


class RunningExporter:
    """The HTTP server plus the current pipeline; ``reload()`` swaps pipelines safely."""

    def __init__(self, state: ExporterState, built: BuiltPipeline, server, thread,
                 config, config_path: str | None, overrides: dict | None) -> None:
        self.state = state
        self.server = server
        self.thread = thread
        self._built = built
        self._config = config
        self._config_path = config_path
        self._overrides = dict(overrides or {})
        self._lock = threading.Lock()
        self._reloader = CoalescingReloader(self.reload)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def canary(self) -> CanaryRunner | None:
        return self._built.canary

    def request_reload(self, wait: float | None = None) -> tuple[bool, str] | None:
        """Reload through the one reload thread (SIGHUP, POST /-/reload): bursts of requests
        are served by one run each time. See ``CoalescingReloader.request``."""
        return self._reloader.request(wait)

    def reload(self) -> tuple[bool, str]:
        """Re-read the configuration (file, flags) and golden files. An invalid one is
        rejected whole: the running configuration stays, and a metric says so."""
        from exporter.config import ConfigError, load_config

        selfmetrics = self.state.selfmetrics
        with self._lock:
            try:
                config = load_config(self._config_path, self._overrides, reloading=True)
                built = build_pipeline(config, selfmetrics, strict_golden=True)
            except (ConfigError, InvalidConfig) as err:
                selfmetrics.reload_successful.set(0)
                problems = getattr(err, "problems", [str(err)])
                log.error("reload rejected, keeping the running configuration: %s",
                          "; ".join(problems))
                return False, "reload rejected, keeping the running configuration:\n" + \
                    "\n".join(problems)
            if config.web.listen_address != self._config.web.listen_address:
                log.warning("web.listen_address changed to %s: takes effect on restart",
                            config.web.listen_address)
            if HANDLER_THREADS + probe_room(config) > self.server.handler_threads:
                log.warning("probes allowed or fleet.max_concurrent_probes raised: the HTTP "
                            "threads for them are added on restart; until then probes may "
                            "wait for one")
            built.pipeline.summary["Web"] = self._built.pipeline.summary.get("Web", "")
            old, self._built, self._config = self._built, built, config
            self.state.enable_lifecycle = config.web.enable_lifecycle
            built.start()
            if old.canary is not None:
                old.canary.stop()  # its results are not read any more
            self.state.replace(built.pipeline, old.close)
            selfmetrics.fleet_targets.set_function(built.pipeline.prober.targets_tracked)
            selfmetrics.reload_successful.set(1)
            selfmetrics.reload_success_time.set_to_current_time()
            log.info("configuration reloaded")
            return True, "configuration reloaded"

    def stop(self) -> None:
        self._reloader.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        # A reload cannot hang (files are read without blocking), but stopping must not
        # depend on that.
        locked = self._lock.acquire(timeout=5)
        try:
            self._built.close()
        finally:
            if locked:
                self._lock.release()


def start_exporter(config, config_path: str | None = None,
                   overrides: dict | None = None) -> RunningExporter:
    """Bind the listen address and serve in a background thread. ``config_path`` and
    ``overrides`` are what ``config`` was loaded from, for reloads. Raises WebConfigError for
    an unusable web config file, OSError when the address cannot be bound."""
    protos.load_all()  # fail at startup, not on the first scrape, if the protos are missing
    threading.stack_size(THREAD_STACK_BYTES)
    web = load_web_config(config.web.config_file) if config.web.config_file else WebSettings()
    selfmetrics = SelfMetrics()
    built = build_pipeline(config, selfmetrics, strict_golden=False)
    built.pipeline.summary["Web"] = web.describe()
    state = ExporterState(pipeline=built.pipeline, selfmetrics=selfmetrics)
    selfmetrics.fleet_targets.set_function(built.pipeline.prober.targets_tracked)
    host, port = split_listen_address(config.web.listen_address)
    try:
        server = serve(create_app(state, BasicAuth(web.users) if web.users else None), host,
                       port, ssl_context(web.tls) if web.tls else None,
                       quick_answers=health_answers(state),
                       probes=probe_room(config))
    except OSError:
        built.close()
        raise
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    built.start()
    running = RunningExporter(state, built, server, thread, config, config_path, overrides)
    state.reload = running.request_reload
    state.enable_lifecycle = config.web.enable_lifecycle
    state.ready.set()
    log.info("listening", extra={"address": f"{host or '0.0.0.0'}:{server.server_address[1]}",
                                 "telemetry_path": config.web.telemetry_path,
                                 "web": web.describe()})
    return running
