"""Fleet mode's cost: one exporter probing N TF Serving stand-ins, against the sidecar floor.

    python benchmarks/fleet_benchmark.py [--targets 20] [--models 10] [--rounds 50]
                                         [--warm-rounds 3] [--simulators]

Starts ``--targets`` stand-ins (benchmarks/fake_tfserving.py, ``--models`` models x 3
AVAILABLE versions each, as in the suite's stand-in rows) and one exporter in fleet mode
(``--tfserving.grpc-address= --tfserving.rest-address=``, ``--probe.allowed-target=
127.0.0.1/32``), all on 127.0.0.1 in their own processes. Every target is probed until its
reply is complete (every model's status and its bridged native series), then ``--warm-rounds``
more rounds, then ``--rounds`` timed rounds, round-robin over the targets from one client:
``/probe?target=127.0.0.1:GRPC&rest_target=http://127.0.0.1:REST``. Reported: client-side
p50 / p99 per probe, the exporter's CPU per probe (utime + stime from /proc/<pid>/stat over the
timed rounds, divided by the probes) and its VmRSS / VmHWM before the first probe, once every
target is tracked, and after the timed rounds.

The floor, in the same run: one sidecar exporter against the first stand-in, its /metrics
scraped as many times as there were timed probes, after the same warm-up. The last row is
fleet / sidecar. Both exporters get the suite's stand-in settings (benchmarks/suite.py
``standin_config``) and the models in ``--tfserving.model-config-file``.

``--simulators`` probes TF Serving simulators instead (tfserving_simulator, the demo models,
each in its own process), with the demo golden sets' canaries running every 15 s for every
target: the memory of a fleet exporter as it would run, canaries included.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.stack import (cpu_seconds, free_port, start_exporter,  # noqa: E402
                              start_simulator, stop, wait_for)
from benchmarks.suite import (quantiles, standin_config, standin_models_config,  # noqa: E402
                              start_standin, timed_gets)
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR, write_demo_files  # noqa: E402

HEADERS = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
READY_SECONDS = 60


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MiB, and the thread count, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return {"rss": int(fields["VmRSS"].split()[0]) / 1024,
            "hwm": int(fields["VmHWM"].split()[0]) / 1024,
            "threads": int(fields["Threads"])}


def complete(models: int):
    """Whether a reply carries every model's status and its bridged native series."""
    last = f'model="model_{models - 1:03d}"'
    serving = f"tfserving_model_serving_version{{{last}}} 3.0"

    def check(reply: requests.Response) -> bool:
        text = reply.text
        return reply.status_code == 200 and serving in text and any(
            line.startswith("tfserving_requests_total") and last in line
            for line in text.splitlines())
    return check


def exporter_metric(url: str, line_start: str) -> float | None:
    page = requests.get(url + "/metrics", timeout=10).text
    for line in page.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def timed_rounds(session: requests.Session, urls: list[str], rounds: int) -> list[float]:
    times: list[float] = []
    for _ in range(rounds):
        for url in urls:
            times += timed_gets(session, url, 1, HEADERS)
    return times


