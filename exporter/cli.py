"""``tfserving-exporter`` command line: run (default), demo, simulate, check-config."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import signal
import sys
from typing import Any, NoReturn, Sequence

from exporter import __version__
from exporter.config import SCHEMA, Setting
from exporter.config_kinds import BOOLEAN
from exporter.signals import install_stop_handlers, wait_for
from exporter.suggest import suggestion

log = logging.getLogger("exporter")

SUBCOMMANDS = ("run", "demo", "simulate", "check-config", "golden")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that answers an unknown flag with the nearest known one."""

    commands: Any = None  # the subparsers action, when the parser has commands

    def add_subparsers(self, **kwargs):
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self._innermost(parsed).refuse(extra)
        return parsed

    def _innermost(self, parsed: argparse.Namespace) -> "_Parser":
        """The parser of the (sub)command given: the one whose flags were meant."""
        commands = self.commands
        chosen = commands and commands.choices.get(getattr(parsed, commands.dest, None))
        return chosen._innermost(parsed) if chosen else self

    def refuse(self, extra: list[str]) -> NoReturn:
        unknown = [arg.split("=", 1)[0] for arg in extra if arg.startswith("-") and arg != "--"]
        if not unknown:
            self.error(f"unexpected arguments: {' '.join(extra)}")
        known = [option for action in self._actions for option in action.option_strings]
        lines = []
        for flag in unknown:
            # The --no- forms double the listing; they are offered to a flag spelt with one.
            valid = [o for o in known if o.startswith("--") and
                     (flag.startswith("--no-") or not o.startswith("--no-"))]
            lines.append(f"tfserving-exporter: unknown flag {flag}"
                         f"{suggestion(flag, valid, 'valid flags')}\n")
        self.exit(2, "".join(lines))


class _BooleanFlag(argparse.BooleanOptionalAction):
    """``--x``, ``--x=true``, ``--x=false`` and ``--no-x`` for one boolean setting.

    Flags such as ``--web.enable-lifecycle=false`` always took a value and the collectors'
    ``--collector.status`` / ``--no-collector.status`` never did; every boolean takes both
    spellings now. As with the collectors' old pairs, ``--no-x`` with ``--x`` is refused.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, default=None, help=help)
        self.nargs, self.metavar = "?", BOOLEAN.metavar

    def __call__(self, parser, namespace, values, option_string=None):
        negative = option_string.startswith("--no-")
        if negative and values is not None:
            parser.error(f'{option_string}: takes no value, got "{values}"')
        forms = vars(namespace).setdefault(_BOOLEAN_FORMS, {}).setdefault(self.dest, {})
        forms.setdefault(negative, option_string)
        if (not negative) in forms:
            parser.error(f"argument {option_string}: not allowed with argument "
                         f"{forms[not negative]}")
        value = not negative
        if values is not None:
            try:
                value = BOOLEAN.from_flag(values)
            except ValueError as err:
                parser.error(f"{option_string}: {err}")
        setattr(namespace, self.dest, value)


_BOOLEAN_FORMS = "_boolean_flag_forms"  # per parse: which of --x / --no-x each boolean got


class _HelpFormatter(argparse.HelpFormatter):
    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, _BooleanFlag):
            positive, negative = action.option_strings
            return f"{positive}[={BOOLEAN.metavar}], {negative}"
        return super()._format_action_invocation(action)


# The full usage line would list every setting's flag before each error message.
_SETTINGS_USAGE = "%(prog)s [--config.file PATH] [FLAG ...]  (--help lists the flags)"


def _flag_help(setting: Setting) -> str:
    text = setting.doc.replace("`", "")
    if setting.kind.flag_repeats:
        text += " Repeatable; replaces the config file's list."
    return f"{text} Default: {setting.default_text}.".replace("%", "%%")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """``--config.file`` and one flag per setting that declares one (exporter.config)."""
    parser.add_argument("--config.file", dest="config_file", metavar="PATH",
                        help="YAML configuration file (flags override it).")
    for setting in SCHEMA:
        if setting.flag is None:
            continue
        if setting.kind is BOOLEAN:
            parser.add_argument(setting.flag, dest=setting.path, action=_BooleanFlag,
                                help=_flag_help(setting))
        else:
            parser.add_argument(setting.flag, dest=setting.path, metavar=setting.kind.metavar,
                                action="append" if setting.kind.flag_repeats else "store",
                                help=_flag_help(setting))


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The flags given, as ``load_config`` overrides (dotted setting path -> value)."""
    return {setting.path: getattr(args, setting.path) for setting in SCHEMA
            if getattr(args, setting.path, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfserving-exporter",
        description="Prometheus exporter sidecar for TensorFlow Serving.")
    parser.add_argument("--version", action="version", version=f"tfserving-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="Run the exporter (default command).",
                         usage=_SETTINGS_USAGE, formatter_class=_HelpFormatter)
    _add_setting_flags(run)

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
                                                "listing every problem.",
                           usage=_SETTINGS_USAGE, formatter_class=_HelpFormatter)
    _add_setting_flags(check)
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
    record.add_argument("--timeout", default="60s",
                        help="Deadline for the whole recording, calibration runs included.")
    record.add_argument("--batch-size", type=int, default=64, help="Examples per request.")
    record.add_argument("--atol", type=float, default=1e-6,
                        help="Absolute tolerance written for every output; with --calibrate, "
                             "the least one written for floating-point outputs.")
    record.add_argument("--rtol", type=float, default=1e-6,
                        help="Relative tolerance written for every output.")
    record.add_argument("--calibrate", type=_calibration_runs, metavar="N",
                        help="Send the requests N more times at --batch-size and N times at "
                             "batch size 1 (unless that sends the same requests, or a scalar "
                             "output needs them in one) to the same version, and write each "
                             "floating-point output's atol from the largest difference seen, "
                             "at least --atol (the measured noise goes in provenance).")
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


