"""``tfserving-exporter`` command line: run (default), demo, simulate, check-config."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Sequence

from exporter import __version__

log = logging.getLogger("exporter")

SUBCOMMANDS = ("run", "demo", "simulate", "check-config", "golden")

# (flag, config field, help). Flags override the config file; unset flags leave it alone.
RUN_FLAGS = (
    ("--web.listen-address", "web.listen_address",
     "Address to listen on for /metrics, e.g. ':9850' or '127.0.0.1:9850'."),
    ("--web.telemetry-path", "web.telemetry_path", "Path under which to expose metrics."),
    ("--tfserving.grpc-address", "tfserving.grpc_address",
     "TF Serving gRPC address host:port ('' disables gRPC)."),
    ("--tfserving.rest-address", "tfserving.rest_address",
     "TF Serving REST base URL, e.g. http://localhost:8501 ('' disables REST)."),
    ("--tfserving.metrics-path", "tfserving.metrics_path",
     "Path of TF Serving's own Prometheus page on the REST port."),
    ("--tfserving.model-config-file", "tfserving.model_config_file",
     "TF Serving models.config to discover model names from (re-read when it changes)."),
    ("--tfserving.timeout", "tfserving.timeout",
     "Upper bound for one scrape's calls to TF Serving, e.g. 10s."),
    ("--tfserving.timeout-offset", "tfserving.timeout_offset",
     "Subtracted from Prometheus' scrape timeout to leave time for the reply, e.g. 500ms."),
    ("--tfserving.grpc-tls", "tfserving.grpc_tls.enabled",
     "Use TLS to TF Serving's gRPC port: true or false."),
    ("--tfserving.grpc-tls.ca-file", "tfserving.grpc_tls.ca_file",
     "CA certificate (PEM) to verify TF Serving's gRPC certificate."),
    ("--tfserving.grpc-tls.cert-file", "tfserving.grpc_tls.cert_file",
     "Client certificate (PEM) for mutual TLS to TF Serving."),
    ("--tfserving.grpc-tls.key-file", "tfserving.grpc_tls.key_file",
     "Key (PEM) of the client certificate."),
    ("--tfserving.grpc-tls.server-name", "tfserving.grpc_tls.server_name",
     "Name to verify TF Serving's certificate against."),
    ("--collector.status.protocol", "collectors.status.protocol",
     "Protocol of the status collector: grpc or rest."),
    ("--collector.metadata.protocol", "collectors.metadata.protocol",
     "Protocol of the metadata collector: grpc or rest."),
    ("--collector.native.passthrough", "collectors.native.passthrough",
     "Also export every other TF Serving metric as tensorflow_* (true or false)."),
    ("--canary.golden-dir", "canary.golden_dir",
     "Directory whose *.json files are golden files for canaries."),
    ("--canary.protocol", "canary.protocol", "Protocol canary requests use: grpc or rest."),
    ("--canary.interval", "canary.interval", "Time between two canary runs of a model, e.g. 60s."),
    ("--canary.timeout", "canary.timeout", "Deadline of one canary run of one version."),
    ("--canary.batch-size", "canary.batch_size", "Golden examples sent per request."),
    ("--web.config.file", "web.config_file",
     "File with TLS and basic auth settings for the exporter's endpoint (Prometheus format)."),
    ("--web.enable-lifecycle", "web.enable_lifecycle",
     "Serve POST /-/reload (true or false); without basic auth it needs no credentials."),
    ("--log.level", "log.level", "Log level: debug, info, warn, error."),
    ("--log.format", "log.format", "Log format: logfmt or json."),
)
COLLECTORS = ("status", "metadata", "native")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace(".", "_").replace("-", "_")


def _add_run_flags(parser: argparse.ArgumentParser, with_config_file: bool = True) -> None:
    if with_config_file:
        parser.add_argument("--config.file", dest="config_file", metavar="PATH",
                            help="YAML configuration file (flags override it).")
    for flag, _field, help_text in RUN_FLAGS:
        parser.add_argument(flag, dest=_dest(flag), metavar="VALUE", help=help_text)
    parser.add_argument("--model", dest="models", action="append", metavar="NAME",
                        help="Model to watch (repeatable). Replaces the config file's models list.")
    parser.add_argument("--canary.golden-file", dest="golden_files", action="append",
                        metavar="PATH", help="Golden file for canaries (repeatable). Replaces "
                                             "the config file's canary.golden_files.")
    for name in COLLECTORS:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_const",
                           const=True, help=f"Enable the {name} collector (default).")
        group.add_argument(f"--no-collector.{name}", dest=f"collector_{name}",
                           action="store_const", const=False,
                           help=f"Disable the {name} collector.")


def overrides_from_args(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    for flag, field, _help in RUN_FLAGS:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            overrides[field] = value
    for name in COLLECTORS:
        enabled = getattr(args, f"collector_{name}", None)
        if enabled is not None:
            overrides[f"collectors.{name}.enabled"] = enabled
    if args.models:
        overrides["models"] = list(args.models)
    if args.golden_files:
        overrides["canary.golden_files"] = list(args.golden_files)
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfserving-exporter",
        description="Prometheus exporter sidecar for TensorFlow Serving.")
    parser.add_argument("--version", action="version", version=f"tfserving-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="Run the exporter (default command).")
    _add_run_flags(run)

    demo = sub.add_parser("demo", help="Start the TF Serving simulator with demo models and the "
                                       "exporter, and print the /metrics URL.")
    demo.add_argument("--web.listen-address", dest="web_listen_address", default="127.0.0.1:9850",
                      metavar="ADDRESS", help="Exporter listen address (default 127.0.0.1:9850).")
    demo.add_argument("--log.level", dest="log_level", default="info", metavar="LEVEL")

    sub.add_parser("simulate", add_help=False,
                   help="Run the TF Serving simulator; takes tensorflow_model_server's flags.")

    golden = sub.add_parser("golden", help="Golden sets for canaries.")
    golden_actions = golden.add_subparsers(dest="golden_command", metavar="ACTION",
                                           required=True)
    _add_record_parser(golden_actions)

    check = sub.add_parser("check-config", help="Validate a configuration and exit non-zero "
                                                "listing every problem.")
    _add_run_flags(check)
    return parser


def _add_record_parser(actions) -> None:
    record = actions.add_parser(
        "record", help="Send request bodies to a live model and write its answers as a golden "
                       "file.",
        description="Calls MODEL (at --version, default: the version serving unpinned "
                    "requests, then pinned) with the request bodies in --requests (TF Serving "
                    "REST predict JSON: one object, a JSON array of objects, or JSON Lines) "
                    "and writes the golden file --output with the answers as expectations.")
    record.add_argument("--model", required=True, help="Model name.")
    record.add_argument("--requests", required=True, metavar="FILE",
                        help="TF Serving REST predict request bodies.")
    record.add_argument("--output", "-o", required=True, metavar="FILE",
                        help="Golden file to write (JSON).")
    record.add_argument("--version", type=int, help="Model version to record from.")
    record.add_argument("--protocol", choices=("grpc", "rest"), default="grpc")
    record.add_argument("--tfserving.grpc-address", dest="grpc_address",
                        default="localhost:8500", metavar="ADDRESS")
    record.add_argument("--tfserving.rest-address", dest="rest_address",
                        default="http://localhost:8501", metavar="URL")
    record.add_argument("--timeout", default="60s", help="Deadline for the whole recording.")
    record.add_argument("--batch-size", type=int, default=64, help="Examples per request.")
    record.add_argument("--atol", type=float, default=1e-6,
                        help="Absolute tolerance written for every output.")
    record.add_argument("--rtol", type=float, default=1e-6,
                        help="Relative tolerance written for every output.")
    record.add_argument("--top1", action="append", default=[], metavar="OUTPUT",
                        help="Class-score output whose top-1 agreement is required "
                             "(repeatable).")
    record.add_argument("--top1-report", action="append", default=[], metavar="OUTPUT",
                        help="Class-score output whose top-1 agreement is only reported.")
    labels = record.add_mutually_exclusive_group()
    labels.add_argument("--labels", metavar="FILE",
                        help="JSON list of class ids, one per example, for accuracy.")
    labels.add_argument("--labels-from-output", metavar="OUTPUT",
                        help="Take the labels from this recording's answers on OUTPUT.")
    record.add_argument("--label-output", metavar="OUTPUT",
                        help="Output whose predicted class is compared with --labels.")
    record.add_argument("--min-accuracy", type=float, help="Fail canaries below this accuracy.")
    record.add_argument("--npz", action="store_true",
                        help="Store the arrays in an .npz beside the JSON (large sets).")
    record.add_argument("--force", action="store_true", help="Overwrite an existing file.")


def cmd_golden(args: argparse.Namespace) -> int:
    from exporter.addresses import parse_grpc_address, parse_rest_address
    from exporter.canary.golden import GoldenError, write_golden
    from exporter.canary.record import read_requests, record_golden
    from exporter.durations import parse_duration
    from exporter.tfserving.grpc_client import GrpcClient
    from exporter.tfserving.rest_client import RestClient

    try:
        timeout = parse_duration(args.timeout)
        if args.protocol == "grpc":
            client = GrpcClient(parse_grpc_address(args.grpc_address))
        else:
            client = RestClient(parse_rest_address(args.rest_address))
    except ValueError as err:
        print(f"tfserving-exporter golden record: {err}", file=sys.stderr)
        return 2
    try:
        labels = None
        if args.labels:
            with open(args.labels, encoding="utf-8") as handle:
                labels = json.load(handle)
        top1 = {alias: False for alias in args.top1_report}
        top1.update({alias: True for alias in args.top1})
        document = record_golden(
            client, args.protocol, args.model, read_requests(args.requests),
            version=args.version, timeout=timeout, batch_size=args.batch_size,
            atol=args.atol, rtol=args.rtol, top1_outputs=top1, labels=labels,
            label_output=args.label_output, labels_from_output=args.labels_from_output,
            min_accuracy=args.min_accuracy)
        written = write_golden(args.output, document, force=args.force, npz=args.npz)
    except (GoldenError, FileExistsError) as err:
        print(f"tfserving-exporter golden record: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"tfserving-exporter golden record: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    provenance = document["provenance"]
    print(f"recorded model {args.model} version {provenance['version']} over {args.protocol}: "
          f"wrote {', '.join(written)}")
    return 0


def _load(args: argparse.Namespace):
    from exporter.config import ConfigError, load_config

    try:
        return load_config(getattr(args, "config_file", None), overrides_from_args(args))
    except ConfigError as err:
        print(f"tfserving-exporter: invalid configuration:\n{err}", file=sys.stderr)
        return None


def install_stop_handlers() -> threading.Event:
    """SIGINT (Ctrl-C) and SIGTERM (Kubernetes) set the returned event for a clean stop."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def wait_for(stop: threading.Event) -> None:
    while not stop.wait(3600):
        pass


