"""The simulator and the exporter as separate processes on 127.0.0.1, for the benchmarks
(as in a pod: the exporter's RSS and CPU are its own)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tfserving_simulator import process as simulator_process  # noqa: E402


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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_simulator(model_config_file: str, monitoring_config_file: str, grpc_port: int,
                    rest_port: int) -> subprocess.Popen:
    return simulator_process.start(grpc_port, rest_port, model_config_file,
                                   monitoring_config_file, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=ROOT)


def start_exporter(web_port: int, grpc_port: int, rest_port: int, model_config_file: str,
                   *extra: str) -> subprocess.Popen:
    # The exporter sets glibc's malloc arenas and mmap threshold itself (exporter/allocator.py).
    env = dict(os.environ)
    return subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{web_port}",
         f"--tfserving.grpc-address=127.0.0.1:{grpc_port}",
         f"--tfserving.rest-address=http://127.0.0.1:{rest_port}",
         f"--tfserving.model-config-file={model_config_file}", "--log.level=error", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)


def stop(*processes: subprocess.Popen | None) -> None:
    for process in processes:
        simulator_process.stop(process)


def wait_for(url: str, timeout: float, predicate=lambda r: r.status_code == 200) -> float:
    """Poll ``url`` until ``predicate(reply)``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate(requests.get(url, timeout=10)):
                return time.monotonic() - started
        except requests.RequestException:
            pass
        time.sleep(0.02)  # a bounded pause between polls
    raise SystemExit(f"timed out waiting for {url}")
