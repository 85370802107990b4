"""Whether a series of TF Serving's page gets into a scrape's output: the line budget, the
model gate (``limits.max_models``) and TF series identity, which tells a duplicate from two
series to sum. Separate because every sink (counters, histograms, pass-through) applies them
and none owns them.
"""

from __future__ import annotations

import bisect
from typing import Callable


class _Budget:
    """Exported lines still allowed in this scrape."""

    def __init__(self, lines: int) -> None:
        self.left = lines


class _ModelGate:
    """``limits.max_models`` for the bridged families, decided while the page is read.

    Known (configured) models are always admitted; other names are admitted while the total of
    distinct models is under ``max_models`` and, past that, only by pushing out the greatest
    admitted other name, so that at the end the others kept are the smallest names: "sorted
    order", whatever order the page lists them in. A pushed-out model's series are dropped
    (``evict``); a model refused or pushed out never comes back in the same scrape.
    """

    def __init__(self, known: set[str], max_models: int,
                 evict: Callable[[str], None]) -> None:
        self.known = known
        self.max_models = max_models
        self.admitted: set[str] = set()
        self._others: list[str] = []  # sorted
        self._known_seen = 0
        self._evict = evict

    def admit(self, model: str) -> bool:
        if model in self.admitted:
            return True
        others = self._others
        if model in self.known:
            self.admitted.add(model)
            self._known_seen += 1
            while others and self._known_seen + len(others) > self.max_models:
                self._push_out(others.pop())
            return True
        if self._known_seen + len(others) < self.max_models:
            bisect.insort(others, model)
            self.admitted.add(model)
            return True
        if others and model < others[-1]:
            self._push_out(others.pop())
            bisect.insort(others, model)
            self.admitted.add(model)
            return True
        return False

    def _push_out(self, model: str) -> None:
        self.admitted.discard(model)
        self._evict(model)


# Duplicates. Two *different* TF series that map to one exported series are summed: the
# exported series is their aggregate over what the mapping leaves out, like PromQL's
# ``sum without (...)``. That happens when TF Serving spells one thing two ways (runtime_latency
# has no entrypoint label, so REST ``predict`` and gRPC ``Predict`` would both become
# api="predict"; today TF writes ``Predict`` for both, but nothing promises it), when TF adds a
# label the bridge does not export (a future ``signature_name`` would otherwise leave one
# arbitrary signature's requests), or when two model paths map to one (model, version).
# Keeping one of them instead would silently lose requests; summing keeps every request counted
# once. (Counter resets of one part show as a reset of the sum, as with ``sum()`` in PromQL.)
# Histograms are summed bucket by bucket only when their bucket limits are the same; otherwise
# the later series is dropped as invalid. The *same* TF series written twice (the same labels,
# in any order) is a broken page, not two parts of anything: the first is kept, the rest are
# dropped and counted as invalid.


def _identity(found: dict[str, str]) -> int:
    """A TF series' identity (its labels in any order), to tell the same series written twice
    from two series that map to one exported series. A hash (64 bits: a collision among a
    page's series is far less likely than a bit flip) keeps what a scrape holds small."""
    return hash(frozenset(found.items()))


def _add_identity(identities: int | tuple, identity: int) -> int | tuple | None:
    """The identities of an exported series with one more TF series, or None when that TF
    series is already among them (the same series twice)."""
    if identities.__class__ is int:
        return None if identities == identity else (identities, identity)
    return None if identity in identities else (*identities, identity)


def _count_of(identities: int | tuple) -> int:
    return 1 if identities.__class__ is int else len(identities)
