import dataclasses
import os

import pytest
import yaml

import exporter.config as config_module
from exporter.config import (
    FIELD_FOR_FLAG,
    FLAG_FOR_FIELD,
    SCHEMA,
    CollectorConfig,
    ConfigError,
    load_config,
)
from exporter.config_docs import config_example_yaml, config_reference_markdown
from tests.helpers import files_named, problems_raised

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata", "config")
EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "config.yaml")
VALID_FILES = {"full.yaml", "empty.yaml", "web.yaml"}

UNITS = "units are ms, s, m, h, d, w, y"

# One file per validation rule, each with the exact problems it must produce. Paths are given
# relative to TESTDATA (the tests run from there), so the file name is the message's prefix.
INVALID_FILES = {
    # canary section
    "canary_bad_jitter.yaml": ["canary_bad_jitter.yaml: canary.jitter: must be at least 0 and below 1, got 1.5"],
    "canary_bad_intervals.yaml": [
        f'canary_bad_intervals.yaml: canary.intervals.half_plus_two: invalid duration "10x": unknown unit "x"; {UNITS}',
        'canary_bad_intervals.yaml: canary.intervals.image_classifier: expected a duration such as "30s", got list'],
    "canary_missing_golden_file.yaml": [
        f'canary_missing_golden_file.yaml: canary.golden_files[0]: cannot read "{os.path.join(TESTDATA, "missing.json")}": '
        "No such file or directory"],
    "canary_golden_dir_not_a_dir.yaml": [
        f'canary_golden_dir_not_a_dir.yaml: canary.golden_dir: "{os.path.join(TESTDATA, "models.config")}" is not a directory'],
    "canary_protocol_without_address.yaml": [
        "canary_protocol_without_address.yaml: canary.protocol: canaries use grpc but tfserving.grpc_address is empty; "
        "set the address or switch canary.protocol"],
    # structure
    "unknown_key.yaml": ['unknown_key.yaml: tfserving.grpc_adress: unknown key (did you mean "grpc_address"?)'],
    "unknown_section.yaml": ['unknown_section.yaml: colectors: unknown key (did you mean "collectors"?)'],
    "unknown_key_no_suggestion.yaml": [
        "unknown_key_no_suggestion.yaml: web.tls_config: unknown key (valid keys: listen_address, telemetry_path, config_file, enable_lifecycle)"],
    "section_not_a_mapping.yaml": ["section_not_a_mapping.yaml: limits: expected a mapping, got integer"],
    "not_a_mapping.yaml": ["not_a_mapping.yaml: top level must be a mapping of sections, got list"],
    "yaml_syntax.yaml": ["yaml_syntax.yaml:3:4: invalid YAML: expected <block end>, but found '<block mapping start>'"],
    "duplicate_key.yaml": ['duplicate_key.yaml:3:3: duplicate key "timeout"'],
    # types
    "wrong_type.yaml": ["wrong_type.yaml: tfserving.grpc_address: expected a string, got list"],
    "wrong_type_integer.yaml": ["wrong_type_integer.yaml: limits.max_models: expected an integer, got string"],
    "wrong_type_boolean.yaml": [
        "wrong_type_boolean.yaml: collectors.metadata.enabled: expected a boolean, got string"],
    "null_value.yaml": ["null_value.yaml: web.telemetry_path: expected a string, got null"],
    "models_not_a_list.yaml": ["models_not_a_list.yaml: models: expected a list of strings, got string"],
    "model_not_a_string.yaml": ["model_not_a_string.yaml: models[1]: expected a string, got integer"],
    # values
    "bad_duration.yaml": [f'bad_duration.yaml: tfserving.timeout: invalid duration "5x": unknown unit "x"; {UNITS}'],
    "duration_without_unit.yaml": [
        f'duration_without_unit.yaml: tfserving.timeout: invalid duration "5": missing unit (for example "5s"); {UNITS}'],
    "nonpositive_timeout.yaml": ["nonpositive_timeout.yaml: tfserving.timeout: must be greater than 0"],
    "negative_timeout_offset.yaml": [
        "negative_timeout_offset.yaml: tfserving.timeout_offset: invalid duration -1: must not be negative"],
    "bad_protocol.yaml": ['bad_protocol.yaml: collectors.status.protocol: must be one of grpc, rest, got "http"'],
    "bad_address.yaml": [
        'bad_address.yaml: tfserving.grpc_address: invalid gRPC address "http://localhost:8500": '
        "expected host:port without a scheme (or dns:///host:port, unix:/path)"],
    "bad_port.yaml": [
        'bad_port.yaml: tfserving.grpc_address: invalid gRPC address "localhost:70000": '
        "port must be between 1 and 65535, got 70000"],
    "bad_rest_address.yaml": [
        'bad_rest_address.yaml: tfserving.rest_address: invalid REST address "http://localhost:8501/v1/models": '
        'must not have a path, got "/v1/models"'],
    "bad_listen_address.yaml": [
        'bad_listen_address.yaml: web.listen_address: invalid listen address "9850": '
        'missing ":" before the port (for example ":9850")'],
    "bad_metrics_path.yaml": [
        'bad_metrics_path.yaml: tfserving.metrics_path: must start with "/", got "monitoring/prometheus/metrics"'],
    "telemetry_path_root.yaml": [
        'telemetry_path_root.yaml: web.telemetry_path: must not be "/", which serves the landing page'],
    "telemetry_path_reserved.yaml": [
        'telemetry_path_reserved.yaml: web.telemetry_path: must not be under "/-/", '
        'which is reserved for health endpoints, got "/-/metrics"'],
    "nonpositive_limit.yaml": [
        "nonpositive_limit.yaml: limits.max_versions_per_model: must be a positive integer, got 0"],
    "bad_log_level.yaml": ['bad_log_level.yaml: log.level: must be one of debug, info, warn, error, got "verbose"'],
    "bad_log_format.yaml": ['bad_log_format.yaml: log.format: must be one of logfmt, json, got "text"'],
    "duplicate_models.yaml": ['duplicate_models.yaml: models[2]: duplicate model name "half_plus_two"'],
    "bad_model_name.yaml": [
        'bad_model_name.yaml: models[0]: model name must not contain "/" or ":", got "half_plus_two/1"'],
    "empty_model_name.yaml": ["empty_model_name.yaml: models[0]: model name must not be empty"],
    "missing_model_config_file.yaml": [
        "missing_model_config_file.yaml: tfserving.model_config_file: "
        f'cannot read "{os.path.join(TESTDATA, "does-not-exist.config")}": No such file or directory'],
    # across settings
    "no_protocol_address.yaml": [
        "no_protocol_address.yaml: collectors.status.protocol: collector uses rest but tfserving.rest_address "
        "is empty; set the address, switch the protocol, or disable the collector"],
    # everything at once
    # in the order of the file's lines, whatever the kind of mistake
    "several_mistakes.yaml": [
        'several_mistakes.yaml: tfserving.grpc_adress: unknown key (did you mean "grpc_address"?)',
        'several_mistakes.yaml: tfserving.rest_address: invalid REST address "localhost": '
        "missing port (expected host:port)",
        f'several_mistakes.yaml: tfserving.timeout: invalid duration "5x": unknown unit "x"; {UNITS}',
        'several_mistakes.yaml: models[1]: duplicate model name "a"',
        'several_mistakes.yaml: collectors.status.protocol: must be one of grpc, rest, got "http"',
        "several_mistakes.yaml: limits.max_models: must be a positive integer, got -1",
        "several_mistakes.yaml: web: expected a mapping, got string",
        'several_mistakes.yaml: log.level: must be one of debug, info, warn, error, got "verbose"',
    ],
}


