"""ServerCore against real version directories: discovery, lifecycle, policies, labels."""

import logging
import shutil
import time

import pytest

from tests.helpers import wait_until
from tfserving_simulator import demo_models
from tfserving_simulator.errors import ServingError
from tfserving_simulator.server_core import (ModelConfig, ServerCore, VersionPolicy,
                                            VersionStatus, parse_model_config_text)
from tfserving_simulator.tf_metrics import ServingMetrics

NOT_A_SAVED_MODEL = ("Specified file path does not appear to contain a SavedModel bundle "
                     "(should have a file called `saved_model.pb`)\nSpecified file path: {}")


@pytest.fixture
def make_core():
    cores = []

    def make(models, **options):
        options.setdefault("file_system_poll_wait_seconds", 0.05)
        options.setdefault("max_num_load_retries", 0)
        options.setdefault("load_retry_interval_seconds", 0.05)
        core = ServerCore(models, metrics=ServingMetrics(), **options)
        cores.append(core)
        core.start()
        return core

    yield make
    for core in cores:
        core.stop()


def states(core, name):
    return [(s.version, s.state) for s in core.model_status(name)]


def state_of(core, name, version):
    return core.model_status(name, version)[0].state


def raises(call, *args, **kwargs) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_initial_version_becomes_available_with_path_as_on_disk(tmp_path, make_core):
    base = str(tmp_path / "half_plus_two")
    demo_models.write_half_plus_two(base, 123, dir_name="00000123")
    core = make_core([ModelConfig("half_plus_two", base)])
    core.wait_for_initial_models(timeout=10)
    assert core.model_status("half_plus_two") == [VersionStatus(123, "AVAILABLE", "OK", "")]
    servable = core.get_servable("half_plus_two")
    assert (servable.version, servable.path) == (123, f"{base}/00000123")
    assert core.model_names() == ["half_plus_two"]
    page = core._metrics.render()
    assert (f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{base}/00000123",'
            'status="success"} 1') in page


def test_start_and_loading_are_observable_and_highest_version_loads_first(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1, load_seconds=0.4)
    demo_models.write_half_plus_two(base, 2, load_seconds=0.4)
    core = make_core([ModelConfig("m", base, VersionPolicy.all())])
    # Loads are serial: while 2 loads, 1 waits in START.
    wait_until(lambda: states(core, "m") == [(2, "LOADING"), (1, "START")], timeout=5)
    wait_until(lambda: states(core, "m") == [(2, "AVAILABLE"), (1, "LOADING")], timeout=5)
    wait_until(lambda: states(core, "m") == [(2, "AVAILABLE"), (1, "AVAILABLE")], timeout=5)


