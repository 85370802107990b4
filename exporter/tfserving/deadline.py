"""One deadline per scrape, shared by every call made for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# Below this, a call cannot do useful work; failing fast keeps /metrics on time.
MIN_CALL_SECONDS = 0.005
# The share of an announced scrape timeout the calls always get, even when the offset would
# leave less: with a 0.4 s timeout and the default 0.5 s offset, the calls get 0.2 s rather
# than nothing (which would report a healthy TF Serving as down on every scrape). Rendering
# takes a few ms, so half the timeout still leaves ample room for it.
MIN_BUDGET_SHARE = 0.5


def scrape_budget(header_value: str | None, offset: float, cap: float) -> float:
    """Seconds this scrape may spend talking to TF Serving.

    Prometheus sends its scrape timeout in ``X-Prometheus-Scrape-Timeout-Seconds``; we leave
    ``offset`` of it for rendering and the network, but never less than half of it for the
    calls, and never exceed ``cap`` (config). A missing or unparsable header means "use the
    cap".
    """
    budget = cap
    if header_value:
        try:
            announced = float(header_value)
        except ValueError:
            announced = float("nan")
        if announced == announced and 0 < announced < float("inf"):  # not NaN, positive
            budget = min(cap, max(announced - offset, announced * MIN_BUDGET_SHARE))
    return max(budget, MIN_CALL_SECONDS)


@dataclass
class Deadline:
    """A point in monotonic time after which calls must not start or continue."""

    expires_at: float
    started_at: float = field(default_factory=time.monotonic)

    @classmethod
    def after(cls, seconds: float) -> "Deadline":
        now = time.monotonic()
        return cls(expires_at=now + seconds, started_at=now)

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() < MIN_CALL_SECONDS
