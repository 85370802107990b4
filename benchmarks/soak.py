"""Bounded soak: scrapes, canaries, traffic and version rolls for a fixed time; RSS and open
file descriptors of the exporter are sampled and must show no growth trend.

    python benchmarks/soak.py [--minutes 10] [--roll-every 60]

Runs the simulator and the exporter as separate processes on 127.0.0.1 (demo models, demo
golden sets, canaries every second). Exits 1 when RSS or file descriptors grow over the second
half of the run, when a scrape fails, or when canary results stop coming.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.stack import (free_port, rss_mib, start_exporter, start_simulator,  # noqa: E402
                              stop as stop_processes, wait_for)
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR, write_demo_files  # noqa: E402
from tfserving_simulator.demo_models import write_half_plus_two  # noqa: E402


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time, per minute."""
    if len(points) < 2:
        return 0.0
    times, values = zip(*points)
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    denominator = sum((t - mean_t) ** 2 for t in times) or 1.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / denominator * 60


def sample_value(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--roll-every", type=float, default=60.0, help="seconds between rolls")
    args = parser.parse_args()
    duration = args.minutes * 60

    with tempfile.TemporaryDirectory(prefix="tfserving-soak-") as root:
        files = write_demo_files(root)
        grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
        simulator = start_simulator(files.model_config_file, files.monitoring_config_file,
                                    grpc_port, rest_port)
        # TF Serving keeps every version it ever saw (END ones too); with a roll a minute the
        # exported state would grow by design. Capping versions keeps it constant, so any
        # growth left is the exporter's own.
        config = os.path.join(root, "soak-config.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("limits:\n  max_versions_per_model: 3\n")
        exporter = start_exporter(web_port, grpc_port, rest_port, files.model_config_file,
                                  f"--config.file={config}",
                                  f"--canary.golden-dir={STANDIN_GOLDEN_DIR}",
                                  "--canary.interval=1s")
        url = f"http://127.0.0.1:{web_port}/metrics"
        stop = threading.Event()
        failures: list[str] = []
        scrapes = [0]

        def scraper() -> None:
            session = requests.Session()
            while not stop.wait(0.5):
                try:
                    reply = session.get(url, timeout=10,
                                        headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"})
                    if reply.status_code != 200:
                        failures.append(f"scrape answered {reply.status_code}")
                    scrapes[0] += 1
                except requests.RequestException as err:
                    failures.append(f"scrape failed: {err}")

        def traffic() -> None:
            session = requests.Session()
            predict = f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two:predict"
            while not stop.wait(0.05):
                try:
                    session.post(predict, json={"instances": [1.0, 2.0]}, timeout=10)
                except requests.RequestException:
                    pass  # during a roll the simulator may be busy; the exporter is measured

        try:
            wait_for(f"http://127.0.0.1:{rest_port}/v1/models/half_plus_two", 60)
            wait_for(url, 30)
            threads = [threading.Thread(target=scraper, daemon=True) for _ in range(4)]
            threads.append(threading.Thread(target=traffic, daemon=True))
            for thread in threads:
                thread.start()
            started = time.monotonic()
            samples: list[tuple[float, float, int]] = []
            next_roll, version = started + args.roll_every, 124
            last_canary = None
            while (now := time.monotonic()) - started < duration:
                samples.append((now - started, rss_mib(exporter.pid), open_fds(exporter.pid)))
                if now >= next_roll:
                    write_half_plus_two(os.path.join(root, "models", "half_plus_two"), version)
                    version, next_roll = version + 1, now + args.roll_every
                text = requests.get(url, timeout=10).text
                last_canary = sample_value(text, "tfserving_canary_last_run_timestamp_seconds"
                                                 '{model="half_plus_two"')
                stale = last_canary is None or time.time() - last_canary > 30
                if stale and now - started > 30:  # the first results need a few seconds
                    failures.append(f"canary results stale at {now - started:.0f} s")
                time.sleep(min(10.0, max(0.0, duration - (time.monotonic() - started))))
            stop.set()
        finally:
            stop.set()
            stop_processes(exporter, simulator)

    second_half = [s for s in samples if s[0] >= duration / 2]
    rss_slope = slope_per_minute([(t, r) for t, r, _ in second_half])
    fd_slope = slope_per_minute([(t, f) for t, _, f in second_half])
    print(f"soak: {args.minutes:g} min, {scrapes[0]} scrapes, {version - 124} version rolls, "
          f"canaries every 1 s")
    print("  t (s)   RSS (MiB)   open fds")
    for t, rss, fds in samples[:: max(1, len(samples) // 12)]:
        print(f"  {t:6.0f}   {rss:9.1f}   {fds:8d}")
    print(f"second half: RSS slope {rss_slope:+.3f} MiB/min, fd slope {fd_slope:+.3f}/min")
    grew = rss_slope > 0.5 or fd_slope > 0.5
    for failure in failures[:10]:
        print("FAIL:", failure)
    if grew:
        print("FAIL: growth trend")
    return 1 if failures or grew else 0


if __name__ == "__main__":
    sys.exit(main())
