"""Time to turn a large TF Serving Prometheus page into bridged metrics, per scrape.

    python benchmarks/native_benchmark.py [--lines 10000] [--runs 50]

The page is built the way TF Serving writes it (docs/tfserving-behaviour.md §5.2): request/runtime latency
histograms with the E33 microsecond buckets for many models over REST and gRPC, request
counts, load metrics, and bare TYPE lines for idle TF-core metrics. Prints the median and p99
of parsing + bridging with every line read (the page given as text: nothing of the last page
is reused, only the per-line caches), of the same as the exporter receives it (bytes, the page
unchanged since the last scrape: its histogram series are replayed), and of rendering the
result as the exporter's /metrics text.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exporter.collectors.native import NativeCollector  # noqa: E402
from exporter.exposition import encode  # noqa: E402

E33 = [10 * 1.8 ** i for i in range(33)]


def _g(value: float) -> str:
    return f"{value:g}"


def build_page(target_lines: int) -> str:
    lines = []
    for index in range(40):
        lines.append(f"# TYPE :tensorflow:core:idle_metric_{index:02d} counter")
    model = 0
    histograms: dict[str, list[str]] = {"request_latency": [], "runtime_latency": []}
    counts, loads = [], []
    while len(lines) + sum(len(v) for v in histograms.values()) < target_lines:
        name = f"model_{model:03d}"
        for api, entrypoint in (("predict", "REST"), ("Predict", "GRPC")):
            labels = f'model_name="{name}",API="{api}",entrypoint="{entrypoint}"'
            cumulative = 0
            for limit in E33:
                cumulative += 3
                histograms["request_latency"].append(
                    f':tensorflow:serving:request_latency_bucket{{{labels},le="{_g(limit)}"}} '
                    f"{cumulative}")
            histograms["request_latency"] += [
                f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} {cumulative}',
                f":tensorflow:serving:request_latency_sum{{{labels}}} {_g(cumulative * 812.5)}",
                f":tensorflow:serving:request_latency_count{{{labels}}} {cumulative}"]
        runtime = f'model_name="{name}",API="Predict",runtime="TF1"'
        for limit in E33:
            histograms["runtime_latency"].append(
                f':tensorflow:serving:runtime_latency_bucket{{{runtime},le="{_g(limit)}"}} 2')
        histograms["runtime_latency"] += [
            f':tensorflow:serving:runtime_latency_bucket{{{runtime},le="+Inf"}} 2',
            f":tensorflow:serving:runtime_latency_sum{{{runtime}}} 340",
            f":tensorflow:serving:runtime_latency_count{{{runtime}}} 2"]
        counts.append(f':tensorflow:serving:request_count{{model_name="{name}",status="OK"}} 99')
        loads.append(f':tensorflow:cc:saved_model:load_attempt_count{{model_path="/models/{name}/1",'
                     f'status="success"}} 1')
        model += 1
    page = (["# TYPE :tensorflow:cc:saved_model:load_attempt_count counter"] + loads
            + lines + ["# TYPE :tensorflow:serving:request_count counter"] + counts
            + ["# TYPE :tensorflow:serving:request_latency histogram"]
            + histograms["request_latency"]
            + ["# TYPE :tensorflow:serving:runtime_latency histogram"]
            + histograms["runtime_latency"])
    return "\n".join(page) + "\n", model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    page, models = build_page(args.lines)
    collector = NativeCollector("/monitoring/prometheus/metrics", lambda: {})
    convert_times, render_times = [], []
    collector.convert(page)  # the first scrape fills the per-series caches
    for _ in range(args.runs):
        started = time.perf_counter()
        metrics = collector.convert(page)
        convert_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        encode(metrics, [], "text/plain")
        render_times.append(time.perf_counter() - started)

    raw = page.encode()
    unchanged_times = []
    collector.convert(raw)
    for _ in range(args.runs):
        started = time.perf_counter()
        collector.convert(raw)
        unchanged_times.append(time.perf_counter() - started)

    def show(times: list[float]) -> str:
        times = sorted(times)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        return f"median {statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"

    print(f"page: {page.count(chr(10))} lines, {len(page) / 1024:.0f} KiB, {models} models")
    print(f"parse + bridge per scrape: {show(convert_times)} (target < 20 ms)")
    print(f"parse + bridge, page unchanged (bytes): {show(unchanged_times)}")
    print(f"rendering the bridged metrics: {show(render_times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