@pytest.fixture
def in_testdata(monkeypatch):
    monkeypatch.chdir(TESTDATA)


def problems_of(path, overrides=None):
    return problems_raised(ConfigError, load_config, path, overrides)


@pytest.mark.parametrize("name", sorted(INVALID_FILES))
def test_invalid_file_reports_exactly_its_problems(in_testdata, name):
    assert problems_of(name) == INVALID_FILES[name]


def test_every_testdata_file_is_covered_by_a_test():
    assert files_named(TESTDATA, ".yaml") == set(INVALID_FILES) | VALID_FILES


def test_error_text_lists_every_problem_one_per_line(in_testdata):
    with pytest.raises(ConfigError) as caught:
        load_config("several_mistakes.yaml")
    assert str(caught.value).splitlines() == INVALID_FILES["several_mistakes.yaml"]


def test_problems_follow_the_file_then_the_flags_then_the_rules(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("log:\n  level: loud\ntfserving:\n  grpc_address: ''\n"
                      "  timeout: soon\n")
    assert problems_of(str(config), {"web.listen_address": "nope", "canary.batch_size": "x"}) == [
        f'{config}: log.level: must be one of debug, info, warn, error, got "loud"',
        f'{config}: tfserving.timeout: invalid duration "soon": expected integers with units, '
        'such as "500ms", "1m30s" or "2h"',
        '--canary.batch-size: expected an integer, got "x"',
        '--web.listen-address: invalid listen address "nope": missing port (expected host:port)',
        f"{config}: collectors.status.protocol: collector uses grpc but tfserving.grpc_address "
        "is empty; set the address, switch the protocol, or disable the collector",
        f"{config}: collectors.metadata.protocol: collector uses grpc but "
        "tfserving.grpc_address is empty; set the address, switch the protocol, or disable the "
        "collector",
    ]


@pytest.mark.timeout(10)  # the walk that followed every alias took 97 s and 5.6 GB here
def test_aliases_cannot_make_loading_explode_or_loop(tmp_path):
    # A chain of aliases doubling at each step (723 bytes, 10^8 paths if every alias were
    # followed) and an alias of its own ancestor: both are unknown keys, found at once.
    chain = ["a0: &a0 {k: 1}"] + [
        f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(10)) + "}"
        for i in range(1, 8)] + ["x: *a7"]
    exploding = tmp_path / "exploding.yaml"
    exploding.write_text("\n".join(chain) + "\n")
    problems = problems_of(str(exploding))
    assert problems[0].startswith(f"{exploding}: a0: unknown key") and len(problems) == 9
    looping = tmp_path / "looping.yaml"
    looping.write_text("tfserving: &x\n  loop: *x\n")
    assert problems_of(str(looping)) == [
        f"{looping}: tfserving.loop: unknown key (valid keys: grpc_address, rest_address, "
        "metrics_path, model_config_file, timeout, timeout_offset, grpc_tls)"]


