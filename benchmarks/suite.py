"""The benchmark suite: one command, its tables.

    python benchmarks/suite.py [--models 1,10,100] [--scrapes 200]
                               [--standin-models 1,10,100,1000] [--traffic-models 100,1000]
                               [--no-extras]

For 1, 10 and 100 models with 3 AVAILABLE versions each (half_plus_two programs, traffic on
every model so TF Serving's page carries two latency histograms per model), the simulator and
the exporter run as separate processes on 127.0.0.1 and the exporter is scraped from one
client. Reported: /metrics latency p50/p99, exporter CPU per scrape, RSS, cold start to ready
and to the first full scrape, and the same scrape of the simulator's own page for comparison.
Then the canary comparison cost and the native page parse cost (the other two benchmark
scripts), and the cost of importing TF Serving's protos our way versus the normal way, which
loads TensorFlow (what an exporter importing tensorflow_serving.apis directly pays).

The simulator rows are the end-to-end figure; the simulator itself is slow enough to matter.
So the exporter is also measured against ``fake_tfserving.py``, a stand-in answering from
canned bytes, at 1 to 1,000 models: there, each row also carries the serialization floor,
``prometheus_client.generate_latest`` of the very families the exporter served (parsed from
its page once, timed in this process), and the ratio of the exporter's CPU per scrape to it.
The stand-in's page is the same on every read, except in the ``--traffic-models`` rows, where
every model gets one more request before each read (so every request count and latency series
changes between two scrapes: the worst case for the exporter's reuse of unchanged lines).
The scrape count of a stand-in row adapts to the scrape time (``--row-seconds``).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.stack import (cpu_seconds, free_port, rss_mib, start_exporter,  # noqa: E402
                              start_simulator, stop, wait_for)
from tfserving_simulator.demo_files import MONITORING_CONFIG  # noqa: E402
from tfserving_simulator.demo_models import write_half_plus_two  # noqa: E402


def write_models(root: str, count: int) -> str:
    entries = []
    for index in range(count):
        base = os.path.join(root, "models", f"model_{index:03d}")
        for version in (1, 2, 3):
            write_half_plus_two(base, version)
        entries.append(f'  config {{ name: "model_{index:03d}" base_path: "{base}" '
                       'model_platform: "tensorflow" model_version_policy { all {} } }\n')
    path = os.path.join(root, "models.config")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("model_config_list {\n" + "".join(entries) + "}\n")
    return path


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000)


def timed_gets(session: requests.Session, url: str, count: int, headers=None) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        reply = session.get(url, timeout=30, headers=headers)
        times.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise SystemExit(f"{url} answered {reply.status_code}")
    return times


def measure_fleet(count: int, scrapes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tfserving-suite-") as root:
        model_config = write_models(root, count)
        monitoring = os.path.join(root, "monitoring.config")
        with open(monitoring, "w", encoding="utf-8") as handle:
            handle.write(MONITORING_CONFIG)
        grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
        simulator = start_simulator(model_config, monitoring, grpc_port, rest_port)
        exporter = None
        try:
            rest = f"http://127.0.0.1:{rest_port}"
            wait_for(f"{rest}/v1/models/model_000", 120, lambda r: r.status_code == 200)
            session = requests.Session()
            for index in range(count):  # REST and gRPC-shaped traffic for the page
                session.post(f"{rest}/v1/models/model_{index:03d}:predict",
                             json={"instances": [1.0]}, timeout=10)
            started = time.monotonic()
            exporter = start_exporter(web_port, grpc_port, rest_port, model_config)
            url = f"http://127.0.0.1:{web_port}"
            wait_for(url + "/-/ready", 60, lambda r: r.status_code == 200)
            ready = time.monotonic() - started
            last = f'tfserving_model_serving_version{{model="model_{count - 1:03d}"}} 3.0'
            wait_for(url + "/metrics", 60, lambda r: last in r.text)
            first_full = time.monotonic() - started
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
            timed_gets(session, url + "/metrics", 5, headers)  # warm the signature cache
            cpu_before = cpu_seconds(exporter.pid)
            exporter_times = timed_gets(session, url + "/metrics", scrapes, headers)
            cpu = (cpu_seconds(exporter.pid) - cpu_before) / scrapes
            page_times = timed_gets(session, f"{rest}/monitoring/prometheus/metrics", scrapes)
            rss = rss_mib(exporter.pid)
        finally:
            stop(exporter, simulator)
    return {"models": count, "exporter": quantiles(exporter_times), "cpu_ms": cpu * 1000,
            "rss": rss, "ready": ready, "first_full": first_full,
            "page": quantiles(page_times)}


# What the exporter needs to export every model of the stand-in: models beyond limits.max_models
# are dropped (default 100), and the bridged native lines grow ~320 a model (default 50,000).
STANDIN_BASE_DIR = "/models"


def standin_config(count: int) -> str:
    return (f"limits:\n  max_models: {max(100, count)}\n"
            f"collectors:\n  native:\n    max_series: {max(50000, 400 * count)}\n"
            f"    max_page_size: {max(16 << 20, 64 * 1024 * count)}\n")


def start_standin(count: int, grpc_port: int, rest_port: int,
                  traffic: bool = False) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake_tfserving.py"), f"--models={count}",
         f"--grpc-port={grpc_port}", f"--rest-port={rest_port}",
         f"--base-dir={STANDIN_BASE_DIR}", *(["--traffic"] if traffic else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        line = process.stdout.readline() if ready else ""
        if line.strip() == "ready":
            return process
        if not line and process.poll() is not None:
            break
    stop(process)
    raise SystemExit("the TF Serving stand-in did not become ready")


def standin_models_config(root: str, count: int) -> str:
    path = os.path.join(root, "models.config")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("model_config_list {\n" + "".join(
            f'  config {{ name: "model_{i:03d}" base_path: "{STANDIN_BASE_DIR}/model_{i:03d}" '
            'model_platform: "tensorflow" model_version_policy { all {} } }\n'
            for i in range(count)) + "}\n")
    return path


class _Families:
    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self):
        return self._families


def serialization_floor(page: str, min_seconds: float = 1.0) -> float:
    """CPU seconds of one ``generate_latest`` of the families on ``page`` (in this process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(text_string_to_metric_families(page))))
    generate_latest(registry)  # warm
    runs, started = 0, time.process_time()
    while runs < 3 or time.process_time() - started < min_seconds:
        generate_latest(registry)
        runs += 1
    return (time.process_time() - started) / runs


