"""``tfserving-exporter demo``: the simulator with the demo models, plus the exporter.

The models are real SavedModels (TF Serving's half_plus_two and a small CNN), so the simulator
runs TensorFlow, in a process of its own as TF Serving would; the exporter's process never
loads it.

The newcomer's first command. Everything binds to 127.0.0.1; TF Serving's usual ports are used
when free, otherwise the simulator takes free ones.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile

from exporter.signals import install_stop_handlers, wait_for

DEMO_CANARY_INTERVAL = "15s"


def pick_ports(*preferred: int) -> list[int]:
    """TF Serving's usual ports where free, else ones the OS has free, all different (the
    simulator's command line, like TF Serving's, needs numbers). Sockets stay bound until
    all are picked, so the OS cannot offer one twice."""
    with contextlib.ExitStack() as held:
        ports = []
        for port in preferred:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def run_demo(listen_address: str, log_level: str = "info") -> int:
    # The simulator only here: the exporter's own commands never import it, and the container
    # image does not have it (cli.py checks that before calling this).
    from exporter.config import ConfigError, load_config
    from exporter.allocator import tune_allocator
    from exporter.logsetup import configure_logging
    from exporter.runtime import start_exporter
    from tfserving_simulator import process as simulator_process
    from tfserving_simulator.demo_files import DEMO_GOLDEN_DIR, write_demo_files

    configure_logging(log_level, "logfmt")
    tune_allocator()
    stop = install_stop_handlers()
    root = tempfile.mkdtemp(prefix="tfserving-exporter-demo-")
    simulator = running = None
    try:
        files = write_demo_files(root, real=True)
        grpc_port, rest_port = pick_ports(8500, 8501)
        simulator = simulator_process.start(grpc_port, rest_port, files.model_config_file,
                                            files.monitoring_config_file,
                                            stdout=subprocess.DEVNULL)
        try:
            if not simulator_process.wait_until_serving(simulator, rest_port, files.model_names,
                                                        timeout=60, stop=stop):
                return 0  # stopped while starting
        except RuntimeError as err:
            if stop.is_set():  # Ctrl-C reached the simulator too, and it stopped first
                return 0
            print(f"tfserving-exporter demo: the TF Serving simulator did not start: {err}",
                  file=sys.stderr)
            return 1
        try:
            config = load_config(None, {
                "tfserving.grpc_address": f"127.0.0.1:{grpc_port}",
                "tfserving.rest_address": f"http://127.0.0.1:{rest_port}",
                "tfserving.model_config_file": files.model_config_file,
                "canary.golden_dir": DEMO_GOLDEN_DIR,
                "canary.interval": DEMO_CANARY_INTERVAL,
                "web.listen_address": listen_address,
                "log.level": log_level,
            })
        except ConfigError as err:
            print(f"tfserving-exporter demo: invalid option:\n{err}")
            return 2
        try:
            running = start_exporter(config)
        except OSError as err:
            print(f"tfserving-exporter demo: cannot listen on {listen_address}: {err}\n"
                  "Pick another address with --web.listen-address, e.g. 127.0.0.1:0")
            return 1
        host = config.web.listen_address.rpartition(":")[0].strip("[]") or "127.0.0.1"
        url = f"http://{host}:{running.port}{config.web.telemetry_path}"
        width = max(len(name) for name in files.model_names)
        models = "".join(f"  {name:<{width}}  {path}\n"
                         for name, path in zip(files.model_names, files.base_paths))
        print(f"TF Serving simulator: gRPC 127.0.0.1:{grpc_port}, "
              f"REST http://127.0.0.1:{rest_port}, running real TensorFlow SavedModels\n"
              "Models and their base paths (a new version directory there is loaded, as in "
              f"TF Serving):\n{models}"
              f"Exporter metrics: {url}\n"
              f"Canaries: golden sets in {DEMO_GOLDEN_DIR}, every {DEMO_CANARY_INTERVAL}\n"
              "Press Ctrl-C to stop.", flush=True)
        wait_for(stop)
        return 0
    finally:
        if running is not None:
            running.stop()
        simulator_process.stop(simulator)
        shutil.rmtree(root, ignore_errors=True)
