"""The /probe side of one configuration: checks a probe's query, finds or builds its target,
and collects it within the probe's deadline, a bounded number of probes at a time."""

from __future__ import annotations

import dataclasses
import queue
import threading

from exporter.assembly import build_canaries, build_clients, build_collection
from exporter.collection import WORKERS_PER_PROTOCOL, call_pools, close_pools
from exporter.config import PROTOCOLS, Config
from exporter.fleet.request import ProbeRefused, ProbeRequest, parse_probe_query
from exporter.fleet.targets import Fleet, Target
from exporter.selfmetrics import CallMetrics, SelfMetrics
from exporter.tfserving.deadline import Deadline, scrape_budget
from exporter.tfserving.loaded_versions import TensorBudget


# Signature tensors cached over all targets (metadata and canaries; ~150 bytes each): what
# one sidecar may hold twice over, so the targets together stay within tens of MiB.
FLEET_MAX_CACHED_TENSORS = 200_000
# A probe that gets its slot with less than this share of its budget left is answered 503:
# its calls would time out and report a healthy server as down.
MIN_BUDGET_SHARE = 0.1


class Prober:
    def __init__(self, config: Config, selfmetrics: SelfMetrics,
                 golden: dict[str, tuple[dict, list[str]]]) -> None:
        """``golden``: per module name, its golden sets and the problems of those that did
        not load (loaded once, shared by every target of the module)."""
        fleet = config.fleet
        self._config = config
        self._golden = golden
        # A probe slot is a sidecar scrape's worth of call pools, its own while it runs: a
        # target stuck until its deadline cannot take the workers of another probe. The
        # threads are started as calls need them, and do not grow with the targets.
        self._pools = [call_pools(PROTOCOLS, WORKERS_PER_PROTOCOL, f"probe{slot}")
                       for slot in range(fleet.max_concurrent_probes)]
        self._free: queue.Queue = queue.Queue()
        for pools in self._pools:
            self._free.put(pools)
        # Probes waiting for a slot, at most as many as there are slots: each holds one of
        # the HTTP server's threads while it waits.
        self._waiting = threading.BoundedSemaphore(fleet.max_concurrent_probes)
        self._tensors = TensorBudget(FLEET_MAX_CACHED_TENSORS)
        self._schedule = None
        if any(sets for sets, _ in golden.values()):
            from exporter.canary.runner import CanarySchedule
            # One cycle per target at a time: a target whose server never answers holds one
            # worker, not all of them.
            self._schedule = CanarySchedule(fleet.max_concurrent_canaries, per_runner=1)
        self._fleet = Fleet(self._build, max_targets=fleet.max_targets,
                            expiry=fleet.target_expiry,
                            dropped=selfmetrics.dropped.labels("target").inc)

    def targets_tracked(self) -> int:
        return len(self._fleet)

    def close(self) -> None:
        self._fleet.close()
        if self._schedule is not None:
            self._schedule.stop()
        for pools in self._pools:
            close_pools(pools)

    def check(self, query: str) -> ProbeRequest:
        """The probe ``query`` asks for; raises ProbeRefused (400, 403) naming the problem."""
        return parse_probe_query(query, self._config)

    def probe(self, request: ProbeRequest, scrape_timeout: str | None,
              waited: float = 0.0) -> tuple[list, object]:
        """The families of one probe and the registry of its target's own counters.
        ``waited``: seconds the request already waited for a thread. Raises ProbeRefused
        (503) when no probe slot frees up in time."""
        tf = request.module.tfserving
        budget = scrape_budget(scrape_timeout, tf.timeout_offset, tf.timeout)
        deadline = Deadline.after(budget - waited)
        pools = self._slot(deadline)
        try:
            if deadline.remaining() < budget * MIN_BUDGET_SHARE:
                raise _busy()
            target = self._fleet.enter(request)
            try:
                return (target.collection.collect(deadline, budget, executors=pools),
                        target.metrics.registry)
            finally:
                self._fleet.leave(target)
        finally:
            self._free.put(pools)

    def _slot(self, deadline: Deadline) -> dict:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        if deadline.expired() or not self._waiting.acquire(blocking=False):
            raise _busy()
        try:
            return self._free.get(timeout=max(deadline.remaining(), 0))
        except queue.Empty:
            raise _busy() from None
        finally:
            self._waiting.release()

    def _build(self, request: ProbeRequest, canaries: bool) -> Target:
        module = request.module
        config = dataclasses.replace(module, tfserving=dataclasses.replace(
            module.tfserving, grpc_address=request.grpc_target,
            rest_address=request.rest_address))
        metrics = CallMetrics()
        subject = f"target {request.grpc_address}: "  # in its log lines
        clients = build_clients(config, metrics)
        runner = collector = None
        if canaries:
            golden, problems = self._golden.get(request.module_name, ({}, []))
            runner, collector = build_canaries(config, golden, problems, clients,
                                               self._schedule, subject, self._tensors)
        try:
            collection = build_collection(
                config, metrics, clients, [collector] if collector else [],
                list(request.models) + (runner.models if runner else []),
                executors={}, subject=subject,  # each probe brings its slot's pools
                tensor_budget=self._tensors)
        except BaseException:
            for client in clients.values():  # channels and connections must not outlive this
                client.close()
            raise
        return Target(collection, metrics, runner)


def _busy() -> ProbeRefused:
    return ProbeRefused("503 Service Unavailable", "too many concurrent probes "
                        "(fleet.max_concurrent_probes); try again")
