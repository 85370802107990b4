"""The simulator as a process of its own, as TF Serving runs: for the demo and the benchmarks.

A real SavedModel loads TensorFlow's runtime into the simulator's process; keeping that
process apart keeps TensorFlow out of whatever starts it (the exporter, in the demo).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Iterable


def start(grpc_port: int, rest_port: int, model_config_file: str,
          monitoring_config_file: str | None = None, **popen) -> subprocess.Popen:
    """``python -m tfserving_simulator`` with TF Serving's flags, on 127.0.0.1."""
    flags = [f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_config_file={model_config_file}", "--bind_address=127.0.0.1"]
    if monitoring_config_file:
        flags.append(f"--monitoring_config_file={monitoring_config_file}")
    popen.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", "tfserving_simulator", *flags], **popen)


def wait_until_serving(process: subprocess.Popen, rest_port: int, models: Iterable[str],
                       timeout: float, stop: threading.Event | None = None) -> bool:
    """Until every model has an AVAILABLE version (TF Serving opens its ports only after the
    first load): True; False as soon as ``stop`` is set (Ctrl-C during the start).
    RuntimeError when the simulator exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    pending = list(models)
    while pending:
        if stop is not None and stop.is_set():
            return False
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no AVAILABLE version of {', '.join(pending)} after "
                               f"{timeout:.0f} s")
        try:
            url = f"http://127.0.0.1:{rest_port}/v1/models/{pending[0]}"
            with urllib.request.urlopen(url, timeout=2) as reply:
                states = [v["state"] for v in json.load(reply)["model_version_status"]]
            if "AVAILABLE" in states:
                pending.pop(0)
                continue
        except (OSError, ValueError, KeyError):
            pass  # not listening yet, or still loading
        time.sleep(0.1)  # a bounded pause between polls, under the deadline above
    return True


def stop(process: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
