"""Which versions of a model are loaded, and their signatures, fetched once per version.

The metadata collector and the canary runner both follow TF Serving's loaded versions: a
loaded version's signatures never change, so each is fetched once and kept while the version
stays AVAILABLE.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Iterable

from exporter.tfserving.types import SignatureMap
from tfserving_wire.model_status import AVAILABLE, VersionStatus

Key = tuple[str, int]  # (model, version)


def available_versions(statuses: Iterable[VersionStatus]) -> list[int]:
    """The AVAILABLE versions, highest (the one unpinned requests get) first, each once."""
    return sorted({s.version for s in statuses if s.state == AVAILABLE}, reverse=True)


def tensor_count(signatures: SignatureMap) -> int:
    """Inputs and outputs of every signature."""
    return sum(len(s.inputs) + len(s.outputs) for s in signatures.values())


class TensorBudget:
    """Tensors that several caches hold together: in fleet mode every target has its own
    caches, and their sum must stay bounded too, not only each one."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self.used = 0

    def take(self, count: int) -> bool:
        with self._lock:
            if self.used + count > self._limit:
                return False
            self.used += count
            return True

    def give(self, count: int) -> None:
        with self._lock:
            self.used -= count


def _give_back(budget: TensorBudget, held: list[int]) -> None:
    budget.give(held[0])


class LoadedSignatures:
    """Signatures by (model, version), holding at most ``max_tensors`` tensors in all (and
    within ``shared``, when given): a version that does not fit is fetched again each time it
    is asked for instead."""

    def __init__(self, max_tensors: int, shared: TensorBudget | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Key, SignatureMap] = {}
        self._tensors = 0
        self._max_tensors = max_tensors
        self._shared = shared
        self._held = [0]  # what this cache holds of ``shared``, given back when it is gone
        self._closed = False
        if shared is not None:  # in case close() is never called
            weakref.finalize(self, _give_back, shared, self._held)

    def close(self) -> None:
        """Forget everything and cache nothing more (its owner is done): what it held of the
        shared budget is free for the others at once."""
        with self._lock:
            self._closed = True
            self._entries.clear()
            self._tensors = 0
            if self._shared is not None:
                self._shared.give(self._held[0])
                self._held[0] = 0

    def get(self, key: Key, fetch: Callable[[], SignatureMap]) -> SignatureMap:
        """The cached signatures of ``key``, or what ``fetch()`` returns (then cached).

        Fetched outside the lock, so one slow version cannot hold up the others; two callers
        racing on one version both fetch and the first answer is kept."""
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None:
            return cached
        fetched = fetch()
        size = tensor_count(fetched)
        with self._lock:
            if key not in self._entries and not self._closed and \
                    self._tensors + size <= self._max_tensors and (
                        self._shared is None or self._shared.take(size)):
                self._entries[key] = fetched
                self._tensors += size
                self._held[0] += size if self._shared is not None else 0
        return fetched

    def cached(self, key: Key) -> SignatureMap | None:
        with self._lock:
            return self._entries.get(key)

    def keep_only(self, keys: set[Key], models: set[str] | None = None) -> None:
        """Forget the versions not in ``keys``: of every model, or only of ``models`` (a caller
        that follows some models leaves the others' entries alone)."""
        with self._lock:
            for key in [k for k in self._entries
                        if k not in keys and (models is None or k[0] in models)]:
                size = tensor_count(self._entries.pop(key))
                self._tensors -= size
                if self._shared is not None:
                    self._shared.give(size)
                    self._held[0] -= size

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
