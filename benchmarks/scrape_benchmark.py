"""Scrape the exporter N times against the demo simulator; print latency and exporter RSS.

    python benchmarks/scrape_benchmark.py [--scrapes 1000]

The simulator and the exporter run as separate processes (as in a pod), so the RSS printed is
the exporter's alone. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exporter.demo import write_demo_files  # noqa: E402


SERVING_123 = 'tfserving_model_serving_version{model="half_plus_two"} 123.0'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def wait_for(url: str, timeout: float, predicate=lambda r: r.status_code == 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(requests.get(url, timeout=2)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfserving-bench-") as root:
        files = write_demo_files(root)
        grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
        simulator = subprocess.Popen(
            [sys.executable, "-m", "exporter", "simulate", f"--port={grpc_port}",
             f"--rest_api_port={rest_port}", f"--model_config_file={files.model_config_file}",
             f"--monitoring_config_file={files.monitoring_config_file}",
             "--bind_address=127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        exporter = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run",
             f"--web.listen-address=127.0.0.1:{web_port}",
             f"--tfserving.grpc-address=127.0.0.1:{grpc_port}",
             f"--tfserving.rest-address=http://127.0.0.1:{rest_port}",
             f"--tfserving.model-config-file={files.model_config_file}",
             "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{web_port}/metrics"
            wait_for(f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two", 60)
            wait_for(url, 30, lambda r: 'tfserving_up{protocol="grpc"} 1.0' in r.text)
            rss_start = rss_mib(exporter.pid)
            session = requests.Session()
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
            latencies = []
            proc_cpu_start = _proc_cpu_seconds(exporter.pid)
            for _ in range(args.scrapes):
                started = time.perf_counter()
                reply = session.get(url, headers=headers, timeout=10)
                latencies.append(time.perf_counter() - started)
                if reply.status_code != 200 or SERVING_123 not in reply.text:
                    raise SystemExit("unexpected /metrics reply")
            proc_cpu = _proc_cpu_seconds(exporter.pid) - proc_cpu_start
            rss_end = rss_mib(exporter.pid)
        finally:
            for process in (exporter, simulator):
                process.terminate()
                process.wait(timeout=10)

    latencies.sort()
    quantile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"scrapes: {args.scrapes} (2 demo models, status + metadata over gRPC)")
    print(f"/metrics latency p50: {quantile(0.50):.2f} ms  p99: {quantile(0.99):.2f} ms  "
          f"mean: {statistics.fmean(latencies) * 1000:.2f} ms")
    print(f"exporter CPU per scrape: {proc_cpu / args.scrapes * 1000:.2f} ms")
    print(f"exporter RSS: {rss_start:.1f} MiB after first scrape, {rss_end:.1f} MiB after "
          f"{args.scrapes} scrapes (target < 100 MiB)")
    return 0 if rss_end < 100 else 1


def _proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


if __name__ == "__main__":
    sys.exit(main())
