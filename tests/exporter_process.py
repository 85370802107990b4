"""The exporter as a separate process, as deployed, so tests can read what only a process
shows: its peak RSS (``VmHWM``), threads, CPU time and log output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from benchmarks.stack import cpu_seconds
from tests.helpers import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


class ExporterProcess:
    """``tfserving-exporter run`` with the given flags, listening on 127.0.0.1, its log in
    ``log_path``. Started with the environment of the image and the chart."""

    def __init__(self, log_path: str, *flags: str, config_file: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        args = [sys.executable, "-m", "exporter", "run",
                f"--web.listen-address=127.0.0.1:{self.port}", *flags]
        if config_file:
            args.append(f"--config.file={config_file}")
        env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONUNBUFFERED="1")
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        wait_until(self._ready, timeout=30, message=f"exporter on {self.url} ready "
                                                    f"(log: {log_path})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"exporter exited with {self.process.returncode}: "
                                 + self.log_text()[-2000:])
        return requests.get(self.url + "/-/ready", timeout=2).status_code == 200

    @property
    def pid(self) -> int:
        return self.process.pid

    def scrape(self, scrape_timeout: float = 3.0, path: str = "/metrics",
               **headers: str) -> tuple[requests.Response, float]:
        """One scrape as Prometheus makes it; returns the reply and the seconds it took."""
        started = time.monotonic()
        reply = requests.get(self.url + path, timeout=scrape_timeout + 30, headers={
            "X-Prometheus-Scrape-Timeout-Seconds": str(scrape_timeout), **headers})
        return reply, time.monotonic() - started

    def peak_rss_mib(self) -> float:
        return _status_field(self.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        return _status_field(self.pid, "VmRSS") / 1024

    def threads(self) -> int:
        return _status_field(self.pid, "Threads")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def log_bytes(self) -> int:
        return os.path.getsize(self.log_path)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM and wait; the exit code, or None if it had to be killed."""
        code = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            code = self.process.returncode
        self._log.close()
        return code
