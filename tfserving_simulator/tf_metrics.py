"""A TensorFlow-style metric registry and TF Serving's exact Prometheus page (docs/tfserving-behaviour.md §5.2).

The page differs from client libraries' output on purpose: TYPE lines only, ``{}`` for
label-less cells, ``%g`` bucket limits, upper-exclusive buckets, sorting by the original
``/tensorflow/...`` name. Sidecars are tested against this page, so every detail counts.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Iterable


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """Finite limits of TSL's ``Buckets::Exponential`` (repeated multiplication, as TSL does)."""
    limits = []
    bound = float(scale)
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


E33 = exponential_buckets(10, 1.8, 33)
LOAD_LATENCY_BY_STAGE_BUCKETS = exponential_buckets(10, 1.8, 37)
Q52 = exponential_buckets(100, 1.2, 52)
P14 = exponential_buckets(1, 2, 14)
P15 = exponential_buckets(1, 2, 15)
GRAPH_RUN_TIME_BUCKETS = exponential_buckets(1000, 2, 20)
GRAPH_PENDING_QUEUE_BUCKETS = exponential_buckets(1, 1.5, 30)
TENSOR_BYTES_BUCKETS = exponential_buckets(1, 4, 14)
CHECKPOINT_DURATION_BUCKETS = exponential_buckets(1000, 1.5, 41)


def prometheus_name(tf_name: str) -> str:
    """``/tensorflow/serving/request_count`` -> ``:tensorflow:serving:request_count``."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


def _label_name(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _label_value(value: str) -> str:
    # Only backslash and double quote are escaped; newlines pass through as TF does.
    return value.replace("\\", "\\\\").replace('"', '\\"')


def format_g(value: float) -> str:
    """``%g`` with 6 significant digits, the format of ``le`` limits and ``_sum``."""
    return "%g" % value


class _Metric:
    prometheus_type = ""

    def __init__(self, name: str, label_names: Iterable[str], lock: threading.RLock) -> None:
        if not name.startswith("/"):
            raise ValueError(f"TF metric names start with '/': {name!r}")
        self.name = name
        self.label_names = tuple(label_names)
        self._lock = lock
        self._cells: dict[tuple[str, ...], object] = {}

    def _key(self, labels: Iterable[str]) -> tuple[str, ...]:
        key = tuple(str(value) for value in labels)
        if len(key) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {key}")
        return key

    def _label_text(self, key: tuple[str, ...], extra: str = "") -> str:
        pairs = [f'{_label_name(n)}="{_label_value(v)}"' for n, v in zip(self.label_names, key)]
        if extra:
            pairs.append(extra)
        return "{" + ",".join(pairs) + "}"

    def render_lines(self) -> list[str]:
        pname = prometheus_name(self.name)
        lines = [f"# TYPE {pname} {self.prometheus_type}"]
        with self._lock:
            for key in sorted(self._cells):
                lines.extend(self._cell_lines(pname, key, self._cells[key]))
        return lines

    def _cell_lines(self, pname: str, key: tuple[str, ...], cell) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A cumulative int64 counter; a cell appears on the page once it has been touched."""

    prometheus_type = "counter"

    def increment(self, labels: Iterable[str] = (), amount: int = 1) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._cells[key] = self._cells.get(key, 0) + int(amount)

    def value(self, labels: Iterable[str] = ()) -> int | None:
        with self._lock:
            return self._cells.get(self._key(labels))

    def _cell_lines(self, pname, key, cell):
        return [f"{pname}{self._label_text(key)} {cell}"]


class Gauge(_Metric):
    """A gauge; string and bool gauges print 0 because TF's exporter renders only int64."""

    prometheus_type = "gauge"

    def __init__(self, name, label_names, lock, value_type: str = "int64") -> None:
        super().__init__(name, label_names, lock)
        if value_type not in ("int64", "string", "bool", "double"):
            raise ValueError(f"unknown gauge value type {value_type!r}")
        self.value_type = value_type

    def set(self, labels: Iterable[str] = (), value: object = 0) -> None:
        key = self._key(labels)
        with self._lock:
            self._cells[key] = value

    def value(self, labels: Iterable[str] = ()) -> object:
        with self._lock:
            return self._cells.get(self._key(labels))

    def _cell_lines(self, pname, key, cell):
        printed = int(cell) if self.value_type == "int64" else 0
        return [f"{pname}{self._label_text(key)} {printed}"]


class _HistogramCell:
    def __init__(self, bucket_count: int) -> None:
        self.buckets = [0] * bucket_count
        self.sum = 0.0
        self.count = 0


