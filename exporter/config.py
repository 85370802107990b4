"""The exporter's configuration: typed, frozen, strict, and every problem reported at once.

One table, ``SCHEMA``, lists every setting (dotted path, type, default, check, flag, doc).
The loader, the flag table, ``Config.to_dict`` and the README's reference are all derived from
it, so adding a setting is one row plus one dataclass field (a test keeps the two in step).

Loading goes: defaults -> YAML file -> overrides (command-line flags win) -> per-setting type
and value checks -> cross-setting checks. Problems name where the value came from:

    config.yaml: tfserving.timeout: invalid duration "5x": unknown unit "x"; ...
    --tfserving.grpc-address: invalid gRPC address "localhost": missing port (expected host:port)
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import os
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import yaml

from exporter.addresses import parse_grpc_address, parse_listen_address, parse_rest_address
from exporter.durations import format_duration, is_exact_duration, parse_duration
from exporter.files import (CONFIG_FILE_MAX_BYTES, FileReadError, is_readable_regular_file,
                            read_regular_file)
from exporter.logsetup import LOG_FORMATS, LOG_LEVELS

PROTOCOLS = ("grpc", "rest")
REDACTED = "<secret>"


# --------------------------------------------------------------------------------------------
# The typed result. Field names mirror the YAML keys; durations are float seconds.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GrpcTLSConfig:
    enabled: bool
    ca_file: str  # absolute paths, or "" when unset
    cert_file: str
    key_file: str
    server_name: str


@dataclass(frozen=True)
class TFServingConfig:
    grpc_address: str  # "" when gRPC is disabled
    rest_address: str  # normalised base URL, "" when REST is disabled
    metrics_path: str
    model_config_file: str  # absolute path, or "" when unset
    timeout: float
    timeout_offset: float
    grpc_tls: GrpcTLSConfig


@dataclass(frozen=True)
class CollectorConfig:
    enabled: bool
    protocol: str  # one of PROTOCOLS


@dataclass(frozen=True)
class NativeCollectorConfig:
    enabled: bool
    passthrough: bool
    max_passthrough_series: int
    max_series: int


@dataclass(frozen=True)
class CollectorsConfig:
    status: CollectorConfig
    metadata: CollectorConfig
    native: NativeCollectorConfig


@dataclass(frozen=True)
class LimitsConfig:
    max_models: int
    max_versions_per_model: int
    max_signatures_per_version: int
    max_tensors_per_signature: int


@dataclass(frozen=True)
class CanaryConfig:
    enabled: bool
    golden_files: tuple[str, ...]  # absolute paths
    golden_dir: str  # absolute path, or "" when unset
    protocol: str
    interval: float
    intervals: Mapping[str, float]  # per-model overrides of interval
    jitter: float
    timeout: float
    batch_size: int
    max_concurrent: int
    max_examples: int


@dataclass(frozen=True)
class WebConfig:
    listen_address: str
    telemetry_path: str
    config_file: str  # absolute path of the TLS / basic auth file, or ""
    enable_lifecycle: bool


@dataclass(frozen=True)
class LogConfig:
    level: str
    format: str


@dataclass(frozen=True)
class Config:
    tfserving: TFServingConfig
    models: tuple[str, ...]
    collectors: CollectorsConfig
    limits: LimitsConfig
    canary: CanaryConfig
    web: WebConfig
    log: LogConfig
    # Not configuration but advice from the loader (e.g. "no models configured"); two configs
    # with the same settings are equal whatever was said about them.
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def to_dict(self, redact_secrets: bool = False) -> dict[str, Any]:
        """Plain YAML-ready mapping; ``load_config`` of it gives back an equal ``Config``."""
        return _dump(self, redact_secrets)

    def to_yaml(self, redact_secrets: bool = True) -> str:
        """The effective configuration as YAML, secrets shown as ``<secret>`` by default."""
        return yaml.safe_dump(self.to_dict(redact_secrets), sort_keys=False)


class ConfigError(Exception):
    """Every problem found in one load; ``str()`` gives one per line."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------
