"""``tensorflow_model_server``'s command line, so the simulator is a drop-in replacement.

Accepted forms: ``--flag=value``, ``--flag value``, ``-flag=value``; booleans also as ``--flag``,
``--noflag`` and ``--flag=true|false|1|0|yes|no``. Flags the simulator has no use for are
accepted and ignored with a log line; unknown flags are an error (exit code 1 in ``main``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class FlagError(ValueError):
    """A command line that cannot be used (unknown flag, bad value, missing model)."""


# name -> (type, default). Types: "int", "str", "bool", "float".
SUPPORTED = {
    "port": ("int", 8500),
    "rest_api_port": ("int", 0),
    "rest_api_timeout_in_ms": ("int", 30000),
    "rest_api_enable_cors_support": ("bool", False),
    "model_name": ("str", "default"),
    "model_base_path": ("str", ""),
    "model_config_file": ("str", ""),
    "model_config_file_poll_wait_seconds": ("int", 0),
    "file_system_poll_wait_seconds": ("int", 1),
    "max_num_load_retries": ("int", 5),
    "load_retry_interval_micros": ("int", 60_000_000),
    "monitoring_config_file": ("str", ""),
    "enable_grpc_healthcheck_service": ("bool", False),
    "allow_version_labels_for_unavailable_models": ("bool", False),
    "enable_serialization_as_tensor_content": ("bool", False),
    "ssl_config_file": ("str", ""),
    "version": ("bool", False),
    # Simulator-only.
    "bind_address": ("str", "0.0.0.0"),
    "fault_config_file": ("str", ""),
}

# Real flags that change nothing a client of the simulator can observe.
IGNORED = {
    "rest_api_num_threads": "int", "enable_batching": "bool", "batching_parameters_file": "str",
    "enable_model_warmup": "bool", "enable_profiler": "bool",
    "enable_signature_method_name_check": "bool", "saved_model_tags": "str",
    "num_load_threads": "int", "num_unload_threads": "int", "grpc_channel_arguments": "str",
    "grpc_max_threads": "int", "grpc_socket_path": "str",
    "use_alts_credentials": "bool", "platform_config_file": "str",
    "tensorflow_session_parallelism": "int", "tensorflow_intra_op_parallelism": "int",
    "tensorflow_inter_op_parallelism": "int", "per_process_gpu_memory_fraction": "float",
    "use_tflite_model": "bool", "prefer_tflite_model": "bool", "xla_cpu_compilation_enabled": "bool",
    "enable_per_model_batching_parameters": "bool", "allow_batching_param_override": "bool",
    "remove_unused_fields_from_bundle_metagraph": "bool", "flush_filesystem_caches": "bool",
    "mixed_precision": "str", "skip_initialize_tpu": "bool", "thread_pool_factory_config_file": "str",
}

HELP = {
    "port": "gRPC port (0 = no gRPC port, which TF Serving refuses)",
    "rest_api_port": "REST port; 0 disables REST (the Docker image passes 8501)",
    "rest_api_timeout_in_ms": "REST inference timeout, answered with HTTP 504",
    "rest_api_enable_cors_support": "add CORS headers to REST replies",
    "model_name": "model name in single-model mode",
    "model_base_path": "model base path in single-model mode (holds numeric version dirs)",
    "model_config_file": "text-format ModelServerConfig (overrides the two above)",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file this often; 0 = once",
    "file_system_poll_wait_seconds": "how often base paths are scanned for new versions",
    "max_num_load_retries": "load retries after a failed first attempt",
    "load_retry_interval_micros": "wait between load retries",
    "monitoring_config_file": "text-format MonitoringConfig enabling the Prometheus page",
    "enable_grpc_healthcheck_service": "grpc.health.v1 (needs grpcio-health-checking)",
    "allow_version_labels_for_unavailable_models": "allow new labels on unloaded versions",
    "enable_serialization_as_tensor_content": "Predict outputs as tensor_content",
    "ssl_config_file": "text-format SSLConfig (PEM key/cert, custom_ca, client_verify) for gRPC",
    "version": "print versions and exit",
    "bind_address": "simulator only: interface to listen on",
    "fault_config_file": "simulator only: JSON fault rules, re-read when changed",
}


def usage() -> str:
    """``--help`` text: every supported flag with its default."""
    lines = ["usage: tfserving-exporter simulate [--flag=value ...]",
             "A TF Serving stand-in taking tensorflow_model_server's flags.", ""]
    for name, (kind, default) in SUPPORTED.items():
        lines.append(f"  --{name}={default!s:<10} ({kind}) {HELP[name]}")
    lines.append("")
    lines.append("Accepted and ignored: " + ", ".join(f"--{n}" for n in sorted(IGNORED)))
    return "\n".join(lines)


_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


@dataclass
class ParsedFlags:
    values: dict[str, object]
    ignored: list[str] = field(default_factory=list)

    def __getattr__(self, name: str):
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _convert(name: str, kind: str, text: str):
    try:
        if kind == "int":
            return int(text, 10)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(text)
        return text
    except ValueError:
        raise FlagError(f"invalid value for --{name} ({kind}): {text!r}") from None


def _kind(name: str) -> str | None:
    if name in SUPPORTED:
        return SUPPORTED[name][0]
    return IGNORED.get(name)


def parse_flags(argv: list[str]) -> ParsedFlags:
    """Parse ``argv`` (without the program name); raises :class:`FlagError`."""
    values = {name: default for name, (_, default) in SUPPORTED.items()}
    ignored: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            if index < len(argv):
                raise FlagError(f"unexpected positional arguments: {argv[index:]}")
            break
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected positional argument: {arg!r}")
        body = arg.lstrip("-")
        name, has_value, text = body.partition("=")
        kind = _kind(name)
        if kind is None and not has_value and name.startswith("no") and _kind(name[2:]) == "bool":
            name, kind, has_value, text = name[2:], "bool", True, "false"
        if kind is None:
            raise FlagError(f"unknown flag --{name}")
        if not has_value:
            if kind == "bool":
                text = "true"
            elif index < len(argv):
                text = argv[index]
                index += 1
            else:
                raise FlagError(f"flag --{name} needs a value")
        value = _convert(name, kind, text)
        if name in SUPPORTED:
            values[name] = value
        else:
            ignored.append(name)
            log.info("flag --%s has no effect in the simulator; ignored", name)
    return ParsedFlags(values, ignored)


def validate(flags: ParsedFlags) -> None:
    """The checks ``main.cc`` makes before starting (except --version, which needs none)."""
    if flags.version:
        return
    if not flags.model_base_path and not flags.model_config_file:
        raise FlagError("one of --model_base_path or --model_config_file is required")
    for name in ("port", "rest_api_port"):
        if not 0 <= flags.values[name] <= 65535:
            raise FlagError(f"--{name} must be between 0 and 65535")
    for name in ("file_system_poll_wait_seconds", "model_config_file_poll_wait_seconds",
                 "max_num_load_retries", "load_retry_interval_micros"):
        if flags.values[name] < 0:
            raise FlagError(f"--{name} must not be negative")