def test_roll_to_new_version_keeps_old_available_until_new_one_is(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    core = make_core([ModelConfig("m", base)])
    core.wait_for_initial_models(timeout=10)
    demo_models.write_half_plus_two(base, 2, b=10.0, load_seconds=0.3)
    wait_until(lambda: states(core, "m") == [(2, "LOADING"), (1, "AVAILABLE")], timeout=5)
    assert core.get_servable("m").version == 1  # latest requests stay on the old version
    wait_until(lambda: states(core, "m") == [(2, "AVAILABLE"), (1, "END")], timeout=5)
    assert core.get_servable("m").version == 2
    assert core.model_status("m", 1) == [VersionStatus(1, "END", "OK", "")]
    assert [state for _, _, state in core.state_history("m")] == [
        "START", "LOADING", "AVAILABLE",              # v1
        "START", "LOADING", "AVAILABLE",              # v2
        "UNLOADING", "END"]                           # v1, only after v2 is available
    assert [v for _, v, _ in core.state_history("m")][-2:] == [1, 1]


def test_failed_new_version_ends_with_not_found_and_old_stays_available(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    core = make_core([ModelConfig("m", base)], max_num_load_retries=2,
                     load_retry_interval_seconds=0.1)
    core.wait_for_initial_models(timeout=10)
    path = demo_models.write_broken_version(base, 2)
    # Retrying keeps the version in LOADING.
    wait_until(lambda: state_of(core, "m", 2) == "LOADING", timeout=5)
    wait_until(lambda: state_of(core, "m", 2) == "END", timeout=5)
    assert core.model_status("m") == [
        VersionStatus(2, "END", "NOT_FOUND", NOT_A_SAVED_MODEL.format(path)),
        VersionStatus(1, "AVAILABLE", "OK", ""),
    ]
    assert core.get_servable("m").version == 1
    attempts = core._metrics.load_attempt_count
    assert attempts.value((path, "fail")) == 3  # first try + 2 retries
    # A failed version is not retried on later polls.
    polls = core.polls_attempted()
    wait_until(lambda: core.polls_attempted() >= polls + 3, timeout=5)
    assert attempts.value((path, "fail")) == 3
    assert state_of(core, "m", 1) == "AVAILABLE"


def test_failed_initial_load_reports_tf_startup_message(tmp_path, make_core):
    base = str(tmp_path / "m")
    path = demo_models.write_broken_version(base, 7)
    core = make_core([ModelConfig("m", base)])
    err = raises(core.wait_for_initial_models, timeout=10)
    assert err.code == "UNKNOWN"
    assert err.message == ("1 servable(s) did not become available: {{{name: m version: 7} due "
                           f"to error: NOT_FOUND: {NOT_A_SAVED_MODEL.format(path)}}}, }}")


def test_fail_load_spec_error_is_the_final_status(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1, fail_load={"code": "INTERNAL", "message": "boom"})
    core = make_core([ModelConfig("m", base)])
    raises(core.wait_for_initial_models, timeout=10)
    assert core.model_status("m") == [VersionStatus(1, "END", "INTERNAL", "boom")]


@pytest.mark.parametrize("policy, expected", [
    (VersionPolicy.all(), [(3, "AVAILABLE"), (2, "AVAILABLE"), (1, "AVAILABLE")]),
    (VersionPolicy.specific([1, 3, 9]), [(3, "AVAILABLE"), (1, "AVAILABLE")]),
    (VersionPolicy.latest(2), [(3, "AVAILABLE"), (2, "AVAILABLE")]),
    (VersionPolicy.latest(), [(3, "AVAILABLE")]),
])
def test_version_policies(tmp_path, make_core, policy, expected):
    base = str(tmp_path / "m")
    for version in (1, 2, 3):
        demo_models.write_half_plus_two(base, version)
    (tmp_path / "m" / "notes").mkdir()  # non-numeric names are ignored
    core = make_core([ModelConfig("m", base, policy)])
    wait_until(lambda: states(core, "m") == expected, timeout=5)


def test_lookup_error_texts(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    core = make_core([ModelConfig("m", base)])
    core.wait_for_initial_models(timeout=10)
    cases = [
        (lambda: core.get_servable("nope"), "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        (lambda: core.get_servable("m", 5), "NOT_FOUND", "Servable not found for request: Specific(m, 5)"),
        (lambda: core.get_servable("m", label="x"), "INVALID_ARGUMENT",
         "Unrecognized servable version label: x"),
        (lambda: core.model_status("nope"), "NOT_FOUND", "Could not find any versions of model nope"),
        (lambda: core.model_status(""), "NOT_FOUND", "Could not find any versions of model "),
        (lambda: core.model_status("m", 5), "NOT_FOUND", "Could not find version 5 of model m"),
    ]
    for call, code, message in cases:
        err = raises(call)
        assert (err.code, err.message) == (code, message)


def test_labels_need_available_versions_at_start_unless_allowed(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    config = ModelConfig("m", base, VersionPolicy.all(), {"stable": 1})
    core = ServerCore([config], metrics=ServingMetrics())
    err = raises(core.start)
    assert (err.code, err.message) == (
        "FAILED_PRECONDITION", "Request to assign label to version 1 of model m, which is not "
        "currently available for inference")
    core = make_core([config], allow_version_labels_for_unavailable_models=True)
    core.wait_for_initial_models(timeout=10)
    assert core.get_servable("m", label="stable").version == 1


def test_reload_moves_labels_only_to_available_versions(tmp_path, make_core):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    demo_models.write_half_plus_two(base, 2)
    core = make_core([ModelConfig("m", base, VersionPolicy.specific([1, 2]))])
    wait_until(lambda: states(core, "m") == [(2, "AVAILABLE"), (1, "AVAILABLE")], timeout=5)
    core.reload_config([ModelConfig("m", base, VersionPolicy.specific([1, 2]),
                                    {"stable": 1, "canary": 2})])
    assert core.get_servable("m", label="canary").version == 2
    err = raises(core.reload_config,
                 [ModelConfig("m", base, VersionPolicy.specific([1, 2]), {"stable": 3})])
    assert err.code == "FAILED_PRECONDITION"
    assert core.version_labels("m") == {"stable": 1, "canary": 2}  # the old config stays


def test_allowed_labels_on_unavailable_versions_may_stay_but_not_move(tmp_path, make_core):
    # server_core.cc, UpdateModelVersionLabelMap: with the flag, only moving an existing label
    # to another version needs that version available.
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1)
    core = make_core([ModelConfig("m", base, VersionPolicy.all())],
                     allow_version_labels_for_unavailable_models=True)
    core.wait_for_initial_models(timeout=10)

    def labelled(labels):
        return [ModelConfig("m", base, VersionPolicy.all(), labels)]

    core.reload_config(labelled({"stable": 1, "canary": 7}))  # a new label: anywhere
    core.reload_config(labelled({"stable": 1, "canary": 7}))  # kept where it is: fine again
    assert core.version_labels("m") == {"stable": 1, "canary": 7}
    err = raises(core.reload_config, labelled({"stable": 1, "canary": 8}))
    assert (err.code, err.message) == (
        "FAILED_PRECONDITION", "Request to assign label to version 8 of model m, which is not "
        "currently available for inference")
    core.reload_config(labelled({"stable": 1, "canary": 1}))  # moved to an available version
    assert core.version_labels("m") == {"stable": 1, "canary": 1}


def test_reload_config_adds_and_removes_models(tmp_path, make_core):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    demo_models.write_half_plus_two(a, 1)
    demo_models.write_image_classifier(b, 4, load_seconds=0.2)
    core = make_core([ModelConfig("a", a)])
    core.wait_for_initial_models(timeout=10)
    core.reload_config([ModelConfig("b", b)], timeout=10)
    # Blocks until the new model is available: usable right away.
    assert core.get_servable("b").version == 4
    assert core.model_names() == ["b"]
    wait_until(lambda: states(core, "a") == [(1, "END")], timeout=5)
    err = raises(core.get_servable, "a")
    assert err.message == "Servable not found for request: Latest(a)"
    # Adding it back loads it afresh.
    core.reload_config([ModelConfig("a", a), ModelConfig("b", b)], timeout=10)
    assert states(core, "a") == [(1, "AVAILABLE")]


def test_reload_config_reports_new_models_that_fail(tmp_path, make_core):
    a, bad = str(tmp_path / "a"), str(tmp_path / "bad")
    demo_models.write_half_plus_two(a, 1)
    path = demo_models.write_broken_version(bad, 3)
    core = make_core([ModelConfig("a", a)])
    core.wait_for_initial_models(timeout=10)
    err = raises(core.reload_config, [ModelConfig("a", a), ModelConfig("bad", bad)], timeout=10)
    assert err.code == "UNKNOWN"
    assert err.message == ("1 model(s) did not become available: {{{name: bad version: 3} due to "
                           f"error: NOT_FOUND: {NOT_A_SAVED_MODEL.format(path)}}}, }}")


def test_missing_base_path_stops_discovery_for_every_model(tmp_path, make_core, caplog):
    good, missing = str(tmp_path / "good"), str(tmp_path / "missing")
    demo_models.write_half_plus_two(good, 1)
    caplog.set_level(logging.WARNING)
    core = make_core([ModelConfig("good", good), ModelConfig("missing", missing)])
    wait_until(lambda: core.polls_attempted() >= 3, timeout=5)
    assert raises(core.model_status, "good").message == "Could not find any versions of model good"
    # file_system_storage_path_source.cc: FileExists' status inside PollFileSystemForServable's
    # error, logged by the polling thread on every poll (the server waits on those polls).
    message = ("FileSystemStoragePathSource encountered a filesystem access error: Could not "
               f"find base path {missing} for servable missing with error NOT_FOUND: {missing} "
               "not found")
    logged = [r for r in caplog.records if r.getMessage() == message]
    assert len(logged) >= 3 and {r.levelno for r in logged} == {logging.ERROR}
    err = raises(core.wait_for_initial_models, timeout=0.2)
    assert err.code == "DEADLINE_EXCEEDED"
    demo_models.write_half_plus_two(missing, 1)
    core.wait_for_initial_models(timeout=10)
    assert states(core, "good") == [(1, "AVAILABLE")]


def test_base_path_without_version_directories_waits_and_says_why(tmp_path, make_core, caplog):
    base = tmp_path / "empty"
    base.mkdir()
    caplog.set_level(logging.WARNING)
    core = make_core([ModelConfig("empty", str(base))])
    message = (f"No versions of servable empty found under base path {base}. Did you forget to "
               "name your leaf directory as a number (eg. '/1/')?")
    # A warning on every poll, as PollFileSystemForServable logs it.
    wait_until(lambda: sum(r.getMessage() == message for r in caplog.records) >= 2, timeout=5)
    demo_models.write_half_plus_two(str(base), 5)
    core.wait_for_initial_models(timeout=10)


def test_deleting_all_versions_unloads_them(tmp_path, make_core):
    base = str(tmp_path / "m")
    path = demo_models.write_half_plus_two(base, 1)
    core = make_core([ModelConfig("m", base)])
    core.wait_for_initial_models(timeout=10)
    shutil.rmtree(path)
    wait_until(lambda: states(core, "m") == [(1, "END")], timeout=5)


def test_stop_is_prompt_even_during_a_long_load(tmp_path):
    base = str(tmp_path / "m")
    demo_models.write_half_plus_two(base, 1, load_seconds=30)
    core = ServerCore([ModelConfig("m", base)], metrics=ServingMetrics(),
                      file_system_poll_wait_seconds=0.05)
    core.start()
    wait_until(lambda: state_of(core, "m", 1) == "LOADING", timeout=5)
    started = time.monotonic()
    core.stop()
    assert time.monotonic() - started < 1.0
    assert not any(thread.is_alive() for thread in core._threads)


def test_parse_model_config_text():
    models = parse_model_config_text("""
        model_config_list {
          config { name: "half_plus_two" base_path: "/models/half_plus_two"
                   model_platform: "tensorflow"
                   model_version_policy { specific { versions: 2 versions: 1 } }
                   version_labels { key: "stable" value: 1 } }
          config { name: "other" base_path: "/models/other"
                   model_version_policy { latest { num_versions: 0 } } }
        }""")
    assert [(m.name, m.base_path, m.policy, m.version_labels) for m in models] == [
        ("half_plus_two", "/models/half_plus_two", VersionPolicy.specific([1, 2]), {"stable": 1}),
        ("other", "/models/other", VersionPolicy.latest(1), {}),
    ]
    # server_core.cc, ReloadConfig: a file that sets no config is "no action" (None), unlike
    # an empty list, which unloads every model.
    assert parse_model_config_text("# nothing\n") is None
    assert parse_model_config_text("model_config_list {}") == []


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }',
     "Illegal to list model a multiple times in config list"),
    ('model_config_list { config { name: "a" base_path: "models/a" } }',
     "Expected model a to have an absolute path or URI; instead has relative path models/a"),
    ('model_config_list { config { nam: "a" } }', "Invalid protobuf file: ModelServerConfig"),
])
def test_parse_model_config_text_errors(text, message):
    err = raises(parse_model_config_text, text)
    assert err.code == "INVALID_ARGUMENT"
    assert message in err.message


def test_model_removed_and_added_back_at_once_is_available_again(tmp_path, make_core):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    demo_models.write_half_plus_two(a, 1)
    demo_models.write_half_plus_two(b, 1)
    core = make_core([ModelConfig("a", a), ModelConfig("b", b)])
    core.wait_for_initial_models(timeout=10)
    core.reload_config([ModelConfig("b", b)], timeout=10)
    core.reload_config([ModelConfig("a", a), ModelConfig("b", b)], timeout=10)
    wait_until(lambda: states(core, "a") == [(1, "AVAILABLE")], timeout=5)
    assert core.get_servable("a").version == 1
