"""The exporter's configuration: typed, frozen, strict, and every problem reported at once.

Every setting is declared once, as a field of the frozen dataclasses below:

    timeout: float = setting(DURATION, "10s", flag="--tfserving.timeout", doc=..., check=...)

The field gives the YAML path (its attribute path from ``Config``), the Python type a reader
and type checkers see, and, through ``setting()``, the value kind, default, check, flag and
doc. Everything else is derived from these fields: ``SCHEMA`` (a walk of the dataclass tree,
in declaration order), the loader, the command-line flags (exporter/cli.py), ``to_dict`` /
``to_yaml`` (served on ``/config``), the README's reference table and the Helm chart's
values.schema.json (scripts/sync_chart_files.py). Adding a setting is one field plus its use.

Loading goes: defaults -> YAML file -> overrides (command-line flags win) -> per-setting type
and value checks -> cross-setting checks. Problems name where the value came from:

    config.yaml: tfserving.timeout: invalid duration "5x": unknown unit "x"; ...
    --tfserving.grpc-address: invalid gRPC address "localhost": missing port (expected host:port)
"""

from __future__ import annotations

import dataclasses
import os
import string
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

import yaml

from exporter.addresses import parse_grpc_address, parse_listen_address, parse_rest_address
from exporter.config_kinds import (BOOLEAN, BYTE_SIZE, BYTE_SIZE_PATTERN, DURATION,
                                   DURATION_MAP, INTEGER, MODULE_MAP, NUMBER, STRING,
                                   STRING_LIST, Choice, Kind, Problems, each_item,
                                   positive_duration, type_name)
from exporter.fleet.allow_list import check_pattern
from exporter.files import (CONFIG_FILE_MAX_BYTES, FileReadError, is_readable_regular_file,
                            read_regular_file)
from exporter.logsetup import LOG_FORMATS, LOG_LEVELS
from exporter.suggest import suggestion

PROTOCOLS = ("grpc", "rest")
DEFAULT_MODULE = "default"  # what a probe without module=NAME uses
PROTOCOL = Choice(PROTOCOLS)


