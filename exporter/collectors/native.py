"""TF Serving's own Prometheus page, bridged into clean base-unit metrics.

TF Serving's page (docs/tfserving-behaviour.md §5) uses colon names, microseconds and no HELP lines, and has the
model version only inside ``model_path``. This collector reads it on every scrape and exports:

    :tensorflow:serving:request_count{model_name,status}      -> tfserving_requests_total{model,status}
    :tensorflow:serving:request_latency{model_name,API,entrypoint} (µs)
                                                  -> tfserving_request_duration_seconds{model,api,entrypoint}
    :tensorflow:serving:runtime_latency{model_name,API,runtime} (µs)
                                                  -> tfserving_runtime_duration_seconds{model,api,runtime}
    :tensorflow:cc:saved_model:load_attempt_count{model_path,status}
                                                  -> tfserving_model_load_attempts_total{model,version,status}
    :tensorflow:cc:saved_model:load_latency{model_path} (µs, a counter)
                                                  -> tfserving_model_load_duration_seconds_total{model,version}
    :tensorflow:serving:batching_session:queuing_latency{thread_pool_name} (µs)
                                                  -> tfserving_batch_queuing_duration_seconds{thread_pool}

and, when asked, every other TF metric under a ``tensorflow_`` name (capped).

The page is untrusted input; whatever it holds, a scrape ends by its deadline with valid
series or an honest failure, and what it builds is bounded:

- the page is parsed a slice at a time, the deadline checked after each (``PageDeadline``),
  and the samples of the bridged families are converted as they are read, never all kept;
- bridged series (bucket, ``_sum`` and ``_count`` lines each count) are capped at
  ``max_series`` in page order, a histogram always whole; the models they cover are capped at
  ``max_models`` (the configured models always in, the others in sorted name order), the
  ``model_path`` families by their mapped model; pass-through lines at
  ``max_passthrough_series``. What a cap leaves out is counted as ``native_series``;
- samples and series failing ``page_checks`` (NaN, negative counters, bad buckets, label
  text over 4096 characters, duplicates) are dropped and counted as ``native_invalid``; the
  first problem of a scrape is kept in ``last_problem`` and logged at most every few minutes;
- the caches that make a steady page cheap are bounded in entries and bytes (CACHE BUDGETS).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from prometheus_client.core import Metric

from exporter.collectors.base import CollectorError
from exporter.collectors.native_admission import _Budget, _ModelGate
from exporter.collectors.native_counters import _CounterSink, _CounterSpec
from exporter.collectors.native_histograms import _HistogramSink, _HistogramSpec
from exporter.collectors.native_passthrough import (PASSTHROUGH_FAMILY_SLACK, _PassThrough,
                                                    passthrough_name)
from exporter.collectors.native_sink_base import _Sink
from exporter.collectors.native_units import MICROSECONDS, seconds_text, to_seconds
from exporter.config_kinds import format_byte_size
from exporter.scrape import Scrape
from exporter.tfserving import page_checks as checks
from exporter.tfserving.page_checks import INF, Tally
from exporter.tfserving.prometheus_page import (CachePool, Families, PageDeadline, PageError,
                                                SizedCache, UnchangedBlocks, link, parse_page)
from exporter.tfserving.http_client import BodyBuffers
from exporter.tfserving.rest_client import METRICS_PAGE_MAX_BYTES, ReplyTooLarge

__all__ = ["BATCH_QUEUING", "BRIDGED", "BUCKET_CACHE_BYTES", "LOAD_ATTEMPTS", "LOAD_LATENCY",
           "MICROSECONDS", "MONITORING_HINT", "PASSTHROUGH_FAMILY_SLACK", "PROBLEM_LOG_SECONDS",
           "REQUEST_CACHE_BYTES", "REQUEST_COUNT", "REQUEST_LATENCY", "RUNTIME_LATENCY",
           "SERIES_CACHE_BYTES", "ModelPathMapper", "NativeCollector", "api_label",
           "passthrough_name", "seconds_text", "to_seconds"]

log = logging.getLogger(__name__)

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
LOAD_ATTEMPTS = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"
BATCH_QUEUING = ":tensorflow:serving:batching_session:queuing_latency"
BRIDGED = frozenset({REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY, LOAD_ATTEMPTS,
                     LOAD_LATENCY, BATCH_QUEUING})

MONITORING_HINT = (
    "TF Serving's Prometheus page is not enabled. Start tensorflow_model_server with "
    "--monitoring_config_file=/path/monitoring.config (and a --rest_api_port), the file "
    'holding: prometheus_config { enable: true, path: "%s" }')

# CACHE BUDGETS. The caches that make a steady page cheap (a dict lookup a line) are shared by
# every scrape and bounded in entries and in bytes (sizes estimated at insertion, keys of at
# most 256 characters), whatever the pages. At worst they hold:
#   parsed label texts (prometheus_page._parsed_labels)          4 MiB
#   bucket limit texts (native_units._limits)                    0.25 MiB
#   bucket line prefixes of the three histograms, together       8 MiB  (~19,000 bucket lines,
#                                                                         ~500 series of TF's
#                                                                         36 lines, all cached)
#   histogram series (cells and checked bucket shapes), together 2 MiB  (~2,000 series)
#   request_count label texts                                    1 MiB
#   counter line prefixes (native_counters), each counter        2 MiB
# about 21 MiB in all. Entry counts are capped from the series cap (half of it for bucket
# lines, a twentieth for series). A bigger page is converted with the caches holding what fits
# (lines beyond take the slower path: they are split, mapped and rendered each scrape).
# What is reused from the last page is bounded by that page: the digests of its blocks that go
# nowhere (prometheus_page.UnchangedBlocks, at most 4,096 blocks), its histogram series
# (native_histograms UNCHANGED SERIES, at most REPLAY_BYTES a family, mostly the exported lines
# the last /metrics holds anyway) and each family's last /metrics text (EncodedFamilies).
# The memory the page is received into is kept for the next scrape up to PAGE_BUFFER_BYTES.
BUCKET_CACHE_BYTES = 8 << 20
# A page up to this size is received into memory kept from the last scrape (one buffer; a
# bigger page, or a second concurrent scrape, gets its own): ~200 models x 3 versions.
PAGE_BUFFER_BYTES = 8 << 20
SERIES_CACHE_BYTES = 2 << 20
REQUEST_CACHE_BYTES = 1 << 20

# Invalid samples are logged (the first of the scrape, with the count) at most this often.
PROBLEM_LOG_SECONDS = 600.0


def api_label(value: str) -> str:
    """TF Serving writes ``predict`` for REST and ``Predict`` for gRPC, and an empty API for
    REST GETs (status, metadata); one spelling here, and ``get`` for the empty one."""
    return value.lower() if value else "get"


class ModelPathMapper:
    """``model_path`` (a version directory) → (model, version), via the model base paths when
    known (models.config), else the last two path parts. Only ASCII digits (at most 19) are a
    version number; any other directory name is the version label as written."""

    def __init__(self, base_paths: Callable[[], dict[str, str]]) -> None:
        self._base_paths = base_paths

    def snapshot(self) -> Callable[[str], tuple[str, str]]:
        """The mapping with the base paths read once (a scrape maps many paths)."""
        prefixes = [(model, base.rstrip("/") + "/") for model, base in self._base_paths().items()]
        # TF Serving's model_path is <base path>/<version>: one dict lookup of the parent
        # directory, unless one base path lies inside another (then the first match in config
        # order decides, as the scan below does).
        by_parent = {prefix[:-1]: model for model, prefix in reversed(prefixes)}
        ordered = sorted(prefix for _, prefix in prefixes)
        nested = any(b.startswith(a) for a, b in zip(ordered, ordered[1:]))

        def scan(path: str) -> tuple[str, str]:
            for model, prefix in prefixes:
                if path.startswith(prefix):
                    return model, checks.version_label(path[len(prefix):].split("/")[0])
            head, _, version = path.rpartition("/")
            return head.rpartition("/")[2] or head, checks.version_label(version)

        def model_of(model_path: str) -> tuple[str, str]:
            path = model_path.rstrip("/")
            if not nested:
                head, _, version = path.rpartition("/")
                model = by_parent.get(head)
                if model is not None:
                    return model, checks.version_label(version)
            return scan(path)
        return model_of

    def __call__(self, model_path: str) -> tuple[str, str]:
        return self.snapshot()(model_path)


class _Conversion:
    """One scrape's conversion of the page: the sinks, the model gate, the budgets, the tally.
    Per call, so concurrent scrapes share only the (thread-safe) caches."""

    def __init__(self, collector: "NativeCollector",
                 expired: Callable[[], bool] | None) -> None:
        self.collector = collector
        self.expired = expired
        self.generation = 0
        self.start()

    def start(self) -> None:
        collector = self.collector
        self.generation += 1
        self.tally = Tally()
        self.budget = _Budget(collector.max_series)
        self.gate = _ModelGate(set(collector.known_models()), collector.max_models,
                               self._evict)
        self.model_of = collector.model_of.snapshot()
        specs = collector.specs
        self.sinks: dict[str, _Sink] = {
            REQUEST_COUNT: _CounterSink(self, specs[REQUEST_COUNT]),
            REQUEST_LATENCY: _HistogramSink(self, specs[REQUEST_LATENCY], self.budget,
                                            self.gate),
            RUNTIME_LATENCY: _HistogramSink(self, specs[RUNTIME_LATENCY], self.budget,
                                            self.gate),
            BATCH_QUEUING: _HistogramSink(self, specs[BATCH_QUEUING], self.budget, None),
            LOAD_ATTEMPTS: _CounterSink(self, specs[LOAD_ATTEMPTS]),
            LOAD_LATENCY: _CounterSink(self, specs[LOAD_LATENCY]),
        }
        self.passthrough = (_PassThrough(self, collector.max_passthrough_series)
                            if collector.passthrough else None)

    def release(self) -> None:
        """Break the sinks' references back to the conversion, so what a scrape built is freed
        as soon as it is rendered (not at the next full garbage collection)."""
        self.sinks = {}
        self.passthrough = None
        self.gate = None

    def restart(self, generation: int) -> None:
        """The parser starts over (``clear()`` on every sink): so does the conversion, once."""
        if generation == self.generation:
            self.start()

    def wanted(self, name: str):
        sink = self.sinks.get(name)
        if sink is not None:
            return sink
        if self.passthrough is None:
            return False
        return self.passthrough.route(name)

    def _evict(self, model: str) -> None:
        for name in (REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY, LOAD_ATTEMPTS,
                     LOAD_LATENCY):
            exported, page_lines = self.sinks[name].evict(model)
            self.budget.left += exported
            self.tally.capped += page_lines

    def _check_deadline(self) -> None:
        if self.expired is not None and self.expired():
            raise PageDeadline(message="converting the page stopped at the scrape deadline")

    def metrics(self, families: Families) -> list:
        sinks = self.sinks
        for sink in sinks.values():
            sink.close()  # the last series of each histogram (may push a model out)
        order = (REQUEST_COUNT, REQUEST_LATENCY, RUNTIME_LATENCY, BATCH_QUEUING,
                 LOAD_ATTEMPTS, LOAD_LATENCY)
        result = []
        for name in order:
            self._check_deadline()
            result.append(sinks[name].metric())
        if self.passthrough is not None:
            self.tally.capped += families.skipped  # families beyond the pass-through slots
            self._check_deadline()
            result.extend(self.passthrough.metrics())
        return result


class NativeCollector:
    name = "native"

    def __init__(self, metrics_path: str, base_paths: Callable[[], dict[str, str]],
                 passthrough: bool = False, max_passthrough_series: int = 1000,
                 dropped_counter=None, *, max_series: int = 100_000, max_models: int = 100,
                 known_models: Callable[[], list[str]] = lambda: [],
                 max_page_bytes: int = METRICS_PAGE_MAX_BYTES) -> None:
        self._path = metrics_path
        self.max_page_bytes = max_page_bytes
        self.model_of = ModelPathMapper(base_paths)
        self.passthrough = passthrough
        self.max_passthrough_series = max_passthrough_series
        self.max_series = max_series
        self.max_models = max_models
        self.known_models = known_models
        self._dropped = dropped_counter
        self._hinted = False
        self.last_problem: str | None = None  # the first invalid sample of the last scrape
        self.last_tally = Tally()
        self._problem_logged_at = -INF
        # The page's blocks that go nowhere (most of it), read once while they do not change.
        self._unchanged = UnchangedBlocks()
        self._buffers = BodyBuffers(PAGE_BUFFER_BYTES)
        bucket_pool = CachePool(BUCKET_CACHE_BYTES)
        cell_pool = CachePool(SERIES_CACHE_BYTES * 5 // 8)  # cells are bigger than shapes
        shape_pool = CachePool(SERIES_CACHE_BYTES * 3 // 8)

        def histogram_caches() -> tuple[SizedCache, SizedCache, SizedCache]:
            # Bucket entries refer to cells, shapes to bucket entries: linked, they start over
            # together (when the sink finds the bucket cache stale), so no cache keeps
            # another's forgotten entries alive.
            caches = (SizedCache(max(1000, max_series // 2), BUCKET_CACHE_BYTES,
                                 pool=bucket_pool, settled=True),
                      SizedCache(max(100, max_series // 20), cell_pool.max_bytes,
                                 pool=cell_pool, settled=True),
                      SizedCache(max(100, max_series // 20), shape_pool.max_bytes,
                                 pool=shape_pool, settled=True))
            link(*caches)
            return caches

        self.specs = {
            # Request counts: ~700 bytes an entry, 1 MiB hold 1,500 (model, status) texts.
            REQUEST_COUNT: _CounterSpec(
                REQUEST_COUNT, "tfserving_requests", "Requests TF Serving handled, by model "
                "and status (from :tensorflow:serving:request_count).", ["model", "status"],
                lambda l, _: {"model": l.get("model_name", ""), "status": l.get("status", "")},
                cache=SizedCache(max_entries=4096, max_bytes=REQUEST_CACHE_BYTES)),
            # The model_path families are mapped with the base paths of the moment (which a
            # reload changes), so they are not cached; TF writes one line per version.
            LOAD_ATTEMPTS: _CounterSpec(
                LOAD_ATTEMPTS, "tfserving_model_load_attempts", "SavedModel load attempts by "
                "model version and status (from :tensorflow:cc:saved_model:load_attempt_count).",
                ["model", "version", "status"], _load_attempt_labels),
            LOAD_LATENCY: _CounterSpec(
                LOAD_LATENCY, "tfserving_model_load_duration_seconds", "Total time spent "
                "loading the model version (from :tensorflow:cc:saved_model:load_latency, µs "
                "converted to s).", ["model", "version"], _load_latency_labels,
                scale=to_seconds),
            REQUEST_LATENCY: _HistogramSpec(
                REQUEST_LATENCY, "tfserving_request_duration_seconds",
                "Latency of successful requests in TF Serving (from "
                ":tensorflow:serving:request_latency, µs converted to s).",
                lambda l: {"model": l.get("model_name", ""), "api": api_label(l.get("API", "")),
                           "entrypoint": l.get("entrypoint", "").lower()},
                caches=histogram_caches()),
            RUNTIME_LATENCY: _HistogramSpec(
                RUNTIME_LATENCY, "tfserving_runtime_duration_seconds",
                "Time TF Serving spent running the model (from "
                ":tensorflow:serving:runtime_latency, µs converted to s).",
                lambda l: {"model": l.get("model_name", ""), "api": api_label(l.get("API", "")),
                           "runtime": l.get("runtime", "")},
                caches=histogram_caches()),
            BATCH_QUEUING: _HistogramSpec(
                BATCH_QUEUING, "tfserving_batch_queuing_duration_seconds",
                "Time requests waited in TF Serving's batching queue (from "
                ":tensorflow:serving:batching_session:queuing_latency, µs converted to s).",
                lambda l: {"thread_pool": l.get("thread_pool_name", "")},
                model_scoped=False, caches=histogram_caches()),
        }

    def _fetch(self, scrape: Scrape) -> bytes:
        client = scrape.client("rest")
        try:
            reply = scrape.call("rest", lambda deadline: client.request(
                "metrics_page", "GET", self._path, deadline, max_bytes=self.max_page_bytes,
                buffers=self._buffers))
        except ReplyTooLarge as err:
            raise CollectorError(
                f"TF Serving's monitoring page is larger than collectors.native.max_page_size "
                f"({format_byte_size(self.max_page_bytes)}); raise it for this many models "
                f"(README, Many models): {err.message}") from None
        if reply.status == 404:
            if not self._hinted:
                log.warning(MONITORING_HINT, self._path)
                self._hinted = True
            raise CollectorError(f"TF Serving's monitoring page {self._path} answered 404: "
                                 "monitoring is not enabled (see the log for the config)")
        if reply.status != 200:
            raise CollectorError(f"TF Serving's monitoring page {self._path} answered "
                                 f"HTTP {reply.status}")
        self._hinted = False
        return reply.body  # decoded by the parser a slice at a time

    def begin(self, scrape: Scrape) -> None:
        """Ask for the page and convert it as the scrape starts, on the REST pool: the page
        travels, and is read, while the status calls wait on TF Serving."""
        scrape.start("native_page", "rest", lambda: self._page_metrics(scrape))

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        metrics = scrape.started("native_page", lambda: self._page_metrics(scrape))
        self._log_problem()
        yield from metrics

    def _page_metrics(self, scrape: Scrape) -> list[Metric]:
        page = None
        try:
            page = self._fetch(scrape)
            return self.convert(page, expired=scrape.deadline.expired)
        except PageDeadline as err:
            raise CollectorError(f"TF Serving's monitoring page: {err}") from None
        except PageError as err:
            raise CollectorError(f"cannot parse TF Serving's monitoring page: {err}") from None
        finally:
            if page is not None:  # nothing built from it refers to it: strings are copies
                self._buffers.give(page)

    def _log_problem(self) -> None:
        tally = self.last_tally
        now = time.monotonic()
        if tally.problem is None or now - self._problem_logged_at < PROBLEM_LOG_SECONDS:
            return
        self._problem_logged_at = now
        log.warning("TF Serving's monitoring page: %d invalid sample lines left out of this "
                    "scrape (counted in tfserving_exporter_dropped_total{kind=\"native_invalid\"}"
                    "; logged at most every %d s); the first: %s", tally.invalid,
                    PROBLEM_LOG_SECONDS, tally.problem)

    def convert(self, text: str | bytes,
                expired: Callable[[], bool] | None = None) -> list[Metric]:
        """The page (text, or its UTF-8 bytes) → the exported families. A malformed page raises
        PageError (nothing of it is exported); ``expired()`` true raises PageDeadline. Invalid
        samples and series are left out and counted, once per kind per call."""
        conversion = _Conversion(self, expired)
        try:
            families = parse_page(text, conversion.wanted, expired, self._unchanged)
            metrics = conversion.metrics(families)
        finally:
            conversion.release()
        tally = conversion.tally
        self.last_tally = tally
        self.last_problem = tally.problem
        if self._dropped is not None:
            if tally.capped:
                self._dropped.labels("native_series").inc(tally.capped)
            if tally.invalid:
                self._dropped.labels("native_invalid").inc(tally.invalid)
        return metrics


def _load_attempt_labels(found: dict[str, str], model_of) -> dict[str, str]:
    model, version = model_of(found.get("model_path", ""))
    return {"model": model, "version": version, "status": found.get("status", "")}


def _load_latency_labels(found: dict[str, str], model_of) -> dict[str, str]:
    model, version = model_of(found.get("model_path", ""))
    return {"model": model, "version": version}