def _calibration_runs(text: str) -> int:
    """--calibrate's N: argparse turns the ValueError into a usage error naming the flag."""
    try:
        runs = int(text)
    except ValueError:
        runs = 0
    if runs < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of runs >= 1, got {text!r}")
    return runs


def cmd_golden(args: argparse.Namespace) -> int:
    from exporter.addresses import parse_grpc_address, parse_rest_address
    from exporter.canary.golden import GoldenError, write_golden
    from exporter.canary.golden_record import read_requests, record_golden
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
            min_accuracy=args.min_accuracy, calibrate_runs=args.calibrate)
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
    calibration = provenance.get("calibration")
    for alias, noise in (calibration or {}).get("outputs", {}).items():
        print(f"  {alias}: noise {noise['between_runs']:.3g} between runs, "
              + ("none measured" if noise["between_batch_sizes"] is None
                 else f"{noise['between_batch_sizes']:.3g}")
              + f" between batch sizes; atol {noise['atol']:g}")
    return 0


def _load(args: argparse.Namespace):
    from exporter.config import ConfigError, load_config

    try:
        return load_config(getattr(args, "config_file", None), overrides_from_args(args))
    except ConfigError as err:
        print(f"tfserving-exporter: invalid configuration:\n{err}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from exporter.allocator import tune_allocator
    from exporter.logsetup import configure_logging
    from exporter.runtime import InvalidConfig, start_exporter

    config = _load(args)
    if config is None:
        return 2
    configure_logging(config.log.level, config.log.format)
    tune_allocator()  # before the server's threads exist
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

    from exporter.assembly import golden_of_modules

    canary = config.canary
    golden, problems = load_golden_sets(canary.golden_files, canary.golden_dir,
                                        canary.max_examples)
    problems = problems + golden_of_modules(config, (golden, problems))[1]
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


def simulator_missing(command: str) -> bool:
    """True (after saying so) when this installation leaves the TF Serving simulator out, as
    the container image and the slim venv do."""
    if importlib.util.find_spec("tfserving_simulator") is not None:
        return False
    print(f"tfserving-exporter {command}: this installation has no TF Serving simulator (the "
          "container image leaves it out); run it from a pip install of the source",
          file=sys.stderr)
    return True


def cmd_demo(args: argparse.Namespace) -> int:
    if simulator_missing("demo"):
        return 1
    from exporter.demo import run_demo

    return run_demo(args.web_listen_address, args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        if simulator_missing("simulate"):
            return 1
        from tfserving_simulator.app import main as simulate

        return simulate(argv[1:])
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "check-config": cmd_check_config, "demo": cmd_demo,
                "golden": cmd_golden}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
