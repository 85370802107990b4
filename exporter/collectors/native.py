"""TF Serving's own Prometheus page, bridged into clean base-unit metrics.

TF Serving's page (reference §5) uses colon names, microseconds and no HELP lines, and has the
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
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Iterable

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)

from exporter.collectors.base import CollectorError
from exporter.exposition import TextFamily, format_value, label_text as render_labels
from exporter.scrape import Scrape
from exporter.tfserving.prometheus_page import Family, PageError, labels, parse_page, split_le

log = logging.getLogger(__name__)

MICROSECONDS = 1e-6
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


def to_seconds(microseconds: float) -> float:
    """µs → s, rounded to 12 significant digits so 320 µs is 0.00032, not 0.00031999999999999997
    (TF's values carry at most 6 significant digits, or whole µs)."""
    return float(f"{microseconds * MICROSECONDS:.12g}")


_seconds_texts: dict[str, str] = {}


def seconds_text(microseconds_text: str) -> str:
    """A bucket limit in µs as TF prints it (``%g``) → seconds, without float noise
    (``32.4`` → ``3.24e-05``, not ``3.2399999999999996e-05``). Memoised: a page has a few
    dozen distinct limits repeated thousands of times."""
    converted = _seconds_texts.get(microseconds_text)
    if converted is None:
        if microseconds_text in ("+Inf", "Inf", "inf"):
            converted = "+Inf"
        else:
            converted = repr(to_seconds(float(microseconds_text)))
        if len(_seconds_texts) < 10_000:  # bounded even for a page with odd limits
            _seconds_texts[microseconds_text] = converted
    return converted


def api_label(value: str) -> str:
    """TF Serving writes ``predict`` for REST and ``Predict`` for gRPC, and an empty API for
    REST GETs (status, metadata); one spelling here, and ``get`` for the empty one."""
    return value.lower() if value else "get"


class ModelPathMapper:
    """``model_path`` (a version directory) → (model, version), via the model base paths when
    known (models.config), else the last two path parts."""

    def __init__(self, base_paths: Callable[[], dict[str, str]]) -> None:
        self._base_paths = base_paths

    def __call__(self, model_path: str) -> tuple[str, str]:
        path = model_path.rstrip("/")
        for model, base in self._base_paths().items():
            prefix = base.rstrip("/") + "/"
            if path.startswith(prefix):
                return model, _version_label(path[len(prefix):].split("/")[0])
        head, _, version = path.rpartition("/")
        return head.rpartition("/")[2] or head, _version_label(version)


def _version_label(directory: str) -> str:
    # Version directories may be zero-padded ("00000123"); versions are integers.
    return str(int(directory)) if directory.isdigit() else directory


class _HistogramBridge:
    """Bridges one TF histogram (µs) into a seconds histogram, rendered straight to text.

    The rendered prefix of every series (``name_bucket{labels,le="…"} ``) is cached by the raw
    label text TF Serving wrote, so a steady page costs a dict lookup per line. The cache is
    cleared when it outgrows ``max_series`` (label churn), never unbounded.
    """

    def __init__(self, tf_name: str, name: str, documentation: str,
                 label_values: Callable[[dict[str, str]], dict[str, str]],
                 max_series: int = 200_000) -> None:
        self._tf_name = tf_name
        self._name = name
        self._documentation = documentation
        self._label_values = label_values
        self._max_series = max_series
        self._bucket_prefix: dict[str, tuple[str, bool]] = {}  # raw text -> (prefix, is +Inf)
        self._cell_prefix: dict[str, tuple[str, str]] = {}  # raw base text -> count, sum prefixes

    def _bucket(self, raw: str) -> tuple[str, bool]:
        cached = self._bucket_prefix.get(raw)
        if cached is None:
            base, le = split_le(raw)
            seconds = seconds_text(le)
            rendered = render_labels(self._label_values(labels(base)))
            separator = "," if rendered else ""
            cached = (f'{self._name}_bucket{{{rendered}{separator}le="{seconds}"}} ',
                      seconds == "+Inf")
            self._remember(self._bucket_prefix, raw, cached)
        return cached

    def _cell(self, raw: str) -> tuple[str, str]:
        cached = self._cell_prefix.get(raw)
        if cached is None:
            rendered = render_labels(self._label_values(labels(raw)))
            cached = (f"{self._name}_count{{{rendered}}} ", f"{self._name}_sum{{{rendered}}} ")
            self._remember(self._cell_prefix, raw, cached)
        return cached

    def _remember(self, cache: dict, key: str, value) -> None:
        if len(cache) >= self._max_series:
            cache.clear()
        cache[key] = value

    def convert(self, family: Family) -> TextFamily:
        lines: list[str] = []
        append = lines.append
        last_was_inf, inf_count = False, "0"
        for sample_name, raw, value in family.samples:
            if sample_name[-7:] == "_bucket":
                prefix, last_was_inf = self._bucket(raw)
                if last_was_inf:
                    inf_count = value
                append(prefix + value)  # a count, already a number as TF wrote it
            elif sample_name[-4:] == "_sum":
                # TF writes _sum before _count; the +Inf bucket is the count, so both are
                # written here, in prometheus_client's order.
                if not last_was_inf:
                    raise PageError(f"{self._tf_name}{{{raw}}}: buckets do not end with +Inf")
                count_prefix, sum_prefix = self._cell(raw)
                append(count_prefix + inf_count)
                append(sum_prefix + format_value(to_seconds(float(value))))
                last_was_inf = False
        return TextFamily(self._name, "histogram", self._documentation, lines)


class NativeCollector:
    name = "native"

    def __init__(self, metrics_path: str, base_paths: Callable[[], dict[str, str]],
                 passthrough: bool = False, max_passthrough_series: int = 1000,
                 dropped_counter=None) -> None:
        self._path = metrics_path
        self._model_of = ModelPathMapper(base_paths)
        self._passthrough = passthrough
        self._max_passthrough = max_passthrough_series
        self._dropped = dropped_counter
        self._hinted = False
        self._request_latency = _HistogramBridge(
            REQUEST_LATENCY, "tfserving_request_duration_seconds",
            "Latency of successful requests in TF Serving (from "
            ":tensorflow:serving:request_latency, µs converted to s).",
            lambda l: {"model": l.get("model_name", ""), "api": api_label(l.get("API", "")),
                       "entrypoint": l.get("entrypoint", "").lower()})
        self._runtime_latency = _HistogramBridge(
            RUNTIME_LATENCY, "tfserving_runtime_duration_seconds",
            "Time TF Serving spent running the model (from "
            ":tensorflow:serving:runtime_latency, µs converted to s).",
            lambda l: {"model": l.get("model_name", ""), "api": api_label(l.get("API", "")),
                       "runtime": l.get("runtime", "")})
        self._batch_queuing = _HistogramBridge(
            BATCH_QUEUING, "tfserving_batch_queuing_duration_seconds",
            "Time requests waited in TF Serving's batching queue (from "
            ":tensorflow:serving:batching_session:queuing_latency, µs converted to s).",
            lambda l: {"thread_pool": l.get("thread_pool_name", "")})

    def _fetch(self, scrape: Scrape) -> str:
        client = scrape.client("rest")
        reply = scrape.call("rest", lambda deadline: client.request(
            "metrics_page", "GET", self._path, deadline))
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
        try:
            return reply.body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CollectorError(f"monitoring page is not UTF-8: {err}") from None

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        try:
            metrics = self.convert(self._fetch(scrape))
        except PageError as err:
            raise CollectorError(f"cannot parse TF Serving's monitoring page: {err}") from None
        yield from metrics

    def convert(self, text: str) -> list[Metric]:
        """The page's text → the exported families (all or nothing: raises PageError)."""
        wanted = None if self._passthrough else BRIDGED.__contains__
        families = parse_page(text, wanted)
        metrics = list(self._bridge(families))
        if self._passthrough:
            metrics.extend(self._pass_through(families))
        return metrics

    def _bridge(self, families: dict[str, Family]) -> Iterable[Metric]:
        empty = Family("")
        requests = CounterMetricFamily(
            "tfserving_requests", "Requests TF Serving handled, by model and status "
            "(from :tensorflow:serving:request_count).", labels=["model", "status"])
        for _, label_text, value in families.get(REQUEST_COUNT, empty).samples:
            found = labels(label_text)
            requests.add_metric([found.get("model_name", ""), found.get("status", "")],
                                float(value))
        yield requests

        yield self._request_latency.convert(families.get(REQUEST_LATENCY, empty))
        yield self._runtime_latency.convert(families.get(RUNTIME_LATENCY, empty))
        yield self._batch_queuing.convert(families.get(BATCH_QUEUING, empty))

        attempts = CounterMetricFamily(
            "tfserving_model_load_attempts", "SavedModel load attempts by model version and "
            "status (from :tensorflow:cc:saved_model:load_attempt_count).",
            labels=["model", "version", "status"])
        for _, label_text, value in families.get(LOAD_ATTEMPTS, empty).samples:
            found = labels(label_text)
            model, version = self._model_of(found.get("model_path", ""))
            attempts.add_metric([model, version, found.get("status", "")], float(value))
        yield attempts

        load_time = CounterMetricFamily(
            "tfserving_model_load_duration_seconds", "Total time spent loading the model "
            "version (from :tensorflow:cc:saved_model:load_latency, µs converted to s).",
            labels=["model", "version"])
        for _, label_text, value in families.get(LOAD_LATENCY, empty).samples:
            model, version = self._model_of(labels(label_text).get("model_path", ""))
            load_time.add_metric([model, version], to_seconds(float(value)))
        yield load_time

    def _pass_through(self, families: dict[str, Family]) -> Iterable[Metric]:
        budget = self._max_passthrough
        for name, family in sorted(families.items()):
            if name in BRIDGED or not family.samples:
                continue
            exported = passthrough_name(name)
            if family.type in ("counter", "gauge"):
                kind = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                metric, label_names = None, []
                for _, label_text, value in family.samples:
                    found = labels(label_text)
                    if metric is None:
                        label_names = list(found)
                        metric = kind(exported, f"Passed through from TF Serving's {name} "
                                                "(unit as TF reports it).", labels=label_names)
                    if budget <= 0:
                        self._drop(1)
                        continue
                    metric.add_metric([found.get(k, "") for k in label_names], float(value))
                    budget -= 1
                if metric is not None:
                    yield metric
            elif family.type == "histogram":
                cells = len([s for s in family.samples if s[0].endswith("_count")])
                if cells > budget:
                    self._drop(cells)
                    continue
                budget -= cells
                yield _raw_histogram(family, exported)

    def _drop(self, count: int) -> None:
        if self._dropped is not None:
            self._dropped.labels("native_series").inc(count)


_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]+")