def test_missing_config_file_is_reported(in_testdata):
    assert problems_of("nope.yaml") == ["nope.yaml: cannot read config file: No such file or directory"]


def test_directory_as_config_file_is_reported(in_testdata):
    assert problems_of(".") == [".: cannot read config file: Is a directory"]


def test_empty_file_gives_all_defaults(in_testdata):
    assert load_config("empty.yaml") == load_config(None)


def test_defaults():
    config = load_config(None)
    assert config.tfserving.grpc_address == "localhost:8500"
    assert config.tfserving.rest_address == "http://localhost:8501"
    assert config.tfserving.metrics_path == "/monitoring/prometheus/metrics"
    assert config.tfserving.model_config_file == ""
    assert config.tfserving.timeout == 10.0
    assert config.tfserving.timeout_offset == 0.5
    assert config.models == ()
    assert config.collectors.status == CollectorConfig(enabled=True, protocol="grpc")
    assert config.collectors.metadata == CollectorConfig(enabled=True, protocol="grpc")
    assert config.limits == config_module.LimitsConfig(
        max_models=300, max_versions_per_model=20, max_signatures_per_version=50,
        max_tensors_per_signature=100)
    assert config.web.listen_address == ":9850"
    assert config.web.telemetry_path == "/metrics"
    assert (config.log.level, config.log.format) == ("info", "logfmt")


