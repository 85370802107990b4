"""Runs every model's golden set on its own schedule, in the background.

Per model and cycle: ask TF Serving which versions are AVAILABLE, run the golden set unpinned
(the version clients get) and pinned against every other AVAILABLE version, record the
outcomes, and forget versions that are gone. At most one cycle per model is in flight and at
most ``max_concurrent`` models run at once (of all runners sharing a ``CanarySchedule``); the
work queue is bounded by the number of models.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import logging
import random
import threading
import time

from exporter.canary.golden import GoldenSet
from exporter.canary.probe import VersionProbe
from exporter.canary.results import ResultStore, RunOutcome
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.loaded_versions import (LoadedSignatures, TensorBudget,
                                                available_versions)
from exporter.tfserving.types import SignatureMap, TFServingError

log = logging.getLogger(__name__)

# The first run of each model starts within this many seconds (spread out, not all at once).
FIRST_RUN_SPREAD_SECONDS = 2.0
# Tensors of the cached signatures over all golden models' loaded versions: ten versions at
# the per-reply ceiling, far above real models, and a fixed bound on memory (~150 bytes each).
MAX_CACHED_TENSORS = 100_000


class CanarySchedule:
    """When each model's next cycle is due, and the bounded pool the cycles run on. The
    sidecar's runner has one of its own; in fleet mode the runners of all targets share one,
    so canary work is bounded across targets (``fleet.max_concurrent_canaries``), and
    ``per_runner`` keeps one target whose server never answers from taking every worker."""

    def __init__(self, max_concurrent: int, per_runner: int | None = None) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent, thread_name_prefix="canary")
        self._per_runner = per_runner
        self._wake = threading.Condition()
        self._stop = threading.Event()
        # (due, sequence, runner, model): one entry per model of each running runner, or its
        # cycle is in the pool or held back; the sequence keeps runners out of the comparison.
        self._due: list[tuple[float, int, CanaryRunner, str]] = []
        self._sequence = 0
        self._running: dict[CanaryRunner, int] = {}  # cycles in the pool, per runner
        self._held: dict[CanaryRunner, list[str]] = {}  # due, waiting for the runner's turn
        self._thread = threading.Thread(target=self._schedule, name="canary-scheduler",
                                        daemon=True)

    def add(self, runner: CanaryRunner, model: str, due: float) -> None:
        with self._wake:
            if self._stop.is_set() or runner.stopped:
                return
            self._sequence += 1
            heapq.heappush(self._due, (due, self._sequence, runner, model))
            if not self._thread.is_alive():
                self._thread.start()
            self._wake.notify_all()

    def forget(self, runner: CanaryRunner) -> None:
        """Drop a stopped runner's pending cycles (one in the pool finishes by its deadline)."""
        with self._wake:
            self._due = [entry for entry in self._due if entry[2] is not runner]
            heapq.heapify(self._due)
            self._held.pop(runner, None)

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _schedule(self) -> None:
        with self._wake:
            while not self._stop.is_set():
                # What the last turn looked at must not stay referenced while this waits:
                # a forgotten target's runner and caches are to be freed.
                runner = None
                if not self._due:
                    self._wake.wait(timeout=60)
                    continue
                due, _, runner, model = self._due[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(timeout=delay)
                    continue
                heapq.heappop(self._due)
                if runner.stopped:
                    continue
                if self._per_runner is not None and \
                        self._running.get(runner, 0) >= self._per_runner:
                    self._held.setdefault(runner, []).append(model)
                    continue
                self._submit(runner, model)

    def _submit(self, runner: CanaryRunner, model: str) -> None:
        """Under ``_wake``: run the cycle in the pool."""
        self._running[runner] = self._running.get(runner, 0) + 1
        # A runner stopped while this waited in the pool must not run: its clients are
        # closed, and its target may be forgotten.
        future = self._executor.submit(
            lambda r=runner, m=model: None if r.stopped else r._cycle(m))
        future.add_done_callback(lambda _f, r=runner, m=model: self._done(r, m))

    def _done(self, runner: CanaryRunner, model: str) -> None:
        with self._wake:
            left = self._running.pop(runner) - 1
            if left:
                self._running[runner] = left
            held = self._held.get(runner)
            if held and not runner.stopped and not self._stop.is_set():
                self._submit(runner, held.pop(0))
                if not held:
                    del self._held[runner]
        self.add(runner, model, runner._next_due(model))


class CanaryRunner:
    def __init__(self, golden_sets: dict[str, GoldenSet], client, protocol: str, *,
                 interval: float, intervals: dict[str, float] | None = None,
                 jitter: float = 0.1, timeout: float = 10.0, batch_size: int = 64,
                 max_concurrent: int = 2, store: ResultStore | None = None,
                 rng: random.Random | None = None,
                 schedule: CanarySchedule | None = None, subject: str = "",
                 tensor_budget: TensorBudget | None = None) -> None:
        self.store = store or ResultStore()
        self.store.set_golden_examples({m: g.n_examples for m, g in golden_sets.items()})
        self._golden = golden_sets
        self._client = client
        self._protocol = protocol
        self._probes = {model: VersionProbe(client, protocol, golden, batch_size)
                        for model, golden in golden_sets.items()}
        self._interval = interval
        self._intervals = dict(intervals or {})
        self._jitter = jitter
        self._timeout = timeout
        self._rng = rng or random.Random()
        # max_concurrent applies to a schedule of the runner's own; a shared one has its own.
        self._own_schedule = schedule is None
        self._schedule = schedule or CanarySchedule(max_concurrent)
        self._signatures = LoadedSignatures(MAX_CACHED_TENSORS, tensor_budget)
        self._last_problem: dict[str, str | None] = {}
        self._subject = subject  # "target HOST:PORT: " in fleet mode, naming the server
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cycles_completed: dict[str, int] = dict.fromkeys(golden_sets, 0)

    @property
    def models(self) -> list[str]:
        return sorted(self._golden)

    @property
    def golden_paths(self) -> dict[str, str]:
        """Model -> the golden file its canaries run."""
        return {model: golden.path for model, golden in sorted(self._golden.items())}

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        now = time.monotonic()
        for model in sorted(self._golden):
            spread = min(FIRST_RUN_SPREAD_SECONDS, self._interval_of(model))
            self._schedule.add(self, model, now + self._rng.uniform(0, spread))

    def stop(self) -> None:
        self._stop.set()
        if self._own_schedule:
            self._schedule.stop()
        else:
            self._schedule.forget(self)
        self._signatures.close()

    # -- scheduling ------------------------------------------------------------------------

    def _interval_of(self, model: str) -> float:
        return self._intervals.get(model, self._interval)

    def _next_due(self, model: str) -> float:
        stretch = 1 + self._rng.uniform(-self._jitter, self._jitter)
        return time.monotonic() + self._interval_of(model) * stretch

    # -- one cycle of one model ------------------------------------------------------------

    def _cycle(self, model: str) -> None:
        try:
            self._run_model(model)
        except Exception:  # noqa: BLE001 - a bug must not stop this model's schedule
            log.exception("%scanary cycle of model %s failed unexpectedly", self._subject,
                          model)
        finally:
            with self._lock:
                self.cycles_completed[model] += 1

    def _available_versions(self, model: str) -> list[int] | None:
        try:
            statuses = self._client.model_status(model, Deadline.after(self._timeout))
        except TFServingError as err:
            if err.code == "NOT_FOUND":
                return []
            self._report(model, f"cannot read the status of model {model}: {err}")
            return None
        return available_versions(statuses)

    def _signatures_of(self, model: str, version: int) -> SignatureMap:
        """Signatures of a loaded version (needed for gRPC tensors)."""
        return self._signatures.get((model, version), lambda: self._client.model_metadata(
            model, version, Deadline.after(self._timeout)))

    def _run_model(self, model: str) -> None:
        versions = self._available_versions(model)
        if versions is None:
            return  # TF Serving unreachable: keep the last results, try again next cycle
        self.store.keep_versions(model, set(versions))
        # Only this model's versions: the other models' cycles run concurrently.
        self._signatures.keep_only({(model, version) for version in versions}, {model})
        if not versions:
            return
        serving, others = versions[0], versions[1:]
        probe = self._probes[model]
        runs = [(None, serving)] + [(version, version) for version in others]
        for pinned, expected in runs:
            attributed, outcome = probe.run(
                pinned, expected, self._timeout,
                lambda version=expected: self._signatures_of(model, version))
            if self._stop.is_set():
                return  # shutting down: the channel may be closing under this run
            if attributed in versions:
                self.store.record(model, attributed, outcome)
            self._log_outcome(model, attributed, outcome)

    # -- logging only on change ----------------------------------------------------------

    def _report(self, model: str, problem: str | None) -> None:
        if self._last_problem.get(model) != problem:
            self._last_problem[model] = problem
            if problem:
                log.warning("%s%s", self._subject, problem)

    def _log_outcome(self, model: str, version: int, outcome: RunOutcome) -> None:
        key = f"{model}/{version}"
        text = None if outcome.passed else (
            f"canary of model {model} version {version} failed ({outcome.reason}): "
            f"{outcome.detail}")
        previous = self._last_problem.get(key, "unset")
        if text != previous:
            self._last_problem[key] = text
            if text:
                log.warning("%s%s", self._subject, text)
            elif previous not in (None, "unset"):
                log.info("%scanary of model %s version %s passes again", self._subject, model,
                         version)
