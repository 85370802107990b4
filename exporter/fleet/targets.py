"""The targets /probe has seen: each keeps its clients, caches and canaries between probes.

A target is one server read one way (``ProbeRequest.key``). At most ``max_targets`` are
tracked; a probe of a further one is answered by a target built for that probe alone and
closed after it (no canaries, no reuse), and counted as dropped. A tracked target not probed
for ``expiry`` seconds is forgotten: its canaries stop and their results go with it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from exporter.collection import Collection
from exporter.fleet.request import ProbeRequest
from exporter.selfmetrics import CallMetrics

log = logging.getLogger(__name__)

# How often forgotten targets are looked for, at most; a quarter of the expiry when shorter,
# so a target is gone within 1.25 expiries of its last probe.
SWEEP_SECONDS = 30.0


@dataclass(eq=False)
class Target:
    collection: Collection
    metrics: CallMetrics  # this target's call durations and drops, exported by its probes
    runner: object | None = None  # its CanaryRunner, when its module has golden sets
    last_probed: float = 0.0
    users: int = 0  # probes using it now
    retired: bool = False  # forgotten (or never tracked): closed once no probe uses it

    def start(self) -> None:
        if self.runner is not None:
            self.runner.start()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        self.collection.close()


class Fleet:
    def __init__(self, build: Callable[[ProbeRequest, bool], Target], *, max_targets: int,
                 expiry: float, dropped: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._build = build  # (request, with canaries) -> a new Target
        self._max_targets = max_targets
        self._expiry = expiry
        self._dropped = dropped
        self._clock = clock
        self._targets: dict[tuple, Target] = {}
        self._lock = threading.Lock()
        self._over_cap = False  # logged once each time the cap is reached
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="fleet-expiry",
                                         daemon=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._targets)

    def enter(self, request: ProbeRequest) -> Target:
        """The target of this probe, held until ``leave``."""
        _close_all(self._take_expired())
        with self._lock:
            target = self._targets.get(request.key)
            if target is None and len(self._targets) < self._max_targets \
                    and not self._stop.is_set():
                target = self._build(request, True)
                self._targets[request.key] = target
                target.start()
                self._over_cap = False
                if self._sweeper.ident is None:  # the first target: from now on, expiry
                    self._sweeper.start()
            if target is not None:
                target.users += 1
                target.last_probed = self._clock()
                return target
            first_over_cap = not self._over_cap and not self._stop.is_set()
            self._over_cap = True
        self._dropped()
        if first_over_cap:
            log.warning("fleet.max_targets (%d) reached: target %s and further new targets "
                        "are probed without canaries or reuse until tracked ones expire; "
                        'counted in tfserving_exporter_dropped_total{kind="target"}',
                        self._max_targets, request.grpc_address)
        # Closing, or over the cap: a target for this probe alone, closed when it leaves.
        target = self._build(request, False)
        target.users, target.retired = 1, True
        return target

    def leave(self, target: Target) -> None:
        with self._lock:
            target.users -= 1
            # Expiry counts from the end of the last probe: a probe longer than the expiry
            # does not get its target forgotten under it.
            target.last_probed = self._clock()
            close = target.retired and target.users == 0
        if close:
            target.close()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=5)
        with self._lock:
            targets, self._targets = list(self._targets.values()), {}
            for target in targets:
                target.retired = True
            idle = [target for target in targets if target.users == 0]
        for target in idle:
            target.close()

    def _take_expired(self) -> list[Target]:
        """Forget the targets not probed for the expiry (none is in use: a probe refreshes
        its target when it leaves); returns them, to be closed outside the lock."""
        now = self._clock()
        with self._lock:
            keys = [key for key, target in self._targets.items()
                    if target.users == 0 and now - target.last_probed >= self._expiry]
            expired = [self._targets.pop(key) for key in keys]
            for target in expired:
                target.retired = True
        if expired:
            log.info("fleet: forgot %d target(s) not probed for %.0fs", len(expired),
                     self._expiry)
        return expired

    def _sweep_loop(self) -> None:
        interval = max(min(self._expiry / 4, SWEEP_SECONDS), 0.05)
        while not self._stop.wait(interval):
            _close_all(self._take_expired())  # no local keeps the last one alive meanwhile


def _close_all(targets: list[Target]) -> None:
    for target in targets:
        target.close()