def test_full_file_sets_every_value_normalised(in_testdata):
    config = load_config("full.yaml")
    assert config.tfserving.grpc_address == "tfserving.default.svc:9000"
    assert config.tfserving.rest_address == "https://tfserving.default.svc:9001"  # trailing "/" dropped
    assert config.tfserving.metrics_path == "/metrics/tf"
    assert config.tfserving.model_config_file == os.path.join(TESTDATA, "models.config")
    assert config.tfserving.timeout == 90.0
    assert config.tfserving.timeout_offset == 0.25
    assert config.models == ("half_plus_two", "image_classifier")
    assert config.collectors.status == CollectorConfig(enabled=False, protocol="rest")
    assert config.collectors.metadata == CollectorConfig(enabled=False, protocol="rest")
    assert config.limits == config_module.LimitsConfig(10, 5, 7, 30)
    assert config.web == config_module.WebConfig("127.0.0.1:19850", "/exporter/metrics",
                                                 os.path.join(TESTDATA, "web.yaml"), False)
    assert config.log == config_module.LogConfig("debug", "json")
    assert config.warnings == ()


def test_full_file_sets_every_setting_to_something_other_than_its_default(in_testdata):
    assert _flatten(load_config("full.yaml").to_dict()).keys() == {s.path for s in SCHEMA}
    for path, value in _flatten(load_config("full.yaml").to_dict()).items():
        assert value != _flatten(load_config(None).to_dict())[path], path


def test_config_is_immutable():
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tfserving.timeout = 1.0  # type: ignore[misc]


def test_model_config_file_is_relative_to_the_config_files_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # somewhere without a models.config
    config = load_config(os.path.join(TESTDATA, "full.yaml"))
    assert config.tfserving.model_config_file == os.path.join(TESTDATA, "models.config")


def test_model_config_file_from_a_flag_is_relative_to_the_working_directory(in_testdata):
    config = load_config(None, {"tfserving.model_config_file": "models.config"})
    assert config.tfserving.model_config_file == os.path.join(TESTDATA, "models.config")


def test_unreadable_model_config_file_is_reported(in_testdata):
    assert problems_of(None, {"tfserving.model_config_file": "."}) == [
        f'--tfserving.model-config-file: cannot read "{TESTDATA}": Is a directory']


# --- overrides -------------------------------------------------------------------------------

def test_overrides_beat_the_file(in_testdata):
    config = load_config("full.yaml", {
        "tfserving.grpc_address": "127.0.0.1:1",
        "models": ["a", "b"],
        "web.listen_address": ":9000",
        "collectors.metadata.enabled": "true",
    })
    assert config.tfserving.grpc_address == "127.0.0.1:1"
    assert config.models == ("a", "b")  # replaced, not merged
    assert config.web.listen_address == ":9000"
    assert config.collectors.metadata.enabled is True
    assert config.tfserving.timeout == 90.0  # untouched settings keep the file's value


def test_overrides_given_as_flag_text_are_parsed():
    config = load_config(None, {
        "limits.max_models": "7",
        "collectors.status.enabled": "false",
        "tfserving.timeout": "3s",
    })
    assert config.limits.max_models == 7
    assert config.collectors.status.enabled is False
    assert config.tfserving.timeout == 3.0


def test_none_overrides_mean_not_given(in_testdata):
    assert load_config("full.yaml", {"tfserving.grpc_address": None}) == load_config("full.yaml")


def test_override_problems_name_the_flag():
    assert problems_of(None, {
        "tfserving.grpc_address": "localhost",
        "models": ["a", "a/b"],
        "limits.max_models": "many",
        "collectors.status.enabled": "yes",
        "tfserving.timeout": "5x",
    }) == [
        'override limits.max_models: expected an integer, got "many"',
        '--collector.status: expected true or false, got "yes"',
        '--tfserving.grpc-address: invalid gRPC address "localhost": missing port (expected host:port)',
        f'--tfserving.timeout: invalid duration "5x": unknown unit "x"; {UNITS}',
        '--model: model name must not contain "/" or ":", got "a/b"',
    ]


def test_unknown_override_is_reported():
    assert problems_of(None, {"tfserving.grpc": "x"}) == ['override "tfserving.grpc": no such setting']


