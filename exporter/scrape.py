"""State of one /metrics request: its deadline, the clients, and what reached TF Serving."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable, Iterable, TypeVar

from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import TFServingError, VersionStatus

T = TypeVar("T")
R = TypeVar("R")


class Scrape:
    """Everything the collectors of one scrape share.

    ``reached`` records, per protocol, whether any call of this scrape got an answer from TF
    Serving; ``tfserving_up`` is derived from it. Model status is memoised so the metadata
    collector reuses what the status collector fetched.
    """

    def __init__(self, deadline: Deadline, clients: dict, executor: concurrent.futures.Executor,
                 models: list[str]) -> None:
        self.deadline = deadline
        self.models = models  # the (capped) model names this scrape covers
        self.clients = clients  # protocol -> GrpcClient | RestClient
        self._executor = executor
        self._lock = threading.Lock()
        self.reached: dict[str, bool] = {}
        self._status_memo: dict[str, list[VersionStatus]] = {}

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

    def model_status(self, protocol: str, model: str) -> list[VersionStatus]:
        with self._lock:
            cached = self._status_memo.get(model)
        if cached is not None:
            return cached
        statuses = self.call(protocol, self.client(protocol).model_status, model)
        with self._lock:
            self._status_memo[model] = statuses
        return statuses

    def cached_model_status(self, model: str) -> list[VersionStatus] | None:
        """What this scrape already learnt about the model, without asking again."""
        with self._lock:
            return self._status_memo.get(model)

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[tuple[T, R | BaseException]]:
        """Apply ``function`` to items concurrently; each result is a value or the exception it
        raised. Waits no longer than the scrape deadline (calls carry that deadline too)."""
        items = list(items)
        futures = [self._executor.submit(function, item) for item in items]
        results: list[tuple[T, R | BaseException]] = []
        for item, future in zip(items, futures):
            try:
                results.append((item, future.result(timeout=max(self.deadline.remaining(), 0)
                                                    + 0.5)))
            except concurrent.futures.TimeoutError:
                future.cancel()
                results.append((item, TFServingError("exporter", "scrape", "DEADLINE_EXCEEDED",
                                                     "scrape deadline passed", reached=False)))
            except Exception as err:  # noqa: BLE001 - handed to the collector to report
                results.append((item, err))
        return results