class ConfigError(Exception):
    """Every problem found in one load; ``str()`` gives one per line."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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
    if value == "/probe":
        raise ValueError('must not be "/probe", which serves fleet mode\'s probes')
    return value


def _positive_int(value: int) -> int:
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
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
        raise Problems(problems)
    return names


def _at_most(highest: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not 1 <= value <= highest:
            raise ValueError(f"must be between 1 and {highest}, got {value}")
        return value
    check.bounds = (1, highest)  # type: ignore[attr-defined]  # for the chart's schema
    return check


def _port_or_zero(value: int) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port (1 to 65535) or 0, got {value}")
    return value


def _ratio_below_one(value: float) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"must be at least 0 and below 1, got {value:g}")
    return value


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
# The declarations: one dataclass field per setting.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    path: str  # dotted YAML path, also the dataclass attribute path
    kind: Kind
    default: object  # as a user would write it in YAML; goes through the same checks
    doc: str  # markdown: the README table and the chart's schema; --help without backticks
    check: Callable[[Any], Any] | None = None
    flag: str | None = None
    # A relative path written in the file is taken from the file's directory (as Prometheus
    # does), not from wherever the exporter happens to be started.
    relative_to_config: bool = False

    @property
    def default_text(self) -> str:
        """The default as the README and --help show it."""
        if self.default == "":
            return '""'
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, list):
            return f"[{', '.join(self.default)}]"
        if isinstance(self.default, dict):
            return "{}"
        return str(self.default)


_DECLARATION, _SECTION = "tfserving_exporter.setting", "tfserving_exporter.section"


def setting(kind: Kind, default: object, *, doc: str, check: Callable[[Any], Any] | None = None,
            flag: str | None = None, relative_to_config: bool = False) -> Any:
    """Declare the dataclass field it is assigned to as a setting.

    No dataclass default: configs are only built by ``load_config``, which starts from
    ``default`` written as YAML would write it. In a dataclass used by several sections,
    ``doc`` and ``flag`` may say ``$name`` (the section's field name) and any word its
    ``section()`` gives.
    """
    declared = Setting("", kind, default, doc, check, flag, relative_to_config)
    return dataclasses.field(metadata={_DECLARATION: declared})


def section(*, doc: str, **words: str) -> Any:
    """Declare the dataclass field it is assigned to as a section of settings; ``doc`` heads
    it in examples/config.yaml. When the section's dataclass is shared by several sections,
    ``words`` fill the ``$word`` of its settings' docs and flags."""
    return dataclasses.field(metadata={_SECTION: Section(doc, MappingProxyType(words))})


@dataclass(frozen=True)
class Section:
    doc: str
    words: Mapping[str, str]


# Durations are float seconds; paths are absolute once loaded ("" when unset).

@dataclass(frozen=True)
class GrpcTLSConfig:
    enabled: bool = setting(
        BOOLEAN, False, flag="--tfserving.grpc-tls",
        doc="Talk TLS to TF Serving's gRPC port (TF Serving's `--ssl_config_file`).")
    ca_file: str = setting(
        STRING, "", flag="--tfserving.grpc-tls.ca-file", check=_readable_file,
        relative_to_config=True,
        doc="CA certificate (PEM) to verify TF Serving with; \"\" uses the system's CAs.")
    cert_file: str = setting(
        STRING, "", flag="--tfserving.grpc-tls.cert-file", check=_readable_file,
        relative_to_config=True,
        doc="Client certificate (PEM) for mutual TLS (`client_verify: true` in TF Serving).")
    key_file: str = setting(
        STRING, "", flag="--tfserving.grpc-tls.key-file", check=_readable_file,
        relative_to_config=True, doc="Key (PEM) of the client certificate.")
    server_name: str = setting(
        STRING, "", flag="--tfserving.grpc-tls.server-name",
        doc="Name to verify TF Serving's certificate against, when it differs from the "
            "address' host.")


@dataclass(frozen=True)
class TFServingConfig:
    grpc_address: str = setting(  # "" when gRPC is disabled
        STRING, "localhost:8500", flag="--tfserving.grpc-address",
        check=_optional(parse_grpc_address),
        doc="TF Serving gRPC target: `host:port`, `[::1]:8500`, `dns:///host:port` or "
            '`unix:/path`; "" disables gRPC.')
    rest_address: str = setting(  # normalised base URL, "" when REST is disabled
        STRING, "http://localhost:8501", flag="--tfserving.rest-address",
        check=_optional(parse_rest_address),
        doc="TF Serving REST base URL, `http(s)://host[:port]` or `host:port` (http); "
            'no path. "" disables REST.')
    metrics_path: str = setting(
        STRING, "/monitoring/prometheus/metrics", flag="--tfserving.metrics-path",
        check=_absolute_url_path,
        doc="Path of TF Serving's own Prometheus page on the REST port.")
    model_config_file: str = setting(
        STRING, "", flag="--tfserving.model-config-file", check=_readable_file,
        relative_to_config=True,
        doc="TF Serving's models.config to read model names from, re-read when it changes. "
            "A relative path in the config file is taken from that file's directory.")
    timeout: float = setting(
        DURATION, "10s", flag="--tfserving.timeout", check=positive_duration,
        doc="Upper bound for one scrape's calls to TF Serving.")
    timeout_offset: float = setting(
        DURATION, "500ms", flag="--tfserving.timeout-offset",
        doc="Subtracted from Prometheus' X-Prometheus-Scrape-Timeout-Seconds to leave time "
            "to answer; the calls keep at least half of the scrape timeout (README: "
            "Deadlines).")
    grpc_tls: GrpcTLSConfig = section(doc="TLS to TF Serving's gRPC port (TF Serving's --ssl_config_file).")


@dataclass(frozen=True)
class CollectorConfig:
    """A collector of TF Serving's model API; its ``section()`` says what it ``$exports``."""

    enabled: bool = setting(BOOLEAN, True, flag="--collector.$name", doc="Export $exports.")
    protocol: str = setting(PROTOCOL, "grpc", flag="--collector.$name.protocol",
                            doc="Protocol the $name collector uses.")


def _page_size(value: int) -> int:
    if value < 64 << 10:
        raise ValueError("must be at least 64KiB")
    return value


@dataclass(frozen=True)
class NativeCollectorConfig:
    enabled: bool = setting(
        BOOLEAN, True, flag="--collector.native",
        doc="Bridge TF Serving's own Prometheus page (request counts and latency, model "
            "loads, batching) into `tfserving_*` metrics. Needs the REST address and TF "
            "Serving's monitoring config.")
    passthrough: bool = setting(
        BOOLEAN, False, flag="--collector.native.passthrough",
        doc="Also export every other metric of TF Serving's page as `tensorflow_*` "
            "(units as TF reports them).")
    max_passthrough_series: int = setting(
        INTEGER, 1000, check=_positive_int,
        doc="Series exported by the pass-through at most; the rest are counted in "
            '`tfserving_exporter_dropped_total{kind="native_series"}`.')
    max_series: int = setting(
        INTEGER, 50000, check=_positive_int,
        doc="Sample lines of the bridged families (requests, latencies, loads) exported "
            "at most, whole series at a time; the rest are counted in "
            '`tfserving_exporter_dropped_total{kind="native_series"}`. About 80 a model '
            "with 3 versions and one API in use, 36 more for each further API or entrypoint "
            "(README, Many models).")
    max_page_size: int = setting(
        BYTE_SIZE, "16MiB", check=_page_size,
        doc="Largest TF Serving page read; a larger one fails the native collector (it is "
            "held in memory while read). About 10 KiB a loaded version plus 8 KiB a model "
            "and API in use (README, Many models).")


@dataclass(frozen=True)
class CollectorsConfig:
    status: CollectorConfig = section(
        doc="Model version states (START, LOADING, AVAILABLE, UNLOADING, END) from "
            "GetModelStatus.",
        exports="model version states (GetModelStatus)")
    metadata: CollectorConfig = section(
        doc="Signatures and their tensors from GetModelMetadata.",
        exports="signatures and tensors (GetModelMetadata)")
    native: NativeCollectorConfig = section(
        doc="TF Serving's own Prometheus page (always over REST), bridged into tfserving_* "
            "metrics in seconds. TF Serving needs --monitoring_config_file for the page to "
            "exist (README).")


@dataclass(frozen=True)
class LimitsConfig:
    max_models: int = setting(
        INTEGER, 300, check=_positive_int,
        doc="Models exported at most, by every collector (configured models first on "
            "TF Serving's page); the rest are counted as dropped. 300 fits the other "
            "defaults and the chart's 128 MiB (0.1.0: 100); for more: README, Many models.")
    max_versions_per_model: int = setting(
        INTEGER, 20, check=_positive_int, doc="Versions exported per model at most.")
    max_signatures_per_version: int = setting(
        INTEGER, 50, check=_positive_int, doc="Signatures exported per version at most.")
    max_tensors_per_signature: int = setting(
        INTEGER, 100, check=_positive_int,
        doc="Input and output tensors exported per signature at most.")


@dataclass(frozen=True)
class CanaryConfig:
    enabled: bool = setting(
        BOOLEAN, True, doc="Run golden-set canaries for the models that have a golden file.")
    golden_files: tuple[str, ...] = setting(
        STRING_LIST, [], flag="--canary.golden-file", check=each_item(_readable_file),
        relative_to_config=True,
        doc="Golden files (JSON, see README); each names its model. A relative path in the "
            "config file is taken from that file's directory.")
    golden_dir: str = setting(
        STRING, "", flag="--canary.golden-dir", check=_readable_dir, relative_to_config=True,
        doc="Directory whose `*.json` files are all golden files (e.g. a mounted ConfigMap).")
    protocol: str = setting(
        PROTOCOL, "grpc", flag="--canary.protocol",
        doc="Protocol canary requests use. gRPC also checks the version that answered.")
    interval: float = setting(
        DURATION, "60s", flag="--canary.interval", check=positive_duration,
        doc="Time between two canary runs of a model.")
    intervals: Mapping[str, float] = setting(
        DURATION_MAP, {},
        doc="Per-model intervals overriding `canary.interval`, e.g. `{half_plus_two: 15s}`.")
    jitter: float = setting(
        NUMBER, 0.1, check=_ratio_below_one,
        doc="Each interval is stretched or shrunk by up to this fraction at random, so "
            "canaries of many sidecars do not arrive together.")
    timeout: float = setting(
        DURATION, "10s", flag="--canary.timeout", check=positive_duration,
        doc="Deadline of one canary run of one model version; past it the run counts as "
            "`timeout`.")
    batch_size: int = setting(
        INTEGER, 64, flag="--canary.batch-size", check=_positive_int,
        doc="Golden examples sent per request.")
    max_concurrent: int = setting(
        INTEGER, 2, check=_positive_int,
        doc="Models whose canaries may run at the same time (one run per model at most).")
    max_examples: int = setting(
        INTEGER, 100000, check=_positive_int,
        doc="Golden files with more examples are rejected (bounds the memory they hold).")


@dataclass(frozen=True)
class ProbeConfig:
    allowed_targets: tuple[str, ...] = setting(
        STRING_LIST, [], flag="--probe.allowed-target", check=each_item(check_pattern),
        doc="Hosts `/probe` may connect to (its `target` and `rest_target`): CIDRs such as "
            "`10.0.0.0/8` for targets given as IP addresses, and globs such as "
            "`*.svc.cluster.local` for names, label by label (`*` spans no dot; names are "
            "not resolved). Empty: every target is refused with 403 (README: Fleet mode).")
    rest_port: int = setting(
        INTEGER, 8501, flag="--probe.rest-port", check=_port_or_zero,
        doc="A probe without `rest_target` reaches REST on the target's host at this port "
            "(TF Serving's 8500/8501 pairing); 0: REST only when `rest_target` is given.")
    rest_scheme: str = setting(
        Choice(("http", "https")), "http",
        doc="Scheme of the REST address derived with `probe.rest_port`.")
    model_params: bool = setting(
        BOOLEAN, True,
        doc="Accept `model` query parameters (names, comma-separated or repeated), set "
            "by relabelling from pod labels or annotations, in addition to the models the "
            "settings name.")


@dataclass(frozen=True)
class FleetConfig:
    max_targets: int = setting(
        INTEGER, 100, flag="--fleet.max-targets", check=_positive_int,
        doc="Targets of `/probe` tracked at once (each keeps its connections, caches and "
            "canaries between probes). Probes of further targets still answer, without "
            "canaries, and are counted in "
            '`tfserving_exporter_dropped_total{kind="target"}`.')
    target_expiry: float = setting(
        DURATION, "10m", flag="--fleet.target-expiry", check=positive_duration,
        doc="A tracked target not probed for this long is forgotten: its canaries stop and "
            "their results are gone.")
    max_concurrent_probes: int = setting(
        INTEGER, 4, flag="--fleet.max-concurrent-probes", check=_at_most(64),
        doc="Probes served at once (1 to 64), each with 8 call threads per protocol; as many "
            "more may wait for a slot until their deadline, the rest get 503 at once. The "
            "HTTP threads for them are sized at start.")
    max_concurrent_canaries: int = setting(
        INTEGER, 4, check=_positive_int,
        doc="Canary runs at once over all targets (the sidecar's own canaries have "
            "`canary.max_concurrent`).")
    modules: Mapping[str, Mapping[str, Any]] = setting(
        MODULE_MAP, {},
        doc="Named sets of settings a probe selects with `module=NAME`: any of `tfserving.*` "
            "(but its two addresses), `models`, `collectors.*`, `limits.*`, `canary.*` and "
            "`probe.*`, written as at the top level; what a module leaves out is the "
            "top-level value. A probe without `module` uses `default` when defined, else "
            "the top-level settings (README: Fleet mode).")


@dataclass(frozen=True)
class WebConfig:
    listen_address: str = setting(
        STRING, ":9850", flag="--web.listen-address", check=parse_listen_address,
        doc="Address to serve on, `[host]:port`; `:9850` is all interfaces.")
    telemetry_path: str = setting(
        STRING, "/metrics", flag="--web.telemetry-path", check=_telemetry_path,
        doc='Path of the metrics page; not "/" and not under "/-/".')
    config_file: str = setting(
        STRING, "", flag="--web.config.file", check=_readable_file, relative_to_config=True,
        doc="TLS and basic auth for the exporter's endpoint, in the format of "
            "Prometheus' `--web.config.file` (README: Security). Read at start.")
    enable_lifecycle: bool = setting(
        BOOLEAN, True, flag="--web.enable-lifecycle",
        doc="Serve `POST /-/reload`. It needs no credentials unless basic auth is on "
            "(`web.config_file`); set false to allow reloads by SIGHUP only.")


@dataclass(frozen=True)
class LogConfig:
    level: str = setting(Choice(LOG_LEVELS), "info", flag="--log.level",
                         doc="Lowest level logged.")
    format: str = setting(Choice(LOG_FORMATS), "logfmt", flag="--log.format",
                          doc="Log line format.")


@dataclass(frozen=True)
class Config:
    tfserving: TFServingConfig = section(doc="Where TF Serving is and how long to wait for it.")
    models: tuple[str, ...] = setting(
        STRING_LIST, [], flag="--model", check=_model_names,
        doc="Model names to watch, in addition to those in `tfserving.model_config_file`.")
    collectors: CollectorsConfig = section(doc="What is read from TF Serving on each scrape.")
    limits: LimitsConfig = section(
        doc="Caps on what TF Serving reports, to bound the number of series; what is cut is "
            "counted.")
    canary: CanaryConfig = section(
        doc="Golden-set canaries: every interval, each model that has a golden file gets its "
            "golden requests sent to the version serving unpinned requests and to every other "
            "AVAILABLE version, and the answers are compared with the recorded ones (README: "
            "\"Golden-set canaries\").")
    probe: ProbeConfig = section(
        doc="How /probe reaches a target (fleet mode); a module may set its own.")
    fleet: FleetConfig = section(
        doc="Fleet mode: one exporter serving /probe?target=... for many TF Serving servers "
            "(README: Fleet mode).")
    web: WebConfig = section(doc="The exporter's own HTTP server.")
    log: LogConfig = section(doc="The exporter's log output (stderr).")
    # Not configuration but advice from the loader (e.g. "no models configured"); two configs
    # with the same settings are equal whatever was said about them.
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    # fleet.modules loaded: each a whole configuration, the top-level one with the module's
    # settings over it. Follows from fleet.modules, so it takes no part in equality.
    modules: Mapping[str, "Config"] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False)

    @property
    def fleet_only(self) -> bool:
        """No TF Serving of its own: the exporter reaches TF Serving through /probe only."""
        return not (self.tfserving.grpc_address or self.tfserving.rest_address)

    def module(self, name: str | None) -> "Config | None":
        """The settings of a probe's module; ``None`` for no such module."""
        if name is None or name == DEFAULT_MODULE:
            return self.modules.get(DEFAULT_MODULE, self)
        return self.modules.get(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready mapping; ``load_config`` of it gives back an equal ``Config``."""
        return _dump(self)

    def to_yaml(self) -> str:
        """The effective configuration as YAML (served on ``/config``)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _declared(cls: type, prefix: str = "", words: Mapping[str, str] | None = None,
              ) -> Iterator[tuple[str, tuple[type, str] | Setting]]:
    """``(path, (section class, its doc))`` and ``(path, Setting)`` for the tree under
    ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path, hint = prefix + field.name, hints[field.name]
        declared = field.metadata.get(_DECLARATION)
        where = f"{cls.__name__}.{field.name}"
        if declared is not None:
            if hint != declared.kind.python_type:
                raise TypeError(f"{where}: annotated {hint!r}, but a {declared.kind.doc_name} "
                                f"setting holds {declared.kind.python_type!r}")
            texts = {"doc": declared.doc, "flag": declared.flag}
            if words is not None:
                texts = {key: text and string.Template(text).substitute(words)
                         for key, text in texts.items()}
            yield path, dataclasses.replace(declared, path=path, **texts)
        elif dataclasses.is_dataclass(hint):
            own = field.metadata.get(_SECTION)
            if own is None:
                raise TypeError(f"{where}: a section is declared with section(doc=...)")
            yield path, (hint, own.doc)
            yield from _declared(hint, path + ".",
                                 {"name": field.name, **own.words} if own.words else None)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise TypeError(f"{where} is neither a setting() nor a section: configs are built "
                            "by the loader, which would not know what to put there")


def _derive_schema() -> tuple[tuple[Setting, ...], dict[str, type], dict[str, str]]:
    settings: list[Setting] = []
    sections: dict[str, type] = {"": Config}
    docs: dict[str, str] = {}
    for path, item in _declared(Config):
        if isinstance(item, Setting):
            settings.append(item)
        else:
            sections[path], docs[path] = item
    # One flag, one setting (FIELD_FOR_FLAG, --no- forms of booleans included): a clash would
    # otherwise surface only when cli.py builds its parsers.
    flags = [flag for s in settings if s.flag
             for flag in (s.flag, s.flag.replace("--", "--no-", 1))]
    twice = sorted({flag for flag in flags if flags.count(flag) > 1})
    if twice:
        raise TypeError(f"flags declared twice: {', '.join(twice)}")
    return tuple(settings), sections, docs


SCHEMA, _SECTIONS, SECTION_DOCS = _derive_schema()
_SETTINGS = {setting.path: setting for setting in SCHEMA}

# What a fleet module may set: how to reach and read one TF Serving, but not where it is (a
# probe's target says that), and nothing of the exporter's own (web, log, fleet).
_MODULE_SECTIONS = frozenset({"tfserving", "models", "collectors", "limits", "canary", "probe"})
_ADDRESSES = frozenset({"tfserving.grpc_address", "tfserving.rest_address"})
MODULE_SETTINGS = tuple(s for s in SCHEMA
                        if s.path.split(".")[0] in _MODULE_SECTIONS and s.path not in _ADDRESSES)

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
    prefix: str = ""  # where in the file the settings are: "fleet.modules.NAME." in a module

    def where(self, path: str, suffix: str = "") -> str:
        if self.flag:
            return self.flag
        path = self.prefix + path
        return f"{self.file}: {path}{suffix}" if self.file else f"{path}{suffix}"


class _Report:
    """The problems of one load, in the order a user fixes them: first what stops the file
    being read, then the file's own problems in the order of its lines, then those of flags,
    then the rules across settings. Within each, in the order found."""

    FILE, LINES, FLAGS, RULES = range(4)

    def __init__(self) -> None:
        self._items: list[tuple[int, float, int, str]] = []
        self.lines: dict[str, int] = {}  # dotted key path -> its line in the file

    def add(self, group: int, text: str, path: str | None = None) -> None:
        line = self.lines.get(path, INFINITE_LINE) if path is not None else INFINITE_LINE
        self._items.append((group, line, len(self._items), text))

    def at(self, origin: _Origin, path: str, text: str) -> None:
        """A problem of the setting or key at ``path``, set by ``origin``."""
        self.add(self.FLAGS if origin.flag else self.LINES, text, path)

    def texts(self) -> list[str]:
        return [text for *_, text in sorted(self._items)]


INFINITE_LINE = float("inf")  # a default, or a key whose line is not known


def load_config(path: str | None, overrides: Mapping[str, object] | None = None,
                reloading: bool = False) -> Config:
    """Load ``path`` (YAML; ``None`` for defaults only), apply ``overrides``, validate.
    ``reloading``: an empty file is refused (see ``_read_yaml``) rather than read as
    "all defaults", which it still means at startup.

    ``overrides`` maps dotted setting paths (``"tfserving.grpc_address"``, ``"models"``) to
    values; strings are parsed as flag text (``"true"``, ``"100"``), ``None`` means "not
    given". Raises ``ConfigError`` listing every problem.
    """
    report = _Report()
    file_origin = _Origin(file=path)
    raw = {s.path: s.default for s in SCHEMA}
    origins = {s.path: file_origin for s in SCHEMA}

    file_ok = True
    if path is not None:
        document, file_ok = _read_yaml(path, report, reject_empty=reloading)
        for key, value in _settings_in_document(document, path, report).items():
            raw[key] = value

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        setting = _SETTINGS.get(key)
        if setting is None:
            report.add(report.FLAGS, f'override "{key}": no such setting')
            continue
        origin = _Origin(flag=setting.flag or f"override {key}")
        origins[key] = origin
        try:
            raw[key] = setting.kind.from_flag(value) if isinstance(value, str) else value
        except ValueError as err:
            report.add(report.FLAGS, f"{origin.where(key)}: {err}")
            raw.pop(key)

    values: dict[str, Any] = {}
    for setting in SCHEMA:
        if setting.path in raw:
            _check_setting(setting, raw[setting.path], origins[setting.path], values, report)

    # Without the file's values, cross-setting rules would judge defaults the file may change.
    modules: dict[str, dict[str, Any]] = {}
    if file_ok:
        for rule in _CROSS_RULES:
            for problem in rule(values, origins, file_origin):
                report.add(report.RULES, problem)
        modules = _load_modules(values, origins, file_origin, report)
    problems = report.texts()
    if problems:
        raise ConfigError(problems)

    warnings = tuple(warning for advise in _ADVICE for warning in advise(values))
    return _build(Config, "", values, warnings=warnings, modules=MappingProxyType(
        {name: _build(Config, "", module) for name, module in modules.items()}))


def _check_setting(setting: Setting, raw: object, origin: _Origin, values: dict[str, Any],
                   report: _Report) -> None:
    try:
        value = setting.kind.coerce(raw)
        if setting.relative_to_config and value:
            value = (tuple(_resolve_path(item, origin) for item in value)
                     if isinstance(value, tuple) else _resolve_path(value, origin))
        if setting.check is not None:
            value = setting.check(value)
    except Problems as err:
        for at, message in err.items:
            report.at(origin, setting.path, f"{origin.where(setting.path, at)}: {message}")
    except ValueError as err:
        report.at(origin, setting.path, f"{origin.where(setting.path)}: {err}")
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


def _read_yaml(path: str, report: _Report, reject_empty: bool) -> tuple[object, bool]:
    """The parsed document and whether it could be read at all; the line of every key goes
    into ``report.lines``."""
    try:
        data = read_regular_file(path, CONFIG_FILE_MAX_BYTES, consistent=True)
    except FileReadError as err:
        report.add(report.FILE, f"{path}: cannot read config file: {err.reason}")
        return None, False
    if reject_empty and not data.strip():
        # An editor that truncates before writing leaves this for a moment; applying it
        # would switch every setting to its default. A file meant to hold only defaults
        # says so with a comment or "{}".
        report.add(report.FILE, f"{path}: config file is empty (being rewritten?); write a "
                                "comment or {} to run on defaults")
        return None, False

    loader = _StrictLoader(data)
    try:
        node = loader.get_single_node()
        document = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        report.add(report.FILE, f"{where}: invalid YAML: {err.problem or err.context}")
        return None, False
    except yaml.YAMLError as err:  # e.g. bytes that are not UTF-8/16
        report.add(report.FILE, f"{path}: invalid YAML: {err}")
        return None, False
    finally:
        loader.dispose()

    report.lines.update(_key_lines(node, ""))
    for mark, key in loader.duplicates:
        report.add(report.FILE,
                   f'{path}:{mark.line + 1}:{mark.column + 1}: duplicate key "{key}"')
    return document, True


def _key_lines(node: yaml.Node | None, section: str) -> dict[str, int]:
    """Dotted key path -> line (1-based) of that key, for the mappings of a composed document.

    Only the schema's sections are entered: aliases share nodes, so a walk of everything
    would follow a chain of aliases exponentially, or an alias of its own ancestor forever.
    The schema is three levels deep, and so is this walk."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_path = f"{section}.{key_node.value}" if section else str(key_node.value)
                lines.setdefault(key_path, key_node.start_mark.line + 1)
                if key_path in _CHILDREN:
                    lines.update(_key_lines(value_node, key_path))
    return lines


def _settings_in_document(document: object, path: str | None, report: _Report,
                          prefix: str = "") -> dict[str, object]:
    """Flatten the YAML to ``{dotted path: value}``, reporting unknown keys and misplaced values
    (``prefix``: where in the file the document is, for the reports)."""
    if document is None:  # empty file, or only comments: all defaults
        return {}
    if not isinstance(document, dict):
        report.add(report.FILE,
                   f"{path}: top level must be a mapping of sections, got {type_name(document)}")
        return {}

    found: dict[str, object] = {}
    where = f"{path}: " if path else ""

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
                    report.add(report.LINES, f"{where}{prefix}{key_path}: expected a "
                                             f"mapping, got {type_name(value)}", key_path)
            else:
                hint = suggestion(str(key), _CHILDREN[section])
                report.add(report.LINES, f"{where}{prefix}{key_path}: unknown key{hint}",
                           key_path)

    walk(document, "")
    return found


# --------------------------------------------------------------------------------------------
# Rules across settings (errors) and advice (warnings). Each gets the checked values.
# --------------------------------------------------------------------------------------------

# A rule stays silent when a setting it needs was invalid: that setting's own problem is
# already reported, and judging a value that is not there would only add noise.

def _fleet_only(values: Mapping[str, Any]) -> bool:
    """Both addresses empty (not invalid): TF Serving is reached through /probe only."""
    return all(values.get(address, "invalid") == ""
               for address in ("tfserving.grpc_address", "tfserving.rest_address"))


def _collector_protocols_reachable(values: Mapping[str, Any], origins: Mapping[str, _Origin],
                                   file: _Origin) -> list[str]:
    if not (values.get("tfserving.grpc_address") or values.get("tfserving.rest_address")):
        return []  # fleet mode: the collectors run for probes, whose targets say where
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
    if not (values.get("canary.enabled") and has_golden and protocol) or _fleet_only(values):
        return []  # in fleet mode canaries run against probed targets
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
    _collector_protocols_reachable,
    _canary_protocol_reachable,
    _grpc_tls_pair,
)
# The rules that judge one module: its addresses are a probe's target, so only these.
_MODULE_RULES: tuple[_CrossRule, ...] = (_grpc_tls_pair,)



