"""What every TF Serving collector shares: a name, a protocol, and ``collect(scrape)``."""

from __future__ import annotations

from typing import Iterable, Protocol

from prometheus_client.core import Metric

from exporter.scrape import Scrape


class CollectorError(Exception):
    """A collector could not do its whole job; ``partial`` metrics may still be exported."""


class ScrapeCollector(Protocol):
    """A collector that reads ``scrape.model_statuses()`` and cares over which protocol they
    are fetched also has ``status_protocol``; all such collectors of a scrape must agree. One
    that makes a call whose wait can overlap the other collectors' work may also have
    ``begin(scrape)``, called before any collector runs (``scrape.start``/``started``)."""

    name: str

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        """Yield metric families; raise CollectorError (after yielding what it could) when
        part of the work failed."""
        ...


class Limiter:
    """Caps a list of items and reports how many it dropped, so label sets stay bounded."""

    def __init__(self, dropped_counter, kind: str, limit: int) -> None:
        self._counter = dropped_counter
        self._kind = kind
        self.limit = limit

    def cap(self, items: list, count: bool = True) -> list:
        """The first ``limit`` items; with ``count`` the rest are counted as dropped now
        (without, the caller counts them with ``count()`` when it reports them)."""
        if len(items) <= self.limit:
            return items
        if count:
            self.count(len(items) - self.limit)
        return items[: self.limit]

    def count(self, dropped: int) -> None:
        self._counter.labels(self._kind).inc(dropped)