def measure_fleet(standins: list[tuple[int, int]], model_config: str, extra: list[str],
                  ready, rounds: int, warm_rounds: int) -> dict:
    (web_port,) = distinct_ports(1)
    # stack.start_exporter names a server of its own; the later empty addresses override
    # them (the last of a repeated flag wins): fleet mode.
    exporter = start_exporter(web_port, 0, 0, model_config, *extra,
                              "--tfserving.grpc-address=", "--tfserving.rest-address=",
                              "--probe.allowed-target=127.0.0.1/32",
                              f"--fleet.max-targets={len(standins)}")
    url = f"http://127.0.0.1:{web_port}"
    urls = [f"{url}/probe?target=127.0.0.1:{grpc}&rest_target=http://127.0.0.1:{rest}"
            for grpc, rest in standins]
    try:
        wait_for(url + "/-/ready", READY_SECONDS)
        idle = memory(exporter.pid)
        for probe in urls:  # each target built (clients, caches) and complete
            wait_for(probe, READY_SECONDS, ready)
        session = requests.Session()
        sample = session.get(urls[0], timeout=10, headers=HEADERS).text
        timed_rounds(session, urls, warm_rounds)
        tracked = exporter_metric(url, "tfserving_exporter_fleet_targets")
        dropped = exporter_metric(url, 'tfserving_exporter_dropped_total{kind="target"}')
        if tracked != len(standins) or dropped:
            raise SystemExit(f"the fleet exporter tracks {tracked} targets of {len(standins)} "
                             f'(dropped_total{{kind="target"}} {dropped})')
        all_tracked = memory(exporter.pid)
        cpu_before = cpu_seconds(exporter.pid)
        times = timed_rounds(session, urls, rounds)
        cpu = (cpu_seconds(exporter.pid) - cpu_before) / len(times)
        after = memory(exporter.pid)
        if not ready(session.get(urls[-1], timeout=10, headers=HEADERS)):
            raise SystemExit(f"the last probe of {urls[-1]} is incomplete after the rounds")
    finally:
        stop(exporter)
    return {"requests": len(times), "latency": quantiles(times), "cpu_ms": cpu * 1000,
            "idle": idle, "tracked": all_tracked, "after": after,
            "lines": sample.count("\n"), "bytes": len(sample.encode())}


def measure_sidecar(standin: tuple[int, int], model_config: str, extra: list[str], ready,
                    scrapes: int, warm: int) -> dict:
    (web_port,) = distinct_ports(1)
    grpc_port, rest_port = standin
    exporter = start_exporter(web_port, grpc_port, rest_port, model_config, *extra)
    url = f"http://127.0.0.1:{web_port}/metrics"
    try:
        wait_for(url, READY_SECONDS, ready)
        session = requests.Session()
        sample = session.get(url, timeout=10, headers=HEADERS).text
        timed_gets(session, url, warm, HEADERS)
        cpu_before = cpu_seconds(exporter.pid)
        times = timed_gets(session, url, scrapes, HEADERS)
        cpu = (cpu_seconds(exporter.pid) - cpu_before) / scrapes
        after = memory(exporter.pid)
    finally:
        stop(exporter)
    return {"requests": scrapes, "latency": quantiles(times), "cpu_ms": cpu * 1000,
            "after": after, "lines": sample.count("\n"), "bytes": len(sample.encode())}