def measure_standin(count: int, max_scrapes: int, row_seconds: float,
                    traffic: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="tfserving-standin-") as root:
        model_config = standin_models_config(root, count)
        config_file = os.path.join(root, "config.yaml")
        with open(config_file, "w", encoding="utf-8") as handle:
            handle.write(standin_config(count))
        grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
        standin = start_standin(count, grpc_port, rest_port, traffic)
        exporter = None
        try:
            tf_page = requests.get(
                f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30)
            exporter = start_exporter(web_port, grpc_port, rest_port, model_config,
                                      f"--config.file={config_file}")
            url = f"http://127.0.0.1:{web_port}"
            wait_for(url + "/-/ready", 60, lambda r: r.status_code == 200)
            last = f'tfserving_model_serving_version{{model="model_{count - 1:03d}"}} 3.0'
            wait_for(url + "/metrics", 120, lambda r: last in r.text)
            session = requests.Session()
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "30"}
            warm = timed_gets(session, url + "/metrics", 3, headers)  # signature cache too
            scrapes = max(5, min(max_scrapes, int(row_seconds / max(min(warm), 1e-4))))
            cpu_before = cpu_seconds(exporter.pid)
            exporter_times = timed_gets(session, url + "/metrics", scrapes, headers)
            cpu = (cpu_seconds(exporter.pid) - cpu_before) / scrapes
            rss = rss_mib(exporter.pid)
            page = session.get(url + "/metrics", timeout=30, headers=headers).text
        finally:
            stop(exporter, standin)
    floor = serialization_floor(page)
    last_model = f'model="model_{count - 1:03d}"'  # the native page bridged, to the last model
    bridged = any(line.startswith("tfserving_requests_total") and last_model in line
                  for line in page.splitlines())
    return {"models": count, "traffic": traffic, "scrapes": scrapes,
            "exporter": quantiles(exporter_times),
            "cpu_ms": cpu * 1000, "rss": rss, "lines": page.count("\n"),
            "bytes": len(page.encode()), "floor_ms": floor * 1000,
            "tf_page_bytes": len(tf_page.content), "native": bridged}


