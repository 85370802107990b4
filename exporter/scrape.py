"""State of one /metrics request: its deadline, the clients, and what reached TF Serving."""

from __future__ import annotations

import concurrent.futures
import threading
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, TypeVar

from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import TFServingError
from tfserving_wire.model_status import VERSION_STATES, VersionStatus

T = TypeVar("T")
R = TypeVar("R")

_STATE_RANK = {state: rank for rank, state in enumerate(VERSION_STATES)}


def unique_versions(statuses: list[VersionStatus]) -> tuple[list[VersionStatus], int]:
    """One entry per version, and how many duplicates were left out.

    TF Serving never lists a version twice; a reply that does is broken, and exporting both
    would give two series of one version with conflicting values. The entry kept does not
    depend on the reply's order: the furthest lifecycle state wins, then the error.
    """
    best: dict[int, VersionStatus] = {}
    for status in statuses:
        kept = best.get(status.version)
        if kept is None or _rank(status) > _rank(kept):
            best[status.version] = status
    return list(best.values()), len(statuses) - len(best)


def _rank(status: VersionStatus) -> tuple:
    return (_STATE_RANK.get(status.state, -1), status.error_code != "OK", status.error_code,
            status.error_message, status.state)


class Scrape:
    """Everything the collectors of one scrape share.

    ``reached`` records, per protocol, whether any call of this scrape got an answer from TF
    Serving; ``tfserving_up`` is derived from it. ``model_statuses()`` is the scrape's one
    view of model status, over ``status_protocol``, whichever collector asks first.
    """

    def __init__(self, deadline: Deadline, clients: dict,
                 executors: dict[str, concurrent.futures.Executor], models: list[str],
                 dropped: Callable[[str, int], None] = lambda kind, count: None, *,
                 status_protocol: str | None) -> None:
        self.deadline = deadline
        self.models = models  # the (capped) model names this scrape covers
        self.clients = clients  # protocol -> GrpcClient | RestClient
        self.status_protocol = status_protocol  # see Collection: the one all readers share
        self._executors = executors  # protocol -> its own bounded pool
        self._dropped = dropped
        self._lock = threading.Lock()
        self.reached: dict[str, bool] = {}
        # Held for the whole fetch (bounded by the deadline, as scrape.map is), so a second
        # reader waits for the first fetch instead of starting another.
        self._status_lock = threading.Lock()
        self._statuses: Mapping[str, list[VersionStatus] | BaseException] | None = None
        self._started: dict[str, concurrent.futures.Future] = {}

    def client(self, protocol: str):
        return self.clients[protocol]

    def call(self, protocol: str, operation: Callable[..., R], *args) -> R:
        """Run ``operation(*args, deadline)`` and record whether it reached TF Serving."""
        try:
            result = operation(*args, self.deadline)
        except TFServingError as err:
            self._mark(protocol, err.reached_server)
            raise
        self._mark(protocol, True)
        return result

    def _mark(self, protocol: str, reached: bool) -> None:
        with self._lock:
            self.reached[protocol] = self.reached.get(protocol, False) or reached

    def model_statuses(self) -> Mapping[str, list[VersionStatus] | BaseException]:
        """Each model's versions (duplicates merged) or the error its status call raised,
        fetched for all models at once the first time any collector asks; every later call
        of this scrape gets the same answer, so collectors agree whatever their order.

        Call it from the collector's own thread, never from inside ``map``: the fetch needs
        the pool's workers."""
        with self._status_lock:
            if self._statuses is None:
                self._statuses = MappingProxyType(dict(self._fetch_statuses()))
            return self._statuses

    def _fetch_statuses(self) -> list[tuple[str, list[VersionStatus] | BaseException]]:
        protocol = self.status_protocol
        client = self.client(protocol)
        if not hasattr(client, "model_statuses"):  # one call at a time each (REST)
            return self.map(protocol, self._fetch_status, self.models)
        # Concurrent calls without a pool thread each (gRPC futures on the one channel).
        results = []
        for model, result in zip(self.models, client.model_statuses(self.models,
                                                                    self.deadline)):
            if isinstance(result, TFServingError):
                self._mark(protocol, result.reached_server)
            else:
                self._mark(protocol, True)
                result = self._unique(result)
            results.append((model, result))
        return results

    def _fetch_status(self, model: str) -> list[VersionStatus]:
        return self._unique(self.call(self.status_protocol,
                                      self.client(self.status_protocol).model_status, model))

    def _unique(self, statuses: list[VersionStatus]) -> list[VersionStatus]:
        statuses, duplicates = unique_versions(statuses)
        if duplicates:
            self._dropped("duplicate_version", duplicates)
        return statuses

    def start(self, key: str, protocol: str, function: Callable[[], R]) -> None:
        """Begin ``function`` on the protocol's pool now, for a collector that will want its
        result later in this scrape (``started``): its wait overlaps the collectors before."""
        self._started[key] = self.submit(protocol, function)

    def started(self, key: str, function: Callable[[], R]) -> R:
        """The result of what ``start`` began under ``key`` (by the deadline), or of
        ``function()`` run now when nothing was started."""
        future = self._started.pop(key, None)
        if future is None:
            return function()
        try:
            return future.result(timeout=max(self.deadline.remaining(), 0))
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            future.cancel()
            raise _expired() from None

    def submit(self, protocol: str, function: Callable[[], R]) -> concurrent.futures.Future:
        """Run ``function`` on the protocol's pool, unless this scrape's deadline has passed by
        the time a worker takes it: work queued behind stuck calls is dropped, not done late."""
        def bounded() -> R:
            if self.deadline.expired():
                raise _expired()
            return function()
        return self._executors[protocol].submit(bounded)

    def map(self, protocol: str, function: Callable[[T], R],
            items: Iterable[T]) -> list[tuple[T, R | BaseException]]:
        """Apply ``function`` to items concurrently on the protocol's pool; each result is a
        value or the exception it raised. Returns by the scrape deadline: what has not
        finished then is abandoned (its calls carry the same deadline and end by themselves)."""
        items = list(items)
        futures = [self.submit(protocol, lambda item=item: function(item)) for item in items]
        concurrent.futures.wait(futures, timeout=max(self.deadline.remaining(), 0))
        results: list[tuple[T, R | BaseException]] = []
        for item, future in zip(items, futures):
            if not future.done():
                future.cancel()
                results.append((item, _expired()))
                continue
            try:
                results.append((item, future.result()))
            except concurrent.futures.CancelledError:
                results.append((item, _expired()))
            except Exception as err:  # noqa: BLE001 - handed to the collector to report
                results.append((item, err))
        return results


def _expired() -> TFServingError:
    return TFServingError("exporter", "scrape", "DEADLINE_EXCEEDED", "scrape deadline passed",
                          reached=False)
