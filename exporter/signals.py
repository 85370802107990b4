"""How a foreground command waits: until SIGINT (Ctrl-C) or SIGTERM (Kubernetes) arrives."""

from __future__ import annotations

import signal
import threading


def install_stop_handlers() -> threading.Event:
    """SIGINT and SIGTERM set the returned event for a clean stop."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def wait_for(stop: threading.Event) -> None:
    # A long wait in a loop rather than one without a timeout: signal handlers run between
    # waits, and an untimed Event.wait cannot be interrupted on every platform.
    while not stop.wait(3600):
        pass
