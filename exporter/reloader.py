"""Reloads one at a time, however many are asked for.

SIGHUP and ``POST /-/reload`` can arrive in bursts (a config-reloader sidecar, a script in a
loop). Each reload builds a whole pipeline, so running them side by side would multiply
threads and channels. Here one thread runs reloads in turn; every request that arrives while a
reload runs is answered by the next single run, which reads the files as they are by then.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class CoalescingReloader:
    def __init__(self, reload: Callable[[], tuple[bool, str]]) -> None:
        self._reload = reload
        self._condition = threading.Condition()
        self._requested = 0  # requests numbered in arrival order
        self._completed = 0  # every request up to this number has been answered
        self._result: tuple[bool, str] = (True, "")
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self._thread.start()

    def request(self, wait: float | None = None) -> tuple[bool, str] | None:
        """Ask for a reload. With ``wait``, return the result of the run that covers this
        request, or None if it has not finished within ``wait`` seconds; without, return
        None at once (a signal handler cannot wait)."""
        with self._condition:
            if self._closed:
                return False, "the exporter is shutting down"
            self._requested += 1
            ticket = self._requested
            self._condition.notify_all()
            if wait is None:
                return None
            deadline = time.monotonic() + wait
            while self._completed < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return None
                self._condition.wait(remaining)
            return self._result

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._completed == self._requested and not self._closed:
                    self._condition.wait()
                if self._closed:
                    return
                covered = self._requested
            try:
                result = self._reload()
            except Exception as err:  # noqa: BLE001 - a reload must never end the loop
                log.exception("reload failed unexpectedly")
                result = (False, f"reload failed: {type(err).__name__}")
            with self._condition:
                self._result = result
                self._completed = covered
                self._condition.notify_all()
