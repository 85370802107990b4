"""Runs the enabled collectors for one scrape and adds the scrape-level metrics.

Each collector catches its own failure: it sets its success gauge to 0, is logged when its
error changes (not on every scrape), and leaves the others to carry on.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Callable

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.base import CollectorError, ScrapeCollector
from exporter.logsetup import RATE_LIMIT_SECONDS
from exporter.scrape import Scrape
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import TFServingError

log = logging.getLogger(__name__)

# Calls for different models run concurrently, this many at a time per protocol.
WORKERS_PER_PROTOCOL = 8


class _ErrorLog:
    """Logs a collector's error when it changes and once when it recovers; an error that
    lasts is logged again after the log's rate-limit window, so a failure whose first line
    the rate limit held back (it followed another within the window) is still seen."""

    def __init__(self, clock=time.monotonic, subject: str = "") -> None:
        self._subject = subject  # "target HOST:PORT: " in fleet mode, naming the server
        self._last: dict[str, str | None] = {}
        self._logged_at: dict[str, float] = {}
        self._clock = clock

    def update(self, collector: str, error: str | None) -> None:
        previous = self._last.get(collector)
        now = self._clock()
        if error == previous and (error is None or now - self._logged_at.get(collector, now)
                                  < RATE_LIMIT_SECONDS):
            return
        self._last[collector] = error
        self._logged_at[collector] = now
        if error is not None:
            log.warning("%scollector %s failed: %s", self._subject, collector, error)
        elif previous is not None:
            log.info("%scollector %s recovered", self._subject, collector)


def call_pools(protocols, workers: int, name: str) -> dict[str, concurrent.futures.Executor]:
    """A pool per protocol, ``workers`` threads each, started as calls need them."""
    return {protocol: concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=f"{name}-{protocol}") for protocol in protocols}


def close_pools(pools: dict[str, concurrent.futures.Executor]) -> None:
    """Queued calls are dropped; running ones end by their own deadline."""
    for pool in pools.values():
        pool.shutdown(wait=False, cancel_futures=True)


class Collection:
    """The TF Serving side of /metrics: collectors plus ``tfserving_up`` per protocol."""

    def __init__(self, clients: dict, collectors: list[ScrapeCollector], ping_paths: dict,
                 models: Callable[[], list[str]], workers_per_protocol: int = WORKERS_PER_PROTOCOL,
                 dropped: Callable[[str, int], None] = lambda kind, count: None,
                 executors: dict[str, concurrent.futures.Executor] | None = None,
                 subject: str = "") -> None:
        self.models = models  # the (capped) model names a scrape covers, as of now
        self.clients = clients  # protocol -> client with ping()
        self.collectors = collectors
        self._ping_paths = ping_paths  # protocol -> extra args for ping()
        self._dropped = dropped
        # A pool per protocol: REST calls stuck on a dripping server cannot take the workers
        # that gRPC calls (and the gRPC ping) need, and the other way round. A fleet target's
        # collection has none: each probe brings its slot's pools to collect().
        self._own_executors = executors is None
        self._executors = executors if executors is not None else call_pools(
            clients, workers_per_protocol, "tfserving")
        self._errors = _ErrorLog(subject=subject)
        self._subject = subject
        self._status_protocol = status_protocol(collectors, clients)

    def close(self) -> None:
        for collector in self.collectors:
            close = getattr(collector, "close", None)
            if close is not None:
                close()
        if self._own_executors:
            close_pools(self._executors)
        for client in self.clients.values():
            client.close()

    def collect(self, deadline: Deadline, budget: float,
                executors: dict[str, concurrent.futures.Executor] | None = None,
                ) -> list[Metric]:
        """``executors``: the call pools of this scrape, instead of the collection's own (a
        fleet probe brings its slot's)."""
        if not self.clients:
            return []  # fleet mode: no TF Serving of its own, /probe reads each target
        scrape = Scrape(deadline, self.clients, executors or self._executors, self.models(),
                        self._dropped, status_protocol=self._status_protocol)
        # Pinged alongside the collectors, so a collector stuck until the deadline cannot
        # make a protocol that still answers look down.
        pings = [scrape.submit(protocol, lambda protocol=protocol: self._ping(scrape, protocol))
                 for protocol in sorted(self.clients)]
        for collector in self.collectors:  # calls whose wait can overlap the others' work
            begin = getattr(collector, "begin", None)
            if begin is not None:
                begin(scrape)
        success = GaugeMetricFamily(
            "tfserving_exporter_collector_success",
            "1 if the collector succeeded in this scrape.", labels=["collector"])
        duration = GaugeMetricFamily(
            "tfserving_exporter_collector_duration_seconds",
            "Time the collector took in this scrape.", labels=["collector"])
        families: list[Metric] = []
        for collector in self.collectors:
            started = time.monotonic()
            error = None
            try:
                families.extend(collector.collect(scrape))
            except (CollectorError, TFServingError) as err:
                error = str(err)
            except Exception as err:  # noqa: BLE001 - one collector must not sink the scrape
                error = f"unexpected {type(err).__name__}: {err}"
                log.exception("%scollector %s raised unexpectedly", self._subject,
                              collector.name)
            self._errors.update(collector.name, error)
            success.add_metric([collector.name], 0 if error else 1)
            duration.add_metric([collector.name], time.monotonic() - started)

        concurrent.futures.wait(pings, timeout=max(deadline.remaining(), 0))
        families.extend([success, duration, self._up(scrape), _timeout_family(budget)])
        return families

    def _ping(self, scrape: Scrape, protocol: str) -> None:
        try:
            scrape.call(protocol, self.clients[protocol].ping,
                        *self._ping_paths.get(protocol, ()))
        except TFServingError:
            pass  # recorded in scrape.reached

    def _up(self, scrape: Scrape) -> Metric:
        up = GaugeMetricFamily("tfserving_up",
                               "1 if this scrape reached TF Serving over the protocol.",
                               labels=["protocol"])
        for protocol in sorted(self.clients):
            up.add_metric([protocol], 1 if scrape.reached.get(protocol) else 0)
        return up


def status_protocol(collectors: list[ScrapeCollector], clients: dict) -> str | None:
    """The protocol a scrape fetches model status over: the one its readers name (the status
    collector's; the metadata collector is built with the same), else the first configured
    protocol for readers that take any (the canary collector)."""
    named = {c.status_protocol for c in collectors if getattr(c, "status_protocol", None)}
    if len(named) > 1:
        raise ValueError(f"collectors want model status over {' and '.join(sorted(named))}; "
                         "a scrape fetches it once, over one protocol")
    return named.pop() if named else min(clients, default=None)


def _timeout_family(budget: float) -> Metric:
    family = GaugeMetricFamily(
        "tfserving_exporter_scrape_timeout_seconds",
        "Time this scrape allowed for calls to TF Serving (scrape timeout minus offset, "
        "capped by tfserving.timeout).")
    family.add_metric([], budget)
    return family