def cmd_run(args: argparse.Namespace) -> int:
    from exporter.logsetup import configure_logging
    from exporter.runtime import InvalidConfig, start_exporter

    config = _load(args)
    if config is None:
        return 2
    configure_logging(config.log.level, config.log.format)
    stop = install_stop_handlers()
    for warning in config.warnings:
        log.warning(warning)
    from exporter.webconfig import WebConfigError

    try:
        running = start_exporter(config, getattr(args, "config_file", None),
                                 overrides_from_args(args))
    except WebConfigError as err:
        print(f"tfserving-exporter: invalid web config file:\n{err}", file=sys.stderr)
        return 2
    except InvalidConfig as err:
        print(f"tfserving-exporter: invalid configuration:\n{err}", file=sys.stderr)
        return 2
    except OSError as err:
        log.error("cannot listen on %s: %s", config.web.listen_address, err)
        return 1
    # SIGHUP reloads, as Prometheus does; the work happens on the one reload thread, and a
    # burst of signals costs one or two reloads, not one each.
    signal.signal(signal.SIGHUP, lambda *_: running.request_reload())
    wait_for(stop)
    log.info("shutting down")
    running.stop()
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from exporter.canary.catalog import load_golden_sets

    config = _load(args)
    if config is None:
        return 2
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from exporter.webconfig import WebConfigError, load_web_config

    canary = config.canary
    golden, problems = load_golden_sets(canary.golden_files, canary.golden_dir,
                                        canary.max_examples)
    if config.web.config_file:
        try:
            load_web_config(config.web.config_file)
        except WebConfigError as err:
            print(f"tfserving-exporter: invalid web config file:\n{err}", file=sys.stderr)
            return 2
    if problems:
        print("tfserving-exporter: invalid golden files:\n" + "\n".join(problems),
              file=sys.stderr)
        return 2
    summary = f", {len(golden)} golden sets ({', '.join(sorted(golden))})" if golden else ""
    print(f"configuration is valid{summary}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run_demo

    return run_demo(args.web_listen_address, args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        from exporter.simulator.app import main as simulate

        return simulate(argv[1:])
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "check-config": cmd_check_config, "demo": cmd_demo,
                "golden": cmd_golden}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