def test_file_and_override_problems_are_reported_together(in_testdata):
    assert problems_of("bad_duration.yaml", {"web.listen_address": "nope"}) == [
        INVALID_FILES["bad_duration.yaml"][0],
        '--web.listen-address: invalid listen address "nope": missing port (expected host:port)',
    ]


def test_an_override_can_fix_a_bad_file_value(in_testdata):
    config = load_config("bad_protocol.yaml", {"collectors.status.protocol": "grpc"})
    assert config.collectors.status.protocol == "grpc"


def test_flag_table_maps_both_ways():
    assert FLAG_FOR_FIELD["tfserving.grpc_address"] == "--tfserving.grpc-address"
    assert FLAG_FOR_FIELD["models"] == "--model"
    assert FLAG_FOR_FIELD["web.listen_address"] == "--web.listen-address"
    assert all(FIELD_FOR_FLAG[flag] == path for path, flag in FLAG_FOR_FIELD.items())


# --- rules across settings -------------------------------------------------------------------

def test_cross_setting_problem_without_a_file_names_the_setting():
    assert problems_of(None, {"tfserving.grpc_address": ""}) == [
        "collectors.status.protocol: collector uses grpc but tfserving.grpc_address is empty; "
        "set the address, switch the protocol, or disable the collector",
        "collectors.metadata.protocol: collector uses grpc but tfserving.grpc_address is empty; "
        "set the address, switch the protocol, or disable the collector",
    ]


def test_cross_setting_problems_are_reported_with_other_problems():
    assert problems_of(None, {"tfserving.grpc_address": "", "collectors.metadata.enabled": False,
                              "log.level": "trace"}) == [
        '--log.level: must be one of debug, info, warn, error, got "trace"',
        "collectors.status.protocol: collector uses grpc but tfserving.grpc_address is empty; "
        "set the address, switch the protocol, or disable the collector",
    ]


def test_cross_setting_rules_wait_for_a_readable_file(in_testdata):
    # Defaults (grpc on) would clash with the override, but the file might have fixed that.
    assert problems_of("yaml_syntax.yaml", {"tfserving.grpc_address": ""}) == (
        INVALID_FILES["yaml_syntax.yaml"])


def test_disabled_collector_needs_no_address():
    config = load_config(None, {"tfserving.grpc_address": "", "collectors.status.protocol": "rest",
                                "collectors.metadata.enabled": False})
    assert config.collectors.metadata.enabled is False


def test_invalid_address_is_not_also_reported_as_missing():
    assert problems_of(None, {"tfserving.grpc_address": "nope", "tfserving.rest_address": ""}) == [
        '--tfserving.grpc-address: invalid gRPC address "nope": missing port (expected host:port)']


def test_no_models_is_a_warning_not_an_error():
    assert load_config(None).warnings == (
        "no models configured (models and tfserving.model_config_file are both empty): "
        "only tfserving_up and the exporter's own metrics will be exported",)


@pytest.mark.parametrize("overrides", [
    {"models": ["a"]},
    {"tfserving.model_config_file": os.path.join(TESTDATA, "models.config")},
    {"models": ["a"], "tfserving.model_config_file": os.path.join(TESTDATA, "models.config")},
])
def test_models_from_either_source_leave_no_warning(overrides):
    assert load_config(None, overrides).warnings == ()


# --- round trip and rendering ----------------------------------------------------------------

@pytest.mark.parametrize("source", [os.path.join(TESTDATA, "full.yaml"), None])
def test_to_dict_round_trips_through_load_config(tmp_path, source):
    config = load_config(source, {"tfserving.timeout_offset": 0.0004})  # not a whole millisecond
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(str(dumped)) == config


def test_to_dict_writes_durations_as_prometheus_durations(in_testdata):
    tfserving = load_config("full.yaml").to_dict()["tfserving"]
    assert (tfserving["timeout"], tfserving["timeout_offset"]) == ("1m30s", "250ms")


