"""Scrape the exporter N times against the demo simulator; print latency and exporter RSS.

    python benchmarks/scrape_benchmark.py [--scrapes 1000]

The simulator and the exporter run as separate processes (as in a pod), so the RSS printed is
the exporter's alone. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.stack import (cpu_seconds, free_port, rss_mib, start_exporter,  # noqa: E402
                              start_simulator, stop, wait_for)
from tfserving_simulator.demo_files import write_demo_files  # noqa: E402

SERVING_123 = 'tfserving_model_serving_version{model="half_plus_two"} 123.0'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfserving-bench-") as root:
        files = write_demo_files(root)
        grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
        simulator = start_simulator(files.model_config_file, files.monitoring_config_file,
                                    grpc_port, rest_port)
        exporter = start_exporter(web_port, grpc_port, rest_port, files.model_config_file)
        try:
            url = f"http://127.0.0.1:{web_port}/metrics"
            wait_for(f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two", 60)
            wait_for(url, 30, lambda r: 'tfserving_up{protocol="grpc"} 1.0' in r.text)
            rss_start = rss_mib(exporter.pid)
            session = requests.Session()
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
            latencies = []
            proc_cpu_start = cpu_seconds(exporter.pid)
            for _ in range(args.scrapes):
                started = time.perf_counter()
                reply = session.get(url, headers=headers, timeout=10)
                latencies.append(time.perf_counter() - started)
                if reply.status_code != 200 or SERVING_123 not in reply.text:
                    raise SystemExit("unexpected /metrics reply")
            proc_cpu = cpu_seconds(exporter.pid) - proc_cpu_start
            rss_end = rss_mib(exporter.pid)
        finally:
            stop(exporter, simulator)

    latencies.sort()
    quantile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"scrapes: {args.scrapes} (2 demo models, status + metadata over gRPC)")
    print(f"/metrics latency p50: {quantile(0.50):.2f} ms  p99: {quantile(0.99):.2f} ms  "
          f"mean: {statistics.fmean(latencies) * 1000:.2f} ms")
    print(f"exporter CPU per scrape: {proc_cpu / args.scrapes * 1000:.2f} ms")
    print(f"exporter RSS: {rss_start:.1f} MiB after first scrape, {rss_end:.1f} MiB after "
          f"{args.scrapes} scrapes (target < 100 MiB)")
    return 0 if rss_end < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