def passthrough_name(tf_name: str) -> str:
    """``:tensorflow:core:graph_runs`` → ``tensorflow_core_graph_runs``."""
    stripped = tf_name.strip(":")
    if stripped.startswith("tensorflow:"):
        stripped = stripped[len("tensorflow:"):]
    return "tensorflow_" + _NOT_NAME.sub("_", stripped).strip("_")


def _raw_histogram(family: Family, exported: str) -> HistogramMetricFamily:
    label_names: list[str] | None = None
    cells: dict[str, dict] = {}
    for sample_name, label_text, value in family.samples:
        if sample_name.endswith("_bucket"):
            base, le = split_le(label_text)
            cells.setdefault(base, {"buckets": [], "sum": 0.0})["buckets"].append(
                ("+Inf" if le in ("+Inf", "Inf") else repr(float(le)), float(value)))
        elif sample_name.endswith("_sum"):
            cells.setdefault(label_text, {"buckets": [], "sum": 0.0})["sum"] = float(value)
    result = None
    for base, cell in cells.items():
        found = labels(base)
        if result is None:
            label_names = list(found)
            result = HistogramMetricFamily(
                exported, f"Passed through from TF Serving's {family.name} (unit as TF "
                          "reports it).", labels=label_names)
        result.add_metric([found.get(k, "") for k in label_names], cell["buckets"],
                          cell["sum"])
    return result or HistogramMetricFamily(exported, f"Passed through from {family.name}.")