def _load_modules(values: dict[str, Any], origins: Mapping[str, _Origin], file: _Origin,
                  report: _Report) -> dict[str, dict[str, Any]]:
    """Each module's values: the top-level ones with the module's settings over them, checked
    like the file's. ``values["fleet.modules"]`` becomes the overlays as loaded (paths made
    absolute), so /config shows what is in force and loads back to the same."""
    overlays = values.get("fleet.modules")
    if not overlays:
        return {}
    # Modules given as an override (not in a file) are checked the same way; their problems
    # name the module's settings, with no file.
    source = file if not origins["fleet.modules"].flag else _Origin()
    loaded, normalised = {}, {}
    for name, overlay in overlays.items():
        origin = dataclasses.replace(source, prefix=f"fleet.modules.{name}.")
        # Every rule's finding names the module: that is where to fix it.
        module, module_origins, own = dict(values), dict.fromkeys(origins, origin), {}
        for key, raw in _settings_in_document(dict(overlay), source.file, report,
                                              origin.prefix).items():
            if key in _ADDRESSES:
                report.add(report.LINES, f"{origin.where(key)}: not a module setting: a "
                                         "probe's addresses are its target and rest_target")
                continue
            if key.split(".")[0] not in _MODULE_SECTIONS:
                report.add(report.LINES, f"{origin.where(key)}: not a module setting: a "
                                         "module holds tfserving, models, collectors, limits, "
                                         "canary and probe settings")
                continue
            module_origins[key] = origin
            _check_setting(_SETTINGS[key], raw, origin, module, report)
            own[key] = module.get(key)
        for rule in _MODULE_RULES:
            for problem in rule(module, module_origins, origin):
                report.add(report.RULES, problem)
        loaded[name] = module
        normalised[name] = _nest({key: _SETTINGS[key].kind.dump(value)
                                  for key, value in own.items() if value is not None})
    values["fleet.modules"] = MappingProxyType(normalised)
    for module in loaded.values():
        module["fleet.modules"] = values["fleet.modules"]
    return loaded


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        *sections, leaf = path.split(".")
        node = nested
        for name in sections:
            node = node.setdefault(name, {})
        node[leaf] = value
    return nested


