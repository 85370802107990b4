"""Small helpers shared by the test suites. Tests poll with a deadline; they never sleep."""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass.

    Exceptions raised by the predicate count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - reported below if it never succeeds
            last_error = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message}{detail}")
        # A bounded pause between polls, not a wait for the result itself.
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition, keyed by (name, frozenset(labels))."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, or None when the exposition does not have it."""
    return samples(text).get((name, frozenset(labels.items())))


def series(text: str, name: str) -> list[dict]:
    """Label sets of every sample called ``name`` (each with its value under ``__value__``)."""
    return [dict(labels, __value__=value) for (n, labels), value in samples(text).items()
            if n == name]


def problems_raised(error: type, load: Callable, *args) -> list[str]:
    """The problems of the ``error`` that ``load(*args)`` raises: config and golden files
    both report every problem at once, one string each."""
    with pytest.raises(error) as caught:
        load(*args)
    return caught.value.problems


def files_named(directory: str, suffix: str) -> set[str]:
    """The names in ``directory`` ending in ``suffix``: test data every case must account for."""
    return {name for name in os.listdir(directory) if name.endswith(suffix)}


def in_ci() -> bool:
    """CI=true: a test that needs a real tool fails when the tool is missing, never skips."""
    return os.environ.get("CI") == "true"