def start_standins(count: int, models: int) -> tuple[list, list[tuple[int, int]]]:
    ports = distinct_ports(2 * count)
    pairs = list(zip(ports[::2], ports[1::2]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(start_standin, models, grpc, rest) for grpc, rest in pairs]
    processes, failure = [], None
    for future in futures:
        try:
            processes.append(future.result())
        except BaseException as err:  # noqa: BLE001 - stop the others, then report it
            failure = err
    if failure is not None:
        stop(*processes)
        raise SystemExit(f"a stand-in did not start: {failure}")
    return processes, pairs


def start_simulators(root: str, count: int) -> tuple[list, list[tuple[int, int]], str]:
    """``count`` TF Serving simulators with the demo models, each in its own process."""
    ports = distinct_ports(2 * count)
    pairs = list(zip(ports[::2], ports[1::2]))
    processes = []
    try:
        for index, (grpc, rest) in enumerate(pairs):
            files = write_demo_files(os.path.join(root, f"simulator-{index}"))
            processes.append(start_simulator(files.model_config_file,
                                             files.monitoring_config_file, grpc, rest))
        for grpc, rest in pairs:
            wait_for(f"http://127.0.0.1:{rest}/v1/models/half_plus_two", READY_SECONDS)
    except BaseException:
        stop(*processes)
        raise
    return processes, pairs, files.model_config_file


def canaries_ran(reply: requests.Response) -> bool:
    """Both protocols up and the demo models' canaries run (simulator mode)."""
    text = reply.text
    return reply.status_code == 200 and 'tfserving_up{protocol="rest"} 1.0' in text and \
        'tfserving_up{protocol="grpc"} 1.0' in text and \
        'tfserving_canary_success{model="image_classifier"' in text


def print_table(args, fleet: dict, sidecar: dict) -> None:
    servers = ("TF Serving simulators with the demo models and their canaries "
               "(tfserving_simulator)" if args.simulators else
               f"stand-ins x {args.models} models x 3 versions (benchmarks/fake_tfserving.py)")
    print(f"{args.targets} {servers}, one client, {args.rounds} timed rounds after "
          f"{args.warm_rounds} warm ones; exporter CPU from /proc/<pid>/stat")
    print("| exporter | requests | p50 / p99 | CPU per request | VmRSS / VmHWM after | "
          "threads | reply lines / bytes |")
    print("|---|---|---|---|---|---|---|")
    for name, row in (("sidecar: /metrics of 1 server (floor)", sidecar),
                      (f"fleet: /probe round-robin over {args.targets} servers", fleet)):
        mem = row["after"]
        print(f"| {name} | {row['requests']} | {row['latency'][0]:.2f} / "
              f"{row['latency'][1]:.2f} ms | {row['cpu_ms']:.2f} ms | {mem['rss']:.1f} / "
              f"{mem['hwm']:.1f} MiB | {mem['threads']} | {row['lines']:,} / "
              f"{row['bytes']:,} |")
    print(f"| fleet / sidecar | | {fleet['latency'][0] / sidecar['latency'][0]:.2f}x / "
          f"{fleet['latency'][1] / sidecar['latency'][1]:.2f}x | "
          f"{fleet['cpu_ms'] / sidecar['cpu_ms']:.2f}x | "
          f"{fleet['after']['rss'] / sidecar['after']['rss']:.2f}x / "
          f"{fleet['after']['hwm'] / sidecar['after']['hwm']:.2f}x | | |")
    print()
    print("| fleet exporter memory | VmRSS | VmHWM | threads |")
    print("|---|---|---|---|")
    for name, mem in (("started, no target probed", fleet["idle"]),
                      (f"all {args.targets} targets tracked (after warm-up)", fleet["tracked"]),
                      (f"after the {fleet['requests']} timed probes", fleet["after"])):
        print(f"| {name} | {mem['rss']:.1f} MiB | {mem['hwm']:.1f} MiB | {mem['threads']} |")
    sidecars = args.targets * sidecar["after"]["rss"]
    print(f"| {args.targets} sidecars instead (sidecar VmRSS x {args.targets}) | "
          f"{sidecars:.1f} MiB | | |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20, help="TF Serving stand-ins")
    parser.add_argument("--models", type=int, default=10, help="models of each stand-in")
    parser.add_argument("--rounds", type=int, default=50,
                        help="timed rounds: each probes every target once")
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--simulators", action="store_true",
                        help="probe TF Serving simulators (the demo models, canaries on) "
                             "instead of stand-ins; --models is then ignored")
    args = parser.parse_args()
    if args.targets < 1 or args.models < 1 or args.rounds < 1 or args.warm_rounds < 0:
        parser.error("--targets, --models and --rounds must be at least 1, --warm-rounds 0")

    with tempfile.TemporaryDirectory(prefix="tfserving-fleet-") as root:
        started = time.monotonic()
        if args.simulators:
            processes, servers, model_config = start_simulators(root, args.targets)
            extra = [f"--canary.golden-dir={STANDIN_GOLDEN_DIR}", "--canary.interval=15s"]
            ready = canaries_ran
        else:
            model_config = standin_models_config(root, args.models)
            config_file = os.path.join(root, "config.yaml")
            with open(config_file, "w", encoding="utf-8") as handle:
                handle.write(standin_config(args.models))
            processes, servers = start_standins(args.targets, args.models)
            extra, ready = [f"--config.file={config_file}"], complete(args.models)
        try:
            print(f"{args.targets} servers ready in {time.monotonic() - started:.1f} s")
            fleet = measure_fleet(servers, model_config, extra, ready, args.rounds,
                                  args.warm_rounds)
            sidecar = measure_sidecar(servers[0], model_config, extra, ready,
                                      fleet["requests"], args.warm_rounds * args.targets)
        finally:
            stop(*processes)
    print_table(args, fleet, sidecar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
