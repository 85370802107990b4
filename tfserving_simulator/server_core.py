"""ServerCore: discovers version directories, runs the version lifecycle, finds servables.

Mirrors TF Serving's FileSystemStoragePathSource (a poller thread), AspiredVersionsManager
with AvailabilityPreservingPolicy (a manager thread doing one action per model per tick, loads
serially as with ``--num_load_threads=0``) and ServableStateMonitor (states kept forever).
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from typing import Iterable

from tfserving_simulator import saved_model, tf_session
from tfserving_simulator.errors import ServingError
from tfserving_simulator.models import Servable, build_program, read_model_spec
from tfserving_simulator.server_config import (  # re-exported: part of this module's contract
    ModelConfig, VersionPolicy, model_configs_from_proto, parse_model_config_text,
    validate_model_configs)
from tfserving_wire.model_status import AVAILABLE, END, LOADING, START, UNLOADING, VersionStatus

__all__ = ["ModelConfig", "VersionPolicy", "VersionStatus", "ServerCore",
           "parse_model_config_text", "model_configs_from_proto", "validate_model_configs"]

log = logging.getLogger(__name__)

_MANAGER_TICK_SECONDS = 0.1  # AspiredVersionsManager's manage-state interval
_INT64_MAX = 2**63 - 1
_VERSION_DIR = re.compile(r"[0-9]+")
_HISTORY_LIMIT = 10000


class _Version:
    """The manager's record of one version of one model (a LoaderHarness)."""

    def __init__(self, version: int, path: str, generation: int) -> None:
        self.version = version
        self.path = path
        self.generation = generation
        self.state = START
        self.error: ServingError | None = None
        self.servable: Servable | None = None
        self.aspired = True