def test_to_yaml_is_to_dict_in_declaration_order(in_testdata):
    config = load_config("full.yaml")
    assert yaml.safe_load(config.to_yaml()) == config.to_dict()
    assert list(config.to_dict()) == ["tfserving", "models", "collectors", "limits", "canary",
                                      "probe", "fleet", "web", "log"]


# --- the schema itself -----------------------------------------------------------------------

def _flatten(mapping, prefix=""):
    """Settings by dotted path; a mapping-valued setting (canary.intervals) stays whole."""
    settings = {s.path for s in SCHEMA}
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and prefix + key not in settings:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_a_shared_section_fills_its_words_into_flags_and_docs():
    by_path = {s.path: s for s in SCHEMA}
    assert by_path["collectors.metadata.enabled"].flag == "--collector.metadata"
    assert by_path["collectors.metadata.protocol"].flag == "--collector.metadata.protocol"
    assert by_path["collectors.status.enabled"].doc == (
        "Export model version states (GetModelStatus).")
    assert by_path["collectors.metadata.protocol"].doc == "Protocol the metadata collector uses."


def test_an_annotation_that_disagrees_with_its_kind_is_refused_at_import():
    @dataclasses.dataclass(frozen=True)
    class Section:
        timeout: str = config_module.setting(config_module.DURATION, "1s", doc="A duration.")

    with pytest.raises(TypeError, match=r"Section\.timeout: annotated <class 'str'>, but a "
                                        r"duration setting holds <class 'float'>"):
        list(config_module._declared(Section))


def test_a_field_that_is_neither_setting_nor_section_is_refused_at_import():
    @dataclasses.dataclass(frozen=True)
    class Section:
        level: int

    with pytest.raises(TypeError, match=r"Section\.level is neither a setting\(\) nor a section"):
        list(config_module._declared(Section))


def test_reference_has_one_row_per_setting():
    lines = config_reference_markdown().splitlines()
    assert lines[0] == "| key | type | default | flag | description |"
    rows = lines[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{s.path}`" for s in SCHEMA]
    assert "| `tfserving.timeout` | duration | `10s` | `--tfserving.timeout` |" in config_reference_markdown()
    assert "| `collectors.status.protocol` | `grpc` \\| `rest` | `grpc` |" in config_reference_markdown()
    assert all(row.count(" | ") == 4 for row in rows)  # no unescaped "|" in a description


# --- the shipped example ---------------------------------------------------------------------

def test_example_config_is_written_from_the_declarations():
    with open(EXAMPLE, encoding="utf-8") as handle:
        assert handle.read() == config_example_yaml(), "run: python scripts/sync_chart_files.py"


def test_example_config_loads_to_the_defaults():
    # Its only advice is the one every default configuration gets.
    config = load_config(EXAMPLE)
    assert config == load_config(None)
    assert [warning.split(" (")[0] for warning in config.warnings] == ["no models configured"]


def test_example_config_sets_every_setting_with_a_comment_above_it():
    with open(EXAMPLE, encoding="utf-8") as handle:
        text = handle.read()
    assert _flatten(yaml.safe_load(text)).keys() == {s.path for s in SCHEMA}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "-")):
            assert lines[index - 1].strip().startswith("#"), f"no comment above line {index + 1}: {line}"


@pytest.mark.parametrize("raw, parsed", [
    (65536, 65536), ("64KiB", 65536), ("16MiB", 16 << 20), ("1GiB", 1 << 30), ("123B", 123),
    ("4096", 4096)])
def test_sizes_take_bytes_or_binary_units(raw, parsed):
    from exporter.config_kinds import format_byte_size, parse_byte_size
    assert parse_byte_size(raw) == parsed
    assert parse_byte_size(format_byte_size(parsed)) == parsed


@pytest.mark.parametrize("raw, message", [
    ("16MB", 'expected a size such as "16MiB"'), ("1.5MiB", 'expected a size such as "16MiB"'),
    ("32KiB", "must be at least 64KiB"), (True, 'expected a size such as "16MiB", got boolean')])
def test_a_bad_page_size_is_refused_naming_it(raw, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, {"collectors.native.max_page_size": raw})
    assert "collectors.native.max_page_size" in str(err.value) and message in str(err.value)