class Histogram(_Metric):
    """A TSL-style histogram: a sample equal to a limit counts in the next bucket."""

    prometheus_type = "histogram"

    def __init__(self, name, label_names, lock, limits: Iterable[float]) -> None:
        super().__init__(name, label_names, lock)
        self.limits = tuple(float(limit) for limit in limits)
        if list(self.limits) != sorted(set(self.limits)):
            raise ValueError(f"{name}: bucket limits must increase strictly")

    def observe(self, labels: Iterable[str], value: float) -> None:
        key = self._key(labels)
        # bisect_right is TSL's upper_bound: the first limit strictly greater than the value.
        index = bisect.bisect_right(self.limits, value)
        with self._lock:
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = _HistogramCell(len(self.limits) + 1)
            cell.buckets[index] += 1
            cell.sum += value
            cell.count += 1

    def snapshot(self, labels: Iterable[str] = ()) -> tuple[list[int], float, int] | None:
        """(per-bucket counts, sum, count) of one cell, or None if it was never touched."""
        with self._lock:
            cell = self._cells.get(self._key(labels))
            return None if cell is None else (list(cell.buckets), cell.sum, cell.count)

    def _cell_lines(self, pname, key, cell):
        lines = []
        cumulative = 0
        for limit, in_bucket in zip(self.limits, cell.buckets):
            cumulative += in_bucket
            le = 'le="' + format_g(limit) + '"'
            lines.append(f"{pname}_bucket{self._label_text(key, le)} {cumulative}")
        cumulative += cell.buckets[-1]
        inf = 'le="+Inf"'
        lines.append(f"{pname}_bucket{self._label_text(key, inf)} {cumulative}")
        lines.append(f"{pname}_sum{self._label_text(key)} {format_g(cell.sum)}")
        lines.append(f"{pname}_count{self._label_text(key)} {cell.count}")
        return lines