def _servable_id(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


def not_available_message(failures: list[tuple[str, int, ServingError]], noun: str) -> str:
    """load_servables_fast.cc's text: ``N servable(s) did not become available: {...}``."""
    items = "".join(f"{{{_servable_id(name, version)} due to error: {err.code}: {err.message}}}, "
                    for name, version, err in failures)
    return f"{len(failures)} {noun}(s) did not become available: {{{items}}}"


def _log_adding(models: Iterable[ModelConfig]) -> None:
    """server_core.cc's lines as ReloadConfig (also the first one, at startup) begins."""
    log.info("Adding/updating models.")
    for model in models:
        log.info(" (Re-)adding model: %s", model.name)


def _log_finished() -> None:
    log.info("Finished adding/updating models")
    log.info("Finished reloading config")


class ServerCore:
    """The model manager behind both front ends; see ``DESIGN.md`` for the contract."""

    def __init__(self, models: Iterable[ModelConfig], *, metrics, faults=None,
                 file_system_poll_wait_seconds: float = 1.0, max_num_load_retries: int = 5,
                 load_retry_interval_seconds: float = 60.0,
                 allow_version_labels_for_unavailable_models: bool = False) -> None:
        self._metrics = metrics
        self._faults = faults
        self._poll_wait = file_system_poll_wait_seconds
        self._max_retries = max(0, int(max_num_load_retries))
        self._retry_interval = max(0.0, load_retry_interval_seconds)
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._cond = threading.Condition()
        self._configs: dict[str, ModelConfig] = {m.name: m for m in validate_model_configs(models)}
        self._labels: dict[str, dict[str, int]] = {}
        self._versions: dict[str, dict[int, _Version]] = {}
        # Latest poll result per model, version -> path; None until the first good poll.
        self._discovered: dict[str, dict[int, str]] | None = None
        self._generation = 0
        self._history: collections.deque = collections.deque(maxlen=_HISTORY_LIMIT)
        self._polls_attempted = 0
        self._stop = threading.Event()
        self._poll_now = threading.Event()
        self._manage_now = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle of the core itself ---

    def start(self) -> None:
        """Validate labels, then start polling and managing (returns at once)."""
        with self._cond:
            if self._threads:
                raise RuntimeError("ServerCore already started")
            self._labels = self._checked_labels(list(self._configs.values()), {})
            _log_adding(self._configs.values())
        self._threads = [
            threading.Thread(target=self._poll_loop, name="fs-poller", daemon=True),
            threading.Thread(target=self._manage_loop, name="version-manager", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads (interrupting load waits and retries) and release fault hangs."""
        self._stop.set()
        self._poll_now.set()
        self._manage_now.set()
        if self._faults is not None:
            self._faults.close()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def wait_for_initial_models(self, timeout: float | None) -> None:
        """Block until every configured model's latest version is AVAILABLE or has failed.

        ``timeout=None`` waits like TF Serving (forever), but ``stop()`` ends the wait.
        """
        with self._cond:
            names = list(self._configs)
        self._wait_for_models(names, 0, timeout, "servable")
        _log_finished()

    # --- queries ---

    def model_names(self) -> list[str]:
        with self._cond:
            return list(self._configs)

    def model_configs(self) -> list[ModelConfig]:
        with self._cond:
            return list(self._configs.values())

    def model_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """GetModelStatus: all versions ever seen (descending), or one of them."""
        with self._cond:
            versions = self._versions.get(name)
            if not versions:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            if version is not None:
                if version not in versions:
                    raise ServingError("NOT_FOUND",
                                       f"Could not find version {version} of model {name}")
                return [self._status(versions[version])]
            return [self._status(versions[v]) for v in sorted(versions, reverse=True)]

    @staticmethod
    def _status(entry: _Version) -> VersionStatus:
        if entry.error is None:
            return VersionStatus(entry.version, entry.state)
        return VersionStatus(entry.version, entry.state, entry.error.code, entry.error.message)

    def get_servable(self, name: str, version: int | None = None,
                     label: str | None = None) -> Servable:
        """The servable a request addresses: latest (highest AVAILABLE), a version or a label."""
        with self._cond:
            if label is not None:
                version = self._labels.get(name, {}).get(label)
                if version is None:
                    raise ServingError("INVALID_ARGUMENT",
                                       f"Unrecognized servable version label: {label}")
            versions = self._versions.get(name, {})
            if version is None:
                available = [v for v, e in versions.items() if e.state == AVAILABLE]
                if not available:
                    raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
                return versions[max(available)].servable
            entry = versions.get(version)
            if entry is None or entry.state != AVAILABLE:
                raise ServingError("NOT_FOUND",
                                   f"Servable not found for request: Specific({name}, {version})")
            return entry.servable

    def version_labels(self, name: str) -> dict[str, int]:
        with self._cond:
            return dict(self._labels.get(name, {}))

    def state_history(self, name: str | None = None) -> list[tuple[str, int, str]]:
        """Every published (model, version, state) transition in order (for tests and logs)."""
        with self._cond:
            return [item for item in self._history if name is None or item[0] == name]

    # --- reconfiguration ---

    def reload_config(self, models: Iterable[ModelConfig], *,
                      timeout: float | None = 600.0) -> None:
        """Apply the complete desired model set; block until new models are AVAILABLE or failed.

        Removed models unload (their versions stay listed as END). Raises ``ServingError``
        UNKNOWN when new models fail to load, FAILED_PRECONDITION for bad labels.
        """
        models = validate_model_configs(models)
        with self._cond:
            # server_core.cc, ReloadConfig: labels are checked (UpdateModelVersionLabelMap)
            # before any model is added, so a refused label leaves the models as they were.
            labels = self._checked_labels(models, self._labels)
            _log_adding(models)
            added = [m.name for m in models if m.name not in self._configs]
            changed = list(self._configs.values()) != models
            self._configs = {m.name: m for m in models}
            self._labels = labels
            generation = self._generation
        if changed:  # look for the new models' versions now rather than at the next poll
            self._poll_now.set()
            self._manage_now.set()
        self._wait_for_models(added, generation, timeout, "model")
        _log_finished()

    def _checked_labels(self, models: list[ModelConfig],
                        current: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        result = {}
        for model in models:
            for label, version in model.version_labels.items():
                entry = self._versions.get(model.name, {}).get(version)
                available = entry is not None and entry.state == AVAILABLE
                # server_core.cc, UpdateModelVersionLabelMap: the flag lets any label point
                # anywhere except an existing label moving to a different version.
                moved = current.get(model.name, {}).get(label, version) != version
                if not available and not (self._allow_unavailable_labels and not moved):
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference")
            if model.version_labels:
                result[model.name] = dict(model.version_labels)
        return result

    def _wait_for_models(self, names: list[str], generation: int, timeout: float | None,
                         noun: str) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                settled = {name: self._settled(name, generation) for name in names}
                if all(outcome is not None for outcome in settled.values()):
                    break
                if self._stop.is_set():
                    raise ServingError("CANCELLED", "server stopped while models were loading")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    waiting = sorted(name for name, o in settled.items() if o is None)
                    raise ServingError(
                        "DEADLINE_EXCEEDED",
                        f"timed out after {timeout}s waiting for model(s) to become available: "
                        + ", ".join(waiting))
                self._cond.wait(remaining if remaining is not None else 1.0)
        failures = [outcome for outcome in settled.values() if outcome]
        if failures:
            raise ServingError("UNKNOWN", not_available_message(failures, noun))

    def _settled(self, name: str, generation: int):
        """None while the model's highest relevant version is neither
        AVAILABLE nor END; False when it is AVAILABLE; (name, version, error) when it failed."""
        # Versions that started after the wait began, plus ones still aspired from before
        # (a model removed and re-added before it unloaded keeps its AVAILABLE version).
        entries = [e for e in self._versions.get(name, {}).values()
                   if e.generation > generation or e.aspired]
        if not entries:
            return None
        highest = max(entries, key=lambda e: e.version)
        if highest.state == AVAILABLE:
            return False
        if highest.state == END:
            error = highest.error or ServingError("UNKNOWN", "servable was unloaded")
            return (name, highest.version, error)
        return None

    # --- discovery (FileSystemStoragePathSource) ---

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._poll_once()
            if self._poll_wait > 0:
                self._poll_now.wait(self._poll_wait)
            else:
                self._poll_now.wait()  # polling disabled: only reloads (and stop) poll again
            self._poll_now.clear()

    def polls_attempted(self) -> int:
        """How many file-system polls have run (also the aborted ones); lets tests wait for one."""
        with self._cond:
            return self._polls_attempted

    def _poll_once(self) -> None:
        with self._cond:
            configs = list(self._configs.values())
        try:
            self._discover(configs)
        finally:
            with self._cond:
                self._polls_attempted += 1
                self._cond.notify_all()

    def _discover(self, configs: list[ModelConfig]) -> None:
        # file_system_storage_path_source.cc, PollFileSystemForServable; each message is
        # logged on every poll, as TF does (its poll is what the server waits on).
        discovered: dict[str, dict[int, str]] = {}
        for config in configs:
            problem = None
            if not os.path.exists(config.base_path):  # Env::FileExists (access F_OK)
                problem = (f"Could not find base path {config.base_path} for servable "
                           f"{config.name} with error NOT_FOUND: {config.base_path} not found")
            else:
                try:
                    children = os.listdir(config.base_path)
                except OSError as err:  # GetChildren's IOError: "<path>; <strerror>"
                    problem = f"{config.base_path}; {err.strerror}"
            if problem is not None:
                # One unreadable base path aborts the whole poll, for every model.
                log.error("FileSystemStoragePathSource encountered a filesystem access "
                          "error: %s", problem)
                return
            versions = self._versions_on_disk(config, children)
            if not versions:
                log.warning("No versions of servable %s found under base path %s. Did you "
                            "forget to name your leaf directory as a number (eg. '/1/')?",
                            config.name, config.base_path)
            discovered[config.name] = versions
        with self._cond:
            self._discovered = discovered
        self._manage_now.set()

    @staticmethod
    def _versions_on_disk(config: ModelConfig, children: list[str]) -> dict[int, str]:
        versions: dict[int, str] = {}
        for child in sorted(children):
            if not _VERSION_DIR.fullmatch(child) or int(child) > _INT64_MAX:
                continue
            version = int(child)
            if version in versions:
                log.warning("Multiple versions of servable %s found with version %d; using %s",
                            config.name, version, versions[version])
                continue
            versions[version] = os.path.join(config.base_path, child)
        return versions

    # --- the manager (AspiredVersionsManager + AvailabilityPreservingPolicy) ---

    def _manage_loop(self) -> None:
        while not self._stop.is_set():
            self._manage_now.wait(_MANAGER_TICK_SECONDS)
            self._manage_now.clear()
            if self._stop.is_set():
                return
            with self._cond:
                names = list(dict.fromkeys([*self._configs, *self._versions]))
            for name in names:
                self._sync_aspired(name)
            for name in names:
                if self._stop.is_set():
                    return
                self._next_action(name)

    def _aspired_paths(self, name: str) -> dict[int, str] | None:
        """Aspired version -> path; None when nothing is known yet (no good poll)."""
        config = self._configs.get(name)
        if config is None:
            return {}  # removed from the config: nothing is aspired any more
        if self._discovered is None or name not in self._discovered:
            return None
        found = self._discovered[name]
        return {v: found[v] for v in config.policy.aspired(found)}

    def _sync_aspired(self, name: str) -> None:
        with self._cond:
            aspired = self._aspired_paths(name)
            if aspired is None:
                return
            versions = self._versions.setdefault(name, {})
            for version, entry in versions.items():
                if version not in aspired and entry.aspired:
                    entry.aspired = False
                    if entry.state == START:
                        self._publish(name, entry, END)
            for version in sorted(aspired, reverse=True):
                entry = versions.get(version)
                # A version that ended and left the aspired set is forgotten by the manager;
                # aspiring it again starts afresh. A failed but still aspired one stays put.
                if entry is None or (entry.state == END and not entry.aspired):
                    self._generation += 1
                    versions[version] = _Version(version, aspired[version], self._generation)
                    self._publish(name, versions[version], START)
                else:
                    entry.aspired = True

    def _next_action(self, name: str) -> None:
        with self._cond:
            entries = list(self._versions.get(name, {}).values())
            unaspired_ready = sorted((e for e in entries if not e.aspired and e.state == AVAILABLE),
                                     key=lambda e: e.version)
            aspired_ready = any(e.aspired and e.state == AVAILABLE for e in entries)
            nothing_aspired = not any(e.aspired for e in entries)
            if unaspired_ready and (aspired_ready or len(unaspired_ready) > 1 or nothing_aspired):
                self._unload(name, unaspired_ready[0])
                return
            new = [e for e in entries if e.aspired and e.state == START]
            if not new:
                return
            entry = max(new, key=lambda e: e.version)
            self._publish(name, entry, LOADING)
        self._load(name, entry)

    def _unload(self, name: str, entry: _Version) -> None:
        self._publish(name, entry, UNLOADING)
        entry.servable = None
        self._publish(name, entry, END)
        log.info("Successfully unloaded servable version %s", _servable_id(name, entry.version))

    def _load(self, name: str, entry: _Version) -> None:
        """Load with retries; runs without the lock so status queries see LOADING."""
        attempts_left = self._max_retries
        while True:
            started = time.monotonic()
            try:
                servable = self._load_once(name, entry)
            except ServingError as err:
                error = err
            except Exception as err:  # noqa: BLE001 - any loader bug must end as a load error
                error = ServingError("INTERNAL", f"{type(err).__name__}: {err}")
            else:
                if servable is None:
                    return  # stopped mid-load
                self._metrics.record_load(entry.path, True, time.monotonic() - started)
                with self._cond:
                    entry.servable = servable
                    self._publish(name, entry, AVAILABLE)
                log.info("Successfully loaded servable version %s", _servable_id(name, entry.version))
                return
            self._metrics.record_load(entry.path, False, time.monotonic() - started)
            log.error("Loading servable: %s failed: %s: %s", _servable_id(name, entry.version),
                      error.code, error.message)
            if attempts_left > 0 and self._still_aspired(name, entry):
                attempts_left -= 1
                log.info("Retrying load of servable %s in %gs",
                         _servable_id(name, entry.version), self._retry_interval)
                if self._stop.wait(self._retry_interval):
                    return
                if self._still_aspired(name, entry):
                    continue
            with self._cond:
                entry.error = error
                self._publish(name, entry, END)
            return

    def _load_once(self, name: str, entry: _Version) -> Servable | None:
        if saved_model.detect(entry.path) == saved_model.SAVED_MODEL:
            program = tf_session.load_program(entry.path)  # imports TensorFlow the first time
        else:
            spec = read_model_spec(entry.path)
            if spec.load_seconds and self._stop.wait(spec.load_seconds):
                return None
            if spec.fail_load is not None:
                raise spec.fail_load
            program = build_program(spec)
        return Servable(name, entry.version, entry.path, program,
                        metrics=self._metrics, faults=self._faults)

    def _still_aspired(self, name: str, entry: _Version) -> bool:
        with self._cond:
            aspired = self._aspired_paths(name)
            return not self._stop.is_set() and (aspired is None or entry.version in aspired)

    def _publish(self, name: str, entry: _Version, state: str) -> None:
        with self._cond:
            entry.state = state
            self._history.append((name, entry.version, state))
            self._cond.notify_all()