def print_standin_table(rows: list[dict]) -> None:
    print()
    print("Against the fast stand-in (benchmarks/fake_tfserving.py: canned gRPC status and "
          "metadata, pre-rendered TF Serving page). Exporter settings, in --config.file: "
          "limits.max_models = max(100, N), collectors.native.max_series = max(50000, 400 N), "
          "collectors.native.max_page_size = max(16 MiB, 64 KiB N); the N models in "
          "--tfserving.model-config-file. TF page: unchanged between scrapes, or one more "
          "request on every model before each read (--traffic: every request count and "
          "latency series differs). Floor: generate_latest of the exporter's own /metrics "
          "families, CPU in the suite process.")
    print("| models x 3 versions | TF page | scrapes | /metrics p50 / p99 | CPU per scrape | "
          "exporter RSS | /metrics lines / bytes | TF page bytes (bridged?) | "
          "generate_latest floor | CPU / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        page = "every model's requests change" if row["traffic"] else "unchanged"
        print(f"| {row['models']} | {page} | {row['scrapes']} | "
              f"{row['exporter'][0]:.1f} / {row['exporter'][1]:.1f} ms | "
              f"{row['cpu_ms']:.1f} ms | {row['rss']:.1f} MiB | "
              f"{row['lines']:,} / {row['bytes']:,} | "
              f"{row['tf_page_bytes']:,} ({'yes' if row['native'] else 'NO'}) | "
              f"{row['floor_ms']:.2f} ms | {row['cpu_ms'] / row['floor_ms']:.2f}x |")


def run_script(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, os.path.join(HERE, name), *args],
                            capture_output=True, text=True, timeout=600, check=True)
    return result.stdout


def import_cost(code: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of a fresh interpreter running ``code``. The peak is VmHWM,
    which starts over with the new program; ru_maxrss would carry this (large) process's peak
    across the fork."""
    probe = (f"import time; t = time.perf_counter(); {code}; "
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
             "print(time.perf_counter() - t, int(hwm.split()[1]) / 1024)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300, check=True, cwd=os.path.dirname(HERE)).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="1,10,100")
    parser.add_argument("--scrapes", type=int, default=200,
                        help="scrapes per simulator row; at most this many per stand-in row")
    parser.add_argument("--standin-models", default="1,10,100,1000")
    parser.add_argument("--traffic-models", default="100,1000",
                        help="stand-in rows whose page changes on every read (--traffic)")
    parser.add_argument("--row-seconds", type=float, default=15.0,
                        help="about this long of scraping per stand-in row")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the canary, native-parse and proto-import measures")
    args = parser.parse_args()

    rows = [measure_fleet(int(n), args.scrapes) for n in args.models.split(",") if n]
    if rows:
        print("| models x 3 versions | /metrics p50 / p99 | CPU per scrape | exporter RSS | "
              "ready / first full scrape | simulator's own page p50 / p99 | "
              "exporter / page p50 |")
        print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['models']} | {row['exporter'][0]:.1f} / {row['exporter'][1]:.1f} ms | "
              f"{row['cpu_ms']:.1f} ms | {row['rss']:.1f} MiB | "
              f"{row['ready']:.2f} / {row['first_full']:.2f} s | "
              f"{row['page'][0]:.1f} / {row['page'][1]:.1f} ms | "
              f"{row['exporter'][0] / row['page'][0]:.1f}x |")

    standin = [(int(n), False) for n in args.standin_models.split(",") if n]
    standin += [(int(n), True) for n in args.traffic_models.split(",") if n]
    if standin:
        print_standin_table([measure_standin(n, args.scrapes, args.row_seconds, traffic)
                             for n, traffic in standin])
    if args.no_extras:
        return 0
    compare = run_script("compare_benchmark.py", "--runs", "100")
    native = run_script("native_benchmark.py", "--runs", "30")
    ours = import_cost("from tfserving_wire import protos; protos.load_all()")
    theirs = import_cost("from tensorflow_serving.apis import predict_pb2")
    print()
    print("| measure | value |")
    print("|---|---|")
    median = re.search(r"median ([\d.]+) ms, p99 ([\d.]+) ms", compare)
    print(f"| canary compare, 1,000 examples x 10 outputs (p50 / p99) | "
          f"{median.group(1)} / {median.group(2)} ms |")
    parsed = re.search(r"parse \+ bridge per scrape: median ([\d.]+) ms, p99 ([\d.]+) ms", native)
    print(f"| native page parse + bridge, 10,000 lines, every line read (p50 / p99) | "
          f"{parsed.group(1)} / {parsed.group(2)} ms |")
    unchanged = re.search(r"page unchanged \(bytes\): median ([\d.]+) ms, p99 ([\d.]+) ms",
                          native)
    print(f"| the same, page unchanged since the last scrape (p50 / p99) | "
          f"{unchanged.group(1)} / {unchanged.group(2)} ms |")
    print(f"| TF Serving protos, our loader: time / peak RSS | {ours[0]:.2f} s / {ours[1]:.0f} MiB |")
    print(f"| TF Serving protos imported normally (loads TensorFlow) | "
          f"{theirs[0]:.2f} s / {theirs[1]:.0f} MiB |")
    print(f"| ratio (normal / ours) | {theirs[0] / ours[0]:.0f}x time, "
          f"{theirs[1] / ours[1]:.0f}x memory |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