def _advise_fleet_only(values: Mapping[str, Any]) -> list[str]:
    if not _fleet_only(values):
        return []
    allowed = "" if values.get("probe.allowed_targets") else (
        "; probe.allowed_targets is empty, so every probe is refused until it is set")
    return ["tfserving.grpc_address and tfserving.rest_address are both empty: fleet mode, "
            f"TF Serving is reached through /probe?target=... only{allowed}"]


def _advise_models(values: Mapping[str, Any]) -> list[str]:
    if values["models"] or values["tfserving.model_config_file"] or _fleet_only(values):
        return []
    return ["no models configured (models and tfserving.model_config_file are both empty): "
            "only tfserving_up and the exporter's own metrics will be exported"]


def _advise_native_without_rest(values: Mapping[str, Any]) -> list[str]:
    if values.get("collectors.native.enabled") and values.get("tfserving.rest_address") == "" \
            and not _fleet_only(values):
        return ["collectors.native is enabled but tfserving.rest_address is empty: TF Serving's "
                "Prometheus page is only served over REST, so the native collector is off"]
    return []


_ADVICE: tuple[Callable[[Mapping[str, Any]], list[str]], ...] = (
    _advise_fleet_only, _advise_models, _advise_native_without_rest)


# --------------------------------------------------------------------------------------------
# Between the flat {path: value} form and the dataclass tree.
# --------------------------------------------------------------------------------------------

def _build(cls: type, prefix: str, values: Mapping[str, Any], **extra: Any) -> Any:
    kwargs = dict(extra)
    for field in dataclasses.fields(cls):
        path = prefix + field.name
        if path in _SETTINGS:
            kwargs[field.name] = values[path]
        elif path in _SECTIONS:
            kwargs[field.name] = _build(_SECTIONS[path], path + ".", values)
    return cls(**kwargs)


def _dump(config: Config) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for setting in SCHEMA:
        *sections, leaf = setting.path.split(".")
        value: Any = config
        for name in setting.path.split("."):
            value = getattr(value, name)
        node = result
        for name in sections:
            node = node.setdefault(name, {})
        node[leaf] = setting.kind.dump(value)
    return result