class Registry:
    """TF's CollectionRegistry in miniature: metrics by original name, one shared lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._metrics: dict[str, _Metric] = {}

    def _register(self, metric: _Metric) -> _Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, label_names: Iterable[str] = ()) -> Counter:
        return self._register(Counter(name, label_names, self._lock))

    def gauge(self, name: str, label_names: Iterable[str] = (),
              value_type: str = "int64") -> Gauge:
        return self._register(Gauge(name, label_names, self._lock, value_type))

    def histogram(self, name: str, label_names: Iterable[str],
                  limits: Iterable[float]) -> Histogram:
        return self._register(Histogram(name, label_names, self._lock, limits))

    def get(self, name: str) -> _Metric:
        with self._lock:
            return self._metrics[name]

    def render(self) -> str:
        """The Prometheus page exactly as TF Serving writes it."""
        with self._lock:
            lines = []
            for name in sorted(self._metrics):
                lines.extend(self._metrics[name].render_lines())
        return "\n".join(lines) + "\n"


# TF-core metrics a default model server registers but half_plus_two never moves: they appear
# as bare TYPE lines, as on a real page. (name, kind, labels, buckets-or-gauge-type)
_IDLE_CORE_METRICS = (
    ("/tensorflow/core/graph_pending_queue_length_histogram", "histogram", (),
     GRAPH_PENDING_QUEUE_BUCKETS),
    ("/tensorflow/core/graph_run_input_tensor_bytes", "histogram", (), TENSOR_BYTES_BUCKETS),
    ("/tensorflow/core/graph_run_output_tensor_bytes", "histogram", (), TENSOR_BYTES_BUCKETS),
    ("/tensorflow/core/graph_unused_outputs", "counter", ("name",), None),
    ("/tensorflow/core/graph_build_calls", "counter", (), None),
    ("/tensorflow/core/graph_build_time_usecs", "counter", (), None),
    ("/tensorflow/core/function_graph_optimization_time_usecs", "counter", (), None),
    ("/tensorflow/core/xla_compilations", "counter", (), None),
    ("/tensorflow/core/xla_compilation_time_usecs", "counter", (), None),
    ("/tensorflow/core/persistent_cache_load_count", "counter", ("status",), None),
    ("/tensorflow/core/eager_client_error_count", "counter", ("error_source", "error_type"),
     None),
    ("/tensorflow/core/saved_model/write/count", "counter", ("write_version",), None),
    ("/tensorflow/core/saved_model/write/api", "counter", ("api_label",), None),
    ("/tensorflow/core/saved_model/read/fingerprint", "gauge", (), "string"),
    ("/tensorflow/core/saved_model/read/path_and_singleprint", "gauge", (), "string"),
    ("/tensorflow/core/saved_model/write/fingerprint", "gauge", (), "string"),
    ("/tensorflow/core/saved_model/write/path", "gauge", (), "string"),
    ("/tensorflow/core/saved_model/found_fingerprint_on_load", "gauge", (), "string"),
    ("/tensorflow/core/checkpoint/read/read_durations", "histogram", ("api_label",),
     CHECKPOINT_DURATION_BUCKETS),
    ("/tensorflow/core/checkpoint/write/write_durations", "histogram", ("api_label",),
     CHECKPOINT_DURATION_BUCKETS),
    ("/tensorflow/core/checkpoint/write/async_write_durations", "histogram", ("api_label",),
     CHECKPOINT_DURATION_BUCKETS),
    ("/tensorflow/core/checkpoint/write/training_time_saved", "counter", ("api_label",), None),
    ("/tensorflow/core/checkpoint/write/checkpoint_size", "counter", ("api_label", "filesize"),
     None),
)

# Share of a successful load's time spent in each stage (restore dominates for real models).
_LOAD_STAGE_SHARES = (("restore_graph", 0.8), ("init_graph", 0.2))


def _micros(seconds: float) -> int:
    # TF converts durations with absl::ToInt64Microseconds, which truncates.
    # The tiny epsilon keeps float error (94e-6 * 1e6 = 93.99999...) from losing a microsecond.
    return max(0, int(seconds * 1e6 + 1e-6))


class ServingMetrics:
    """The metrics of a default ``tensorflow_model_server`` and the calls that move them."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        # TF Serving's eleven non-lazy metrics (docs/tfserving-behaviour.md §5.3).
        self.request_count = r.counter("/tensorflow/serving/request_count",
                                       ("model_name", "status"))
        self.request_latency = r.histogram("/tensorflow/serving/request_latency",
                                           ("model_name", "API", "entrypoint"), E33)
        self.runtime_latency = r.histogram("/tensorflow/serving/runtime_latency",
                                           ("model_name", "API", "runtime"), E33)
        self.request_example_counts = r.histogram("/tensorflow/serving/request_example_counts",
                                                  ("model",), P15)
        self.request_example_count_total = r.counter(
            "/tensorflow/serving/request_example_count_total", ("model",))
        r.counter("/tensorflow/serving/request_log_count", ("model_name", "status_code"))
        r.histogram("/tensorflow/serving/model_warmup_latency", ("model_path", "status"), E33)
        r.counter("/tensorflow/serving/model_warmup_records_read", ("model_path", "status"))
        r.gauge("/tensorflow/serving/mlmd_map", ("model_name", "version"), "string")
        r.histogram("/tensorflow/serving/batching_session/queuing_latency",
                    ("thread_pool_name",), Q52)
        r.counter("/tensorflow/serving/batching_session/wrapped_run_count")
        # TensorFlow core (docs/tfserving-behaviour.md §5.4).
        self.load_attempt_count = r.counter("/tensorflow/cc/saved_model/load_attempt_count",
                                            ("model_path", "status"))
        self.load_latency = r.counter("/tensorflow/cc/saved_model/load_latency", ("model_path",))
        self.load_latency_by_stage = r.histogram(
            "/tensorflow/cc/saved_model/load_latency_by_stage", ("model_path", "stage"),
            LOAD_LATENCY_BY_STAGE_BUCKETS)
        self.read_count = r.counter("/tensorflow/core/saved_model/read/count", ("write_version",))
        self.read_api = r.counter("/tensorflow/core/saved_model/read/api", ("api_label",))
        self.read_path = r.gauge("/tensorflow/core/saved_model/read/path", (), "string")
        self.session_created = r.gauge("/tensorflow/core/session_created", (), "bool")
        self.direct_session_runs = r.counter("/tensorflow/core/direct_session_runs")
        self.graph_runs = r.counter("/tensorflow/core/graph_runs")
        self.graph_run_time_usecs = r.counter("/tensorflow/core/graph_run_time_usecs")
        self.graph_run_time_histogram = r.histogram(
            "/tensorflow/core/graph_run_time_usecs_histogram", (), GRAPH_RUN_TIME_BUCKETS)
        for name, kind, labels, extra in _IDLE_CORE_METRICS:
            if kind == "histogram":
                r.histogram(name, labels, extra)
            elif kind == "gauge":
                r.gauge(name, labels, extra)
            else:
                r.counter(name, labels)

    def record_request(self, model_name: str, status_code: str, api: str, entrypoint: str,
                       seconds: float | None) -> None:
        """One handled request; latency only for successes (``seconds`` given)."""
        self.request_count.increment((model_name, status_code))
        if seconds is not None:
            self.request_latency.observe((model_name, api, entrypoint), _micros(seconds))

    def record_runtime(self, model_name: str, api: str, seconds: float) -> None:
        """One successful session run of Predict / Classify / Regress."""
        micros = _micros(seconds)
        self.runtime_latency.observe((model_name, api, "TF1"), micros)
        self._record_session_run(micros)

    def record_multi_inference_examples(self, model: str, example_count: int) -> None:
        """Examples of one MultiInference request (the only caller of these two metrics)."""
        self.request_example_counts.observe((model,), example_count)
        self.request_example_count_total.increment((model,), example_count)

    def record_load(self, model_path: str, ok: bool, seconds: float) -> None:
        """One SavedModel load attempt of a version directory."""
        self.load_attempt_count.increment((model_path, "success" if ok else "fail"))
        if not ok:
            return
        micros = _micros(seconds)
        self.load_latency.increment((model_path,), micros)
        for stage, share in _LOAD_STAGE_SHARES:
            self.load_latency_by_stage.observe((model_path, stage), int(micros * share))
        self.read_count.increment(("1",))
        self.read_api.increment(("cc_load",))
        self.read_path.set((), model_path)
        self.session_created.set((), True)
        # Restoring variables and running the init op are two session runs of their own.
        for _ in _LOAD_STAGE_SHARES:
            self._record_session_run(0)

    def _record_session_run(self, micros: int) -> None:
        self.direct_session_runs.increment()
        self.graph_runs.increment()
        self.graph_run_time_usecs.increment((), micros)
        self.graph_run_time_histogram.observe((), micros)

    def render(self) -> str:
        return self.registry.render()