# Value types. Each checks the YAML type, converts, parses flag text, and dumps back to YAML.
# --------------------------------------------------------------------------------------------

class _Problems(ValueError):
    """Several problems inside one value, each at a sub-path such as ``[2]``."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items
        super().__init__("; ".join(message for _, message in items))


class _Kind:
    doc_name = ""  # shown in the reference's "type" column
    expected = ""  # "expected <this>, got list"

    def accepts(self, raw: object) -> bool:
        raise NotImplementedError

    def convert(self, raw: Any) -> Any:
        return raw

    def from_flag(self, text: str) -> object:
        return text

    def dump(self, value: Any) -> object:
        return value

    def coerce(self, raw: object) -> Any:
        if not self.accepts(raw):
            raise ValueError(f"expected {self.expected}, got {_type_name(raw)}")
        return self.convert(raw)


class _String(_Kind):
    doc_name, expected = "string", "a string"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, str)


class _Choice(_String):
    def __init__(self, options: Iterable[str]):
        self.options = tuple(options)
        self.doc_name = " \\| ".join(f"`{option}`" for option in self.options)

    def convert(self, raw: str) -> str:
        if raw not in self.options:
            raise ValueError(f'must be one of {", ".join(self.options)}, got "{raw}"')
        return raw


class _Boolean(_Kind):
    doc_name, expected = "boolean", "a boolean"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, bool)

    def from_flag(self, text: str) -> object:
        if text not in ("true", "false"):
            raise ValueError(f'expected true or false, got "{text}"')
        return text == "true"


class _Integer(_Kind):
    doc_name, expected = "integer", "an integer"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, int) and not isinstance(raw, bool)

    def from_flag(self, text: str) -> object:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f'expected an integer, got "{text}"') from None


class _Duration(_Kind):
    doc_name, expected = "duration", 'a duration such as "30s"'

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (str, int, float)) and not isinstance(raw, bool)

    def convert(self, raw: str | int | float) -> float:
        return parse_duration(raw)

    def dump(self, value: float) -> object:
        # Sub-millisecond values have no duration string; a number of seconds still loads.
        return format_duration(value) if is_exact_duration(value) else value


class _StringList(_Kind):
    doc_name, expected = "list of strings", "a list of strings"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (list, tuple))

    def convert(self, raw: list | tuple) -> tuple[str, ...]:
        problems = [(f"[{index}]", f"expected a string, got {_type_name(item)}")
                    for index, item in enumerate(raw) if not isinstance(item, str)]
        if problems:
            raise _Problems(problems)
        return tuple(raw)

    def from_flag(self, text: str) -> object:
        return [text]

    def dump(self, value: tuple[str, ...]) -> object:
        return list(value)


class _Number(_Kind):
    doc_name, expected = "number", "a number"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)

    def convert(self, raw: int | float) -> float:
        return float(raw)

    def from_flag(self, text: str) -> object:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f'expected a number, got "{text}"') from None


class _DurationMap(_Kind):
    doc_name, expected = "mapping of name to duration", "a mapping of names to durations"

    def accepts(self, raw: object) -> bool:
        return isinstance(raw, dict)

    def convert(self, raw: dict) -> Mapping[str, float]:
        converted: dict[str, float] = {}
        problems = []
        for key, value in raw.items():
            try:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise ValueError(f'expected a duration such as "30s", got {_type_name(value)}')
                converted[str(key)] = _positive_duration(parse_duration(value))
            except ValueError as err:
                problems.append((f".{key}", str(err)))
        if problems:
            raise _Problems(problems)
        return MappingProxyType(converted)

    def dump(self, value: Mapping[str, float]) -> object:
        return {key: DURATION.dump(seconds) for key, seconds in value.items()}


STRING, BOOLEAN, INTEGER, NUMBER = _String(), _Boolean(), _Integer(), _Number()
DURATION, STRING_LIST, DURATION_MAP = _Duration(), _StringList(), _DurationMap()


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                       ((list, tuple), "list"), (dict, "mapping"), (datetime.date, "date")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


# --------------------------------------------------------------------------------------------
# Value checks: take the converted value, return it normalised, raise ValueError to reject.
# --------------------------------------------------------------------------------------------

def _optional(check: Callable[[str], str]) -> Callable[[str], str]:
    # An empty string switches the feature off; anything else must pass ``check``.
    return lambda value: value and check(value)


def _absolute_url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f'must start with "/", got "{value}"')
    return value


def _telemetry_path(value: str) -> str:
    _absolute_url_path(value)
    # "/" is the landing page and "/-/" holds health and readiness endpoints.
    if value == "/":
        raise ValueError('must not be "/", which serves the landing page')
    if value.startswith("/-/"):
        raise ValueError(
            f'must not be under "/-/", which is reserved for health endpoints, got "{value}"')
    return value


def _positive_int(value: int) -> int:
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def _positive_duration(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _model_names(names: tuple[str, ...]) -> tuple[str, ...]:
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        at = f"[{index}]"
        if not name:
            problems.append((at, "model name must not be empty"))
        # Model names end up in TF Serving URLs (/v1/models/<name>:predict).
        elif "/" in name or ":" in name:
            problems.append((at, f'model name must not contain "/" or ":", got "{name}"'))
        elif name in seen:
            problems.append((at, f'duplicate model name "{name}"'))
        seen.add(name)
    if problems:
        raise _Problems(problems)
    return names


def _ratio_below_one(value: float) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"must be at least 0 and below 1, got {value:g}")
    return value


def _readable_files(paths: tuple[str, ...]) -> tuple[str, ...]:
    problems = []
    for index, path in enumerate(paths):
        try:
            _readable_file(path)
        except ValueError as err:
            problems.append((f"[{index}]", str(err)))
    if problems:
        raise _Problems(problems)
    return paths


def _readable_dir(path: str) -> str:
    if path and not os.path.isdir(path):
        raise ValueError(f'"{path}" is not a directory')
    if path and not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f'cannot read directory "{path}"')
    return path


def _readable_file(path: str) -> str:
    if not path:
        return path
    # Opening is the only honest readability test (permissions, directories, ACLs); it does
    # not block on a FIFO, which is refused like any file that is not a regular one.
    problem = is_readable_regular_file(path)
    if problem is not None:
        raise ValueError(f'cannot read "{path}": {problem}')
    return path


# --------------------------------------------------------------------------------------------
# The schema.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    path: str  # dotted YAML path, also the dataclass attribute path
    kind: _Kind
    default: object  # as a user would write it in YAML; goes through the same checks
    doc: str
    check: Callable[[Any], Any] | None = None
    flag: str | None = None
    secret: bool = False  # shown as <secret> in to_yaml()
    # A relative path written in the file is taken from the file's directory (as Prometheus
    # does), not from wherever the exporter happens to be started.
    relative_to_config: bool = False


SCHEMA: tuple[Setting, ...] = (
    Setting("tfserving.grpc_address", STRING, "localhost:8500",
            doc="TF Serving gRPC target: `host:port`, `[::1]:8500`, `dns:///host:port` or "
                '`unix:/path`; "" disables gRPC.',
            check=_optional(parse_grpc_address), flag="--tfserving.grpc-address"),
    Setting("tfserving.rest_address", STRING, "http://localhost:8501",
            doc="TF Serving REST base URL, `http(s)://host[:port]` or `host:port` (http); "
                'no path. "" disables REST.',
            check=_optional(parse_rest_address), flag="--tfserving.rest-address"),
    Setting("tfserving.metrics_path", STRING, "/monitoring/prometheus/metrics",
            doc="Path of TF Serving's own Prometheus page on the REST port.",
            check=_absolute_url_path, flag="--tfserving.metrics-path"),
    Setting("tfserving.model_config_file", STRING, "",
            doc="TF Serving's models.config to read model names from; a relative path is "
                "taken from the config file's directory.",
            check=_readable_file, flag="--tfserving.model-config-file", relative_to_config=True),
    Setting("tfserving.timeout", DURATION, "10s",
            doc="Upper bound for one scrape's calls to TF Serving.",
            check=_positive_duration, flag="--tfserving.timeout"),
    Setting("tfserving.timeout_offset", DURATION, "500ms",
            doc="Subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time "
                "to answer; the calls keep at least half of the scrape timeout (README: "
                "Deadlines).",
            flag="--tfserving.timeout-offset"),
    Setting("tfserving.grpc_tls.enabled", BOOLEAN, False,
            doc="Talk TLS to TF Serving's gRPC port (TF Serving's `--ssl_config_file`).",
            flag="--tfserving.grpc-tls"),
    Setting("tfserving.grpc_tls.ca_file", STRING, "",
            doc="CA certificate (PEM) to verify TF Serving with; \"\" uses the system's CAs.",
            check=_readable_file, flag="--tfserving.grpc-tls.ca-file", relative_to_config=True),
    Setting("tfserving.grpc_tls.cert_file", STRING, "",
            doc="Client certificate (PEM) for mutual TLS (`client_verify: true` in TF Serving).",
            check=_readable_file, flag="--tfserving.grpc-tls.cert-file", relative_to_config=True),
    Setting("tfserving.grpc_tls.key_file", STRING, "",
            doc="Key (PEM) of the client certificate.",
            check=_readable_file, flag="--tfserving.grpc-tls.key-file", relative_to_config=True),
    Setting("tfserving.grpc_tls.server_name", STRING, "",
            doc="Name to verify TF Serving's certificate against, when it differs from the "
                "address' host.", flag="--tfserving.grpc-tls.server-name"),
    Setting("models", STRING_LIST, [],
            doc="Model names to watch, in addition to those in `tfserving.model_config_file`.",
            check=_model_names, flag="--model"),
    # Boolean flags come in pairs: --collector.status / --no-collector.status.
    Setting("collectors.status.enabled", BOOLEAN, True,
            doc="Export model version states (GetModelStatus).", flag="--collector.status"),
    Setting("collectors.status.protocol", _Choice(PROTOCOLS), "grpc",
            doc="Protocol the status collector uses.", flag="--collector.status.protocol"),
    Setting("collectors.metadata.enabled", BOOLEAN, True,
            doc="Export signatures and tensors (GetModelMetadata).", flag="--collector.metadata"),
    Setting("collectors.metadata.protocol", _Choice(PROTOCOLS), "grpc",
            doc="Protocol the metadata collector uses.", flag="--collector.metadata.protocol"),
    Setting("collectors.native.enabled", BOOLEAN, True,
            doc="Bridge TF Serving's own Prometheus page (request counts and latency, model "
                "loads, batching) into `tfserving_*` metrics. Needs the REST address and TF "
                "Serving's monitoring config.", flag="--collector.native"),
    Setting("collectors.native.passthrough", BOOLEAN, False,
            doc="Also export every other metric of TF Serving's page as `tensorflow_*` "
                "(units as TF reports them).", flag="--collector.native.passthrough"),
    Setting("collectors.native.max_passthrough_series", INTEGER, 1000,
            doc="Series exported by the pass-through at most; the rest are counted in "
                '`tfserving_exporter_dropped_total{kind="native_series"}`.',
            check=_positive_int),
    Setting("collectors.native.max_series", INTEGER, 50000,
            doc="Sample lines of the bridged families (requests, latencies, loads) exported "
                "at most, whole series at a time; the rest are counted in "
                '`tfserving_exporter_dropped_total{kind="native_series"}`.',
            check=_positive_int),
    Setting("limits.max_models", INTEGER, 100,
            doc="Models exported at most, by every collector (configured models first on "
                "TF Serving's page); the rest are counted as dropped.", check=_positive_int),
    Setting("limits.max_versions_per_model", INTEGER, 20,
            doc="Versions exported per model at most.", check=_positive_int),
    Setting("limits.max_signatures_per_version", INTEGER, 50,
            doc="Signatures exported per version at most.", check=_positive_int),
    Setting("limits.max_tensors_per_signature", INTEGER, 100,
            doc="Input and output tensors exported per signature at most.", check=_positive_int),
    Setting("canary.enabled", BOOLEAN, True,
            doc="Run golden-set canaries for the models that have a golden file."),
    Setting("canary.golden_files", STRING_LIST, [],
            doc="Golden files (JSON, see README); each names its model. A relative path is "
                "taken from the config file's directory.",
            check=_readable_files, flag="--canary.golden-file", relative_to_config=True),
    Setting("canary.golden_dir", STRING, "",
            doc="Directory whose `*.json` files are all golden files (e.g. a mounted "
                "ConfigMap).",
            check=_readable_dir, flag="--canary.golden-dir", relative_to_config=True),
    Setting("canary.protocol", _Choice(PROTOCOLS), "grpc",
            doc="Protocol canary requests use. gRPC also checks the version that answered.",
            flag="--canary.protocol"),
    Setting("canary.interval", DURATION, "60s",
            doc="Time between two canary runs of a model.",
            check=_positive_duration, flag="--canary.interval"),
    Setting("canary.intervals", DURATION_MAP, {},
            doc="Per-model intervals overriding `canary.interval`, e.g. `{half_plus_two: 15s}`."),
    Setting("canary.jitter", NUMBER, 0.1,
            doc="Each interval is stretched or shrunk by up to this fraction at random, so "
                "canaries of many sidecars do not arrive together.",
            check=_ratio_below_one),
    Setting("canary.timeout", DURATION, "10s",
            doc="Deadline of one canary run of one model version; past it the run counts as "
                "`timeout`.",
            check=_positive_duration, flag="--canary.timeout"),
    Setting("canary.batch_size", INTEGER, 64,
            doc="Golden examples sent per request.", check=_positive_int,
            flag="--canary.batch-size"),
    Setting("canary.max_concurrent", INTEGER, 2,
            doc="Models whose canaries may run at the same time (one run per model at most).",
            check=_positive_int),
    Setting("canary.max_examples", INTEGER, 100000,
            doc="Golden files with more examples are rejected (bounds the memory they hold).",
            check=_positive_int),
    Setting("web.listen_address", STRING, ":9850",
            doc="Address to serve on, `[host]:port`; `:9850` is all interfaces.",
            check=parse_listen_address, flag="--web.listen-address"),
    Setting("web.telemetry_path", STRING, "/metrics",
            doc='Path of the metrics page; not "/" and not under "/-/".',
            check=_telemetry_path, flag="--web.telemetry-path"),
    Setting("web.config_file", STRING, "",
            doc="TLS and basic auth for the exporter's endpoint, in the format of "
                "Prometheus' `--web.config.file` (README: Security). Read at start.",
            check=_readable_file, flag="--web.config.file", relative_to_config=True),
    Setting("web.enable_lifecycle", BOOLEAN, True,
            doc="Serve `POST /-/reload`. It needs no credentials unless basic auth is on "
                "(`web.config_file`); set false to allow reloads by SIGHUP only.",
            flag="--web.enable-lifecycle"),
    Setting("log.level", _Choice(LOG_LEVELS), "info",
            doc="Lowest level logged.", flag="--log.level"),
    Setting("log.format", _Choice(LOG_FORMATS), "logfmt",
            doc="Log line format.", flag="--log.format"),
)

_SETTINGS = {setting.path: setting for setting in SCHEMA}

FLAG_FOR_FIELD: Mapping[str, str] = MappingProxyType({s.path: s.flag for s in SCHEMA if s.flag})
FIELD_FOR_FLAG: Mapping[str, str] = MappingProxyType(
    {flag: path for path, flag in FLAG_FOR_FIELD.items()})


def _children_by_section() -> dict[str, list[str]]:
    """``{"": ["tfserving", "models", ...], "tfserving": ["grpc_address", ...], ...}``."""
    children: dict[str, list[str]] = {}
    for setting in SCHEMA:
        parts = setting.path.split(".")
        for depth, name in enumerate(parts):
            siblings = children.setdefault(".".join(parts[:depth]), [])
            if name not in siblings:
                siblings.append(name)
    return children


_CHILDREN = _children_by_section()


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Origin:
    """Where a value came from, to say where to fix it."""

    file: str | None = None  # the config file (for defaults too: that is where to change them)
    flag: str | None = None  # the override that set it

    def where(self, path: str, suffix: str = "") -> str:
        if self.flag:
            return self.flag
        return f"{self.file}: {path}{suffix}" if self.file else f"{path}{suffix}"


def load_config(path: str | None, overrides: Mapping[str, object] | None = None,
                reloading: bool = False) -> Config:
    """Load ``path`` (YAML; ``None`` for defaults only), apply ``overrides``, validate.
    ``reloading``: an empty file is refused (see ``_read_yaml``) rather than read as
    "all defaults", which it still means at startup.

    ``overrides`` maps dotted setting paths (``"tfserving.grpc_address"``, ``"models"``) to
    values; strings are parsed as flag text (``"true"``, ``"100"``), ``None`` means "not
    given". Raises ``ConfigError`` listing every problem.
    """
    problems: list[str] = []
    file_origin = _Origin(file=path)
    raw = {s.path: s.default for s in SCHEMA}
    origins = {s.path: file_origin for s in SCHEMA}

    file_ok = True
    if path is not None:
        document, file_ok = _read_yaml(path, problems, reject_empty=reloading)
        for key, value in _settings_in_document(document, path, problems).items():
            raw[key] = value

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        setting = _SETTINGS.get(key)
        if setting is None:
            problems.append(f'override "{key}": no such setting')
            continue
        origin = _Origin(flag=setting.flag or f"override {key}")
        origins[key] = origin
        try:
            raw[key] = setting.kind.from_flag(value) if isinstance(value, str) else value
        except ValueError as err:
            problems.append(f"{origin.where(key)}: {err}")
            raw.pop(key)

    values: dict[str, Any] = {}
    for setting in SCHEMA:
        if setting.path in raw:
            _check_setting(setting, raw[setting.path], origins[setting.path], values, problems)

    # Without the file's values, cross-setting rules would judge defaults the file may change.
    if file_ok:
        for rule in _CROSS_RULES:
            problems.extend(rule(values, origins, file_origin))
    if problems:
        raise ConfigError(problems)

    warnings = tuple(warning for advise in _ADVICE for warning in advise(values))
    return _build(Config, "", values, warnings)


def _check_setting(setting: Setting, raw: object, origin: _Origin, values: dict[str, Any],
                   problems: list[str]) -> None:
    try:
        value = setting.kind.coerce(raw)
        if setting.relative_to_config and value:
            value = (tuple(_resolve_path(item, origin) for item in value)
                     if isinstance(value, tuple) else _resolve_path(value, origin))
        if setting.check is not None:
            value = setting.check(value)
    except _Problems as err:
        problems.extend(f"{origin.where(setting.path, at)}: {message}" for at, message in err.items)
    except ValueError as err:
        problems.append(f"{origin.where(setting.path)}: {err}")
    else:
        values[setting.path] = value


def _resolve_path(value: str, origin: _Origin) -> str:
    if origin.file and not origin.flag:
        value = os.path.join(os.path.dirname(origin.file), value)
    return os.path.abspath(value)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that notes duplicate keys, which YAML libraries otherwise let the last win."""

    def __init__(self, stream: bytes):
        super().__init__(stream)
        self.duplicates: list[tuple[yaml.Mark, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    self.duplicates.append((key_node.start_mark, key_node.value))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _read_yaml(path: str, problems: list[str], reject_empty: bool) -> tuple[object, bool]:
    """The parsed document and whether it could be read at all."""
    try:
        data = read_regular_file(path, CONFIG_FILE_MAX_BYTES, consistent=True)
    except FileReadError as err:
        problems.append(f"{path}: cannot read config file: {err.reason}")
        return None, False
    if reject_empty and not data.strip():
        # An editor that truncates before writing leaves this for a moment; applying it
        # would switch every setting to its default. A file meant to hold only defaults
        # says so with a comment or "{}".
        problems.append(f"{path}: config file is empty (being rewritten?); write a comment "
                        "or {} to run on defaults")
        return None, False

    loader = _StrictLoader(data)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problems.append(f"{where}: invalid YAML: {err.problem or err.context}")
        return None, False
    except yaml.YAMLError as err:  # e.g. bytes that are not UTF-8/16
        problems.append(f"{path}: invalid YAML: {err}")
        return None, False
    finally:
        loader.dispose()

    for mark, key in loader.duplicates:
        problems.append(f'{path}:{mark.line + 1}:{mark.column + 1}: duplicate key "{key}"')
    return document, True


def _settings_in_document(document: object, path: str, problems: list[str]) -> dict[str, object]:
    """Flatten the YAML to ``{dotted path: value}``, reporting unknown keys and misplaced values."""
    if document is None:  # empty file, or only comments: all defaults
        return {}
    if not isinstance(document, dict):
        problems.append(
            f"{path}: top level must be a mapping of sections, got {_type_name(document)}")
        return {}

    found: dict[str, object] = {}

    def walk(mapping: dict, section: str) -> None:
        for key, value in mapping.items():
            key_path = f"{section}.{key}" if section else str(key)
            if key_path in _SETTINGS:
                found[key_path] = value
            elif key_path in _CHILDREN:
                if value is None:  # "tfserving:" with every child commented out
                    continue
                if isinstance(value, dict):
                    walk(value, key_path)
                else:
                    problems.append(
                        f"{path}: {key_path}: expected a mapping, got {_type_name(value)}")
            else:
                hint = _suggestion(str(key), _CHILDREN[section])
                problems.append(f"{path}: {key_path}: unknown key{hint}")

    walk(document, "")
    return found


def _suggestion(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid keys: {', '.join(valid)})"


# --------------------------------------------------------------------------------------------
# Rules across settings (errors) and advice (warnings). Each gets the checked values.
# --------------------------------------------------------------------------------------------

# A rule stays silent when a setting it needs was invalid: that setting's own problem is
# already reported, and judging a value that is not there would only add noise.

def _need_an_address(values: Mapping[str, Any], origins: Mapping[str, _Origin],
                     file: _Origin) -> list[str]:
    addresses = ("tfserving.grpc_address", "tfserving.rest_address")
    if any(values.get(address, "invalid") for address in addresses):
        return []
    return [f"{file.where('tfserving')}: grpc_address and rest_address are both empty, "
            "set at least one"]


def _collector_protocols_reachable(values: Mapping[str, Any], origins: Mapping[str, _Origin],
                                   file: _Origin) -> list[str]:
    if not (values.get("tfserving.grpc_address") or values.get("tfserving.rest_address")):
        return []  # _need_an_address already said it (or an address is invalid)
    problems = []
    for path, protocol in values.items():
        section, _, leaf = path.rpartition(".")
        if not section.startswith("collectors.") or leaf != "protocol":
            continue
        address = f"tfserving.{protocol}_address"
        if values.get(f"{section}.enabled", False) and values.get(address, "invalid") == "":
            problems.append(f"{origins[path].where(path)}: collector uses {protocol} but "
                            f"{address} is empty; set the address, switch the protocol, "
                            "or disable the collector")
    return problems


def _canary_protocol_reachable(values: Mapping[str, Any], origins: Mapping[str, _Origin],
                               file: _Origin) -> list[str]:
    protocol = values.get("canary.protocol")
    has_golden = values.get("canary.golden_files") or values.get("canary.golden_dir")
    if not (values.get("canary.enabled") and has_golden and protocol):
        return []
    address = f"tfserving.{protocol}_address"
    if values.get(address, "invalid") != "":
        return []
    return [f"{origins['canary.protocol'].where('canary.protocol')}: canaries use {protocol} "
            f"but {address} is empty; set the address or switch canary.protocol"]


def _grpc_tls_pair(values: Mapping[str, Any], origins: Mapping[str, _Origin],
                   file: _Origin) -> list[str]:
    cert = values.get("tfserving.grpc_tls.cert_file", "")
    key = values.get("tfserving.grpc_tls.key_file", "")
    if bool(cert) == bool(key):
        return []
    missing = "tfserving.grpc_tls.key_file" if cert else "tfserving.grpc_tls.cert_file"
    return [f"{origins[missing].where(missing)}: needed with "
            f"{'cert_file' if cert else 'key_file'} for mutual TLS"]


_CrossRule = Callable[[Mapping[str, Any], Mapping[str, _Origin], _Origin], list[str]]
_CROSS_RULES: tuple[_CrossRule, ...] = (
    _need_an_address,
    _collector_protocols_reachable,
    _canary_protocol_reachable,
    _grpc_tls_pair,
)


def _advise_models(values: Mapping[str, Any]) -> list[str]:
    if values["models"] or values["tfserving.model_config_file"]:
        return []
    return ["no models configured (models and tfserving.model_config_file are both empty): "
            "only tfserving_up and the exporter's own metrics will be exported"]


def _advise_native_without_rest(values: Mapping[str, Any]) -> list[str]:
    if values.get("collectors.native.enabled") and values.get("tfserving.rest_address") == "":
        return ["collectors.native is enabled but tfserving.rest_address is empty: TF Serving's "
                "Prometheus page is only served over REST, so the native collector is off"]
    return []


_ADVICE: tuple[Callable[[Mapping[str, Any]], list[str]], ...] = (
    _advise_models, _advise_native_without_rest)


# --------------------------------------------------------------------------------------------
# Between the flat {path: value} form and the dataclass tree.
# --------------------------------------------------------------------------------------------

def _build(cls: type, prefix: str, values: Mapping[str, Any],
           warnings: tuple[str, ...] = ()) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name == "warnings":
            kwargs["warnings"] = warnings
            continue
        path = prefix + field.name
        nested = hints[field.name]
        kwargs[field.name] = (_build(nested, path + ".", values) if dataclasses.is_dataclass(nested)
                              else values[path])
    return cls(**kwargs)


def _dump(config: Config, redact_secrets: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for setting in SCHEMA:
        *sections, leaf = setting.path.split(".")
        value: Any = config
        for name in setting.path.split("."):
            value = getattr(value, name)
        node = result
        for name in sections:
            node = node.setdefault(name, {})
        hidden = redact_secrets and setting.secret and value
        node[leaf] = REDACTED if hidden else setting.kind.dump(value)
    return result


# --------------------------------------------------------------------------------------------
# Documentation.
# --------------------------------------------------------------------------------------------

def config_reference_markdown() -> str:
    """The README's configuration reference: one table row per setting."""
    lines = ["| key | type | default | flag | description |", "|---|---|---|---|---|"]
    for s in SCHEMA:
        flag = f"`{s.flag}`" if s.flag else ""
        lines.append(f"| `{s.path}` | {s.kind.doc_name} | {_default_text(s.default)} | {flag} | "
                     f"{s.doc.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def _default_text(default: object) -> str:
    if default == "":
        return '`""`'
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return f"`[{', '.join(default)}]`"
    if isinstance(default, dict):
        return "`{}`"
    return f"`{default}`"
