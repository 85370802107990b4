"""Runs every model's golden set on its own schedule, in the background.

Per model and cycle: ask TF Serving which versions are AVAILABLE, run the golden set unpinned
(the version clients get) and pinned against every other AVAILABLE version, record the
outcomes, and forget versions that are gone. At most one cycle per model is in flight and at
most ``max_concurrent`` models run at once; the work queue is bounded by the number of models.
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
from exporter.tfserving.loaded_versions import LoadedSignatures, available_versions
from exporter.tfserving.types import SignatureMap, TFServingError

log = logging.getLogger(__name__)

# The first run of each model starts within this many seconds (spread out, not all at once).
FIRST_RUN_SPREAD_SECONDS = 2.0
# Tensors of the cached signatures over all golden models' loaded versions: ten versions at
# the per-reply ceiling, far above real models, and a fixed bound on memory (~150 bytes each).
MAX_CACHED_TENSORS = 100_000


class CanaryRunner:
    def __init__(self, golden_sets: dict[str, GoldenSet], client, protocol: str, *,
                 interval: float, intervals: dict[str, float] | None = None,
                 jitter: float = 0.1, timeout: float = 10.0, batch_size: int = 64,
                 max_concurrent: int = 2, store: ResultStore | None = None,
                 rng: random.Random | None = None) -> None:
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
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrent, thread_name_prefix="canary")
        self._signatures = LoadedSignatures(MAX_CACHED_TENSORS)
        self._last_problem: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Condition(self._lock)
        self._due: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._schedule, name="canary-scheduler",
                                        daemon=True)
        self.cycles_completed: dict[str, int] = dict.fromkeys(golden_sets, 0)

    @property
    def models(self) -> list[str]:
        return sorted(self._golden)

    @property
    def golden_paths(self) -> dict[str, str]:
        """Model -> the golden file its canaries run."""
        return {model: golden.path for model, golden in sorted(self._golden.items())}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        now = time.monotonic()
        with self._lock:
            for model in sorted(self._golden):
                spread = min(FIRST_RUN_SPREAD_SECONDS, self._interval_of(model))
                heapq.heappush(self._due, (now + self._rng.uniform(0, spread), model))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- scheduling ------------------------------------------------------------------------

    def _interval_of(self, model: str) -> float:
        return self._intervals.get(model, self._interval)

    def _next_due(self, model: str) -> float:
        stretch = 1 + self._rng.uniform(-self._jitter, self._jitter)
        return time.monotonic() + self._interval_of(model) * stretch

    def _schedule(self) -> None:
        with self._wake:
            while not self._stop.is_set():
                if not self._due:
                    self._wake.wait(timeout=60)
                    continue
                due, model = self._due[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(timeout=delay)
                    continue
                heapq.heappop(self._due)
                future = self._executor.submit(self._cycle, model)
                future.add_done_callback(lambda _f, m=model: self._reschedule(m))

    def _reschedule(self, model: str) -> None:
        with self._wake:
            if not self._stop.is_set():
                heapq.heappush(self._due, (self._next_due(model), model))
                self._wake.notify_all()

    # -- one cycle of one model ------------------------------------------------------------

    def _cycle(self, model: str) -> None:
        try:
            self._run_model(model)
        except Exception:  # noqa: BLE001 - a bug must not stop this model's schedule
            log.exception("canary cycle of model %s failed unexpectedly", model)
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
                log.warning(problem)

    def _log_outcome(self, model: str, version: int, outcome: RunOutcome) -> None:
        key = f"{model}/{version}"
        text = None if outcome.passed else (
            f"canary of model {model} version {version} failed ({outcome.reason}): "
            f"{outcome.detail}")
        previous = self._last_problem.get(key, "unset")
        if text != previous:
            self._last_problem[key] = text
            if text:
                log.warning(text)
            elif previous not in (None, "unset"):
                log.info("canary of model %s version %s passes again", model, version)
