"""The canary runner's last results, kept for the collector to read at scrape time.

Counters and the duration histogram live here too (not in a prometheus_client registry) so that
everything about a version disappears together when the version stops being AVAILABLE.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

from exporter.canary.compare import Comparison

FAILURE_REASONS = ("mismatch", "error", "timeout", "schema", "nan")
# A canary round trip: a few ms for small sets on the same host, seconds for big ones.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class RunOutcome:
    """One canary run of one model version."""

    reason: str | None  # None when the run passed, else one of FAILURE_REASONS
    detail: str  # what went wrong, for logs
    finished_at: float  # wall-clock seconds
    duration: float
    protocol: str
    comparison: Comparison | None  # absent when no answer could be compared

    @property
    def passed(self) -> bool:
        return self.reason is None


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        index = bisect.bisect_left(DURATION_BUCKETS, seconds)
        if index < len(self.buckets):
            self.buckets[index] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        running, rows = 0, []
        for bound, count in zip(DURATION_BUCKETS, self.buckets):
            running += count
            rows.append((repr(float(bound)), running))
        rows.append(("+Inf", self.count))
        return rows


@dataclass
class VersionRecord:
    last: RunOutcome
    runs: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    durations: dict[str, _Histogram] = field(default_factory=dict)  # by protocol


class ResultStore:
    """Thread-safe map (model, version) → VersionRecord, plus golden set sizes by model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, int], VersionRecord] = {}
        self._golden_examples: dict[str, int] = {}

    def set_golden_examples(self, sizes: dict[str, int]) -> None:
        with self._lock:
            self._golden_examples = dict(sizes)

    def record(self, model: str, version: int, outcome: RunOutcome) -> None:
        with self._lock:
            record = self._records.get((model, version))
            if record is None:
                record = self._records[(model, version)] = VersionRecord(last=outcome)
            record.last = outcome
            record.runs += 1
            if outcome.reason is not None:
                record.failures[outcome.reason] += 1
            record.durations.setdefault(outcome.protocol, _Histogram()).observe(outcome.duration)

    def keep_versions(self, model: str, versions: set[int]) -> None:
        """Forget results of the model's versions that are no longer AVAILABLE."""
        with self._lock:
            for key in [k for k in self._records if k[0] == model and k[1] not in versions]:
                del self._records[key]

    def snapshot(self) -> tuple[dict[tuple[str, int], VersionRecord], dict[str, int]]:
        """Copies safe to read without the lock."""
        with self._lock:
            records = {
                key: VersionRecord(
                    last=record.last, runs=record.runs, failures=dict(record.failures),
                    durations={p: _Histogram(list(h.buckets), h.count, h.total)
                               for p, h in record.durations.items()})
                for key, record in self._records.items()}
            return records, dict(self._golden_examples)
