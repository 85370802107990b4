"""TF Serving's page as hostile input: the native collector ends by the scrape deadline, keeps
what it builds bounded, and never exports an invalid series, whatever the page holds.

Every class of the hostile-input campaign has a table here: the deadline while parsing, label
text length, the caches, the model cap (with configured models), the series cap (never half a
histogram), each kind of invalid sample, duplicates, ``le="abc"``, non-ASCII digits in a
``model_path``; and the whole output, rendered in both formats, goes through prometheus_client's
parsers and promtool. No test sleeps.
"""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.collectors.base import CollectorError
from exporter.collectors.native import (BRIDGED, ModelPathMapper, NativeCollector,
                                        seconds_text)
from exporter.exposition import encode
from exporter.tfserving import page_checks
from exporter.tfserving import prometheus_page
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.page_checks import MAX_BUCKETS, MAX_LABEL_TEXT
from exporter.tfserving.prometheus_page import (MAX_CACHED_KEY, PageDeadline, PageError,
                                                parse_page)
from tests.conftest import promtool_check_metrics

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
RUNTIME = ":tensorflow:serving:runtime_latency"
ATTEMPTS = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_TIME = ":tensorflow:cc:saved_model:load_latency"
QUEUING = ":tensorflow:serving:batching_session:queuing_latency"
E33 = [f"{10 * 1.8 ** i:g}" for i in range(33)]


# ---------------------------------------------------------------------------------------------
# Page builders (TF Serving's habits: TYPE lines, %g limits, le last, _sum before _count).

def count_line(model: str, status: str = "OK", value: str = "1", extra: str = "") -> str:
    return f'{COUNT}{{model_name="{model}",status="{status}"{extra}}} {value}'


def histogram_lines(model: str, name: str = LATENCY, api: str = "predict", third: str = "REST",
                    limits=("10", "18", "+Inf"), counts=("1", "2", "3"), sum_text="45",
                    count_text: str | None = "3") -> list[str]:
    third_label = "runtime" if name == RUNTIME else "entrypoint"
    labels = f'model_name="{model}",API="{api}",{third_label}="{third}"'
    lines = [f'{name}_bucket{{{labels},le="{limit}"}} {count}'
             for limit, count in zip(limits, counts)]
    if sum_text is not None:
        lines.append(f"{name}_sum{{{labels}}} {sum_text}")
    if count_text is not None:
        lines.append(f"{name}_count{{{labels}}} {count_text}")
    return lines


def attempt_line(model_path: str, status: str = "success", value: str = "1") -> str:
    return f'{ATTEMPTS}{{model_path="{model_path}",status="{status}"}} {value}'


def page_of(*groups) -> str:
    """TYPE lines for the bridged families, then the given lines (strings or lists)."""
    lines = [f"# TYPE {COUNT} counter", f"# TYPE {LATENCY} histogram",
             f"# TYPE {RUNTIME} histogram", f"# TYPE {ATTEMPTS} counter",
             f"# TYPE {LOAD_TIME} counter", f"# TYPE {QUEUING} histogram"]
    for group in groups:
        lines.extend([group] if isinstance(group, str) else group)
    return "\n".join(lines) + "\n"


class Drops:
    """The collector's dropped counter, recording each increment."""

    def __init__(self) -> None:
        self.counter = Counter("dropped", "Dropped.", ["kind"], registry=CollectorRegistry())
        self.increments: list[tuple[str, float]] = []

    def labels(self, kind: str):
        child = self.counter.labels(kind)
        drops = self

        class Recording:
            def inc(self, amount: float = 1) -> None:
                drops.increments.append((kind, amount))
                child.inc(amount)
        return Recording()

    def value(self, kind: str) -> float:
        return self.counter.labels(kind)._value.get()


def collector(**options) -> tuple[NativeCollector, Drops]:
    drops = Drops()
    passthrough = options.pop("passthrough", False)
    return NativeCollector("/monitoring/prometheus/metrics", options.pop("base_paths", dict),
                           passthrough, options.pop("max_passthrough_series", 1000), drops,
                           **options), drops


def exposition(metrics, accept: str = "text/plain") -> str:
    return encode(metrics, [], accept)[0].decode()


def parsed_samples(metrics) -> dict[tuple[str, frozenset], float]:
    """Both formats parse, and agree; the samples of the OpenMetrics one."""
    found = {}
    for family in parse_openmetrics(exposition(metrics, OPENMETRICS)):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    text = {(s.name, frozenset(s.labels.items())): s.value
            for family in parse_text(exposition(metrics)) for s in family.samples}
    assert text == found
    return found


def names(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for (sample_name, labels) in samples if sample_name == name]


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class FakeScrape:
    """What NativeCollector.collect needs of a scrape: a REST client, call(), started(), a
    deadline."""

    def __init__(self, body: bytes, deadline: Deadline) -> None:
        self.deadline = deadline
        self._body = body

    def client(self, protocol: str):
        return self

    def request(self, api, method, path, deadline, max_bytes=None, buffers=None):
        class Reply:
            status = 200
            body = self._body
        return Reply()

    def call(self, protocol, operation, *args):
        return operation(*args, self.deadline)

    def started(self, key, function):  # nothing begun ahead: run it now, as Scrape does
        return function()


# ---------------------------------------------------------------------------------------------
# 1. The deadline, while parsing.

def _countdown(calls: int):
    """An ``expired`` that turns true on its ``calls``-th call."""
    state = {"calls": 0}

    def expired() -> bool:
        state["calls"] += 1
        return state["calls"] >= calls
    expired.state = state
    return expired


BIG_COUNTS = page_of([count_line(f"m{index:06d}") for index in range(60_000)])
BIG_UNWANTED = "".join(f'x_total{{i="{index}"}} 1\n' for index in range(200_000))
BIG_TYPES = "".join(f"# TYPE :tensorflow:x{index:06d} counter\n" for index in range(120_000))
# A raw newline in a label value sends the page to the line-by-line parser.
BIG_SLOW = 'x{a="raw\nnewline"} 1\n' + BIG_UNWANTED


@pytest.mark.parametrize("page, calls, passthrough", [
    (BIG_COUNTS, 2, False),
    (BIG_COUNTS.encode(), 2, False),
    (BIG_UNWANTED, 3, False),
    (BIG_UNWANTED, 3, True),
    (BIG_SLOW, 2, False),
    (BIG_TYPES, 2, True),
], ids=["bridged", "bridged-bytes", "unwanted", "passthrough", "line-by-line", "type-lines"])
def test_parsing_stops_when_expired_turns_true(page, calls, passthrough):
    expired = _countdown(calls)
    native, drops = collector(passthrough=passthrough)
    with pytest.raises(PageDeadline, match="stopped at the scrape deadline") as raised:
        native.convert(page, expired=expired)
    assert expired.state["calls"] == calls  # stopped at once, not at the end of the page
    lines = raised.value.lines
    assert lines is None or 0 < lines < page.count("\n" if isinstance(page, str) else b"\n")
    assert drops.increments == []  # a failed page exports and counts nothing


def test_parse_page_checks_the_deadline_every_slice():
    expired = _countdown(10 ** 9)
    parse_page(BIG_COUNTS, expired=expired)
    assert expired.state["calls"] >= len(BIG_COUNTS) // prometheus_page.CHUNK_CHARS


def test_a_million_line_page_stops_at_a_real_deadline():
    block = "".join(count_line(f"m{index}") + "\n" + f'x{{i="{index}"}} 1\n'
                    for index in range(500))
    page = f"# TYPE {COUNT} counter\n" + block * 1000  # 10^6 lines
    native, _ = collector()
    started = time.monotonic()
    with pytest.raises(PageDeadline):
        native.convert(page, expired=Deadline.after(0.2).expired)
    assert time.monotonic() - started < 0.4


def test_collect_reports_the_deadline_as_the_collectors_failure():
    native, _ = collector()
    with pytest.raises(CollectorError, match="scrape deadline"):
        list(native.collect(FakeScrape(BIG_COUNTS.encode(), Deadline.after(0))))


# ---------------------------------------------------------------------------------------------
# 2. Budgets on what is built from the page.

LONG = "x" * (MAX_LABEL_TEXT + 1)


@pytest.mark.parametrize("lines, passthrough, invalid", [
    ([count_line(LONG)], False, 1),
    (histogram_lines(LONG), False, 5),
    ([attempt_line(f"/models/{LONG}/1")], False, 1),
    ([f'{LOAD_TIME}{{model_path="/m/{LONG}/1"}} 5'], False, 1),
    (histogram_lines("m", limits=("1" * MAX_LABEL_TEXT, "+Inf"), counts=("1", "1"),
                     count_text="1"), False, 4),  # one long bucket: the series, whole
    (["# TYPE :tensorflow:core:x counter", f':tensorflow:core:x{{a="{LONG}"}} 1'], True, 1),
], ids=["counter", "histogram", "load-attempts", "load-latency", "one-long-bucket",
        "passthrough"])
def test_label_text_over_the_limit_is_dropped_counted_and_never_cached(lines, passthrough,
                                                                       invalid):
    native, drops = collector(passthrough=passthrough)
    samples = parsed_samples(native.convert(page_of(lines, count_line("ok"))))
    assert drops.value("native_invalid") == invalid
    assert value(samples, "tfserving_requests_total", model="ok", status="OK") == 1
    assert not [name for name, labels in samples
                if any(len(label_value) > MAX_LABEL_TEXT for _, label_value in labels)]
    caches = [prometheus_page._parsed_labels] + [
        cache for spec in native.specs.values()
        for cache in (getattr(spec, "cache", None), getattr(spec, "buckets", None),
                      getattr(spec, "cells", None), getattr(spec, "shapes", None))
        if cache is not None]
    assert all(len(key) <= MAX_CACHED_KEY for cache in caches for key in cache)


def test_caches_stay_within_their_entry_and_byte_budgets():
    native, _ = collector()
    for round_ in range(3):  # label churn: every scrape a new set of label texts
        page = page_of([count_line(f"m{round_}-{index}-" + "y" * (index % 200))
                        for index in range(8000)],
                       *(histogram_lines(f"m{round_}-{index}") for index in range(3000)))
        native.convert(page)
    caches = [prometheus_page._parsed_labels] + [
        cache for spec in native.specs.values()
        for cache in (getattr(spec, "cache", None), getattr(spec, "buckets", None),
                      getattr(spec, "cells", None), getattr(spec, "shapes", None))
        if isinstance(cache, prometheus_page.SizedCache)]
    for cache in caches:
        assert len(cache) <= cache.max_entries
        assert cache.bytes <= cache.max_bytes
        assert all(len(key) <= MAX_CACHED_KEY for key in cache)


@pytest.mark.parametrize("models, known, max_models, kept", [
    (["d", "b", "a", "c"], [], 2, ["a", "b"]),                 # smallest names, any page order
    (["d", "b", "a", "c"], ["d"], 2, ["a", "d"]),              # a configured model always in
    (["z", "y", "x"], ["z", "y", "x", "w"], 2, ["x", "y", "z"]),  # configured beyond the cap
    ([f"m{index:05d}" for index in range(10_000, 0, -1)], ["m09999"], 100,
     [f"m{index:05d}" for index in range(1, 100)] + ["m09999"]),
], ids=["sorted", "known", "known-over-cap", "ten-thousand-descending"])
def test_model_cap_keeps_configured_models_and_the_smallest_others(models, known, max_models,
                                                                   kept):
    native, drops = collector(max_models=max_models, known_models=lambda: known)
    page = page_of([count_line(model) for model in models],
                   *(histogram_lines(model) for model in models),
                   [attempt_line(f"/models/{model}/1") for model in models])
    samples = parsed_samples(native.convert(page))
    for name in ("tfserving_requests_total", "tfserving_request_duration_seconds_count",
                 "tfserving_model_load_attempts_total"):
        assert sorted(labels["model"] for labels in names(samples, name)) == sorted(kept)
    dropped_models = len(models) - len(kept)
    assert drops.value("native_series") == dropped_models * (1 + 5 + 1)
    assert drops.value("native_invalid") == 0


def test_model_cap_applies_to_the_mapped_model_of_model_paths():
    native, _ = collector(max_models=1, base_paths=lambda: {"alpha": "/srv/x/"})
    page = page_of(attempt_line("/srv/x/7"), attempt_line("/models/beta/1"),
                   f'{LOAD_TIME}{{model_path="/models/beta/1"}} 100',
                   f'{LOAD_TIME}{{model_path="/srv/x/7"}} 100')
    samples = parsed_samples(native.convert(page))
    assert names(samples, "tfserving_model_load_attempts_total") == [
        {"model": "alpha", "version": "7", "status": "success"}]
    assert names(samples, "tfserving_model_load_duration_seconds_total") == [
        {"model": "alpha", "version": "7"}]


@pytest.mark.parametrize("max_series", [0, 1, 5, 6, 7, 12, 13, 40])
def test_series_cap_counts_every_line_and_never_cuts_a_histogram(max_series, promtool):
    native, drops = collector(max_series=max_series)
    page = page_of(count_line("a"), histogram_lines("a"), histogram_lines("b"),
                   count_line("b"), histogram_lines("c", name=RUNTIME, third="TF1"))
    metrics = native.convert(page)
    samples = parsed_samples(metrics)  # the OpenMetrics parser refuses half a histogram
    exported = len(samples)
    assert exported <= max_series
    assert exported + drops.value("native_series") == 2 + 3 * 5  # page lines, all accounted
    for name in ("tfserving_request_duration_seconds", "tfserving_runtime_duration_seconds"):
        for labels in names(samples, name + "_count"):
            buckets = [key for key in samples if key[0] == name + "_bucket"
                       and {k: v for k, v in key[1] if k != "le"} == labels]
            assert len(buckets) == 3 and (name + "_sum", frozenset(labels.items())) in samples
    result = promtool_check_metrics(exposition(metrics), promtool)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("cap", [0, 2, 5, 6, 100])
def test_passthrough_cap_bounds_what_is_kept(cap):
    lines = ["# TYPE :tensorflow:core:runs counter"]
    lines += [f':tensorflow:core:runs{{i="{index}"}} {index}' for index in range(4)]
    lines += ["# TYPE :tensorflow:core:hist histogram"] + [
        line.replace(LATENCY, ":tensorflow:core:hist") for line in histogram_lines("m")]
    lines += ["# TYPE :tensorflow:core:g gauge", ":tensorflow:core:g 3"]
    lines += [f'x{index}{{a="b"}} 1' for index in range(3000)]  # beyond the family slots
    native, drops = collector(passthrough=True, max_passthrough_series=cap)
    samples = parsed_samples(native.convert(page_of(lines)))
    passed = [key for key in samples if key[0].startswith("tensorflow_")]
    assert len(passed) <= cap
    histogram = [key for key in passed if key[0].startswith("tensorflow_core_hist")]
    assert len(histogram) in (0, 5)  # whole or not at all
    assert drops.value("native_series") >= 4 + 5 + 1 - len(passed)


def test_families_of_a_hostile_page_are_bounded():
    native, _ = collector(passthrough=True, max_passthrough_series=10)
    seen = []
    original = parse_page

    def spy(text, wanted=None, expired=None, unchanged=None):
        families = original(text, wanted, expired, unchanged)
        seen.append(len(families))
        return families
    import exporter.collectors.native as native_module
    native_module.parse_page = spy
    try:
        native.convert(BIG_TYPES)
    finally:
        native_module.parse_page = original
    assert seen[0] <= 10 + 1000 + len(BRIDGED)


# ---------------------------------------------------------------------------------------------
# 3. No invalid output.

INVALID = [
    # (id, lines, passthrough, invalid lines)
    ("counter-nan", [count_line("m", value="NaN")], False, 1),
    ("counter-inf", [count_line("m", value="+Inf")], False, 1),
    ("counter-negative", [count_line("m", value="-1")], False, 1),
    ("counter-overflow", [count_line("m", value="1e999")], False, 1),
    ("load-latency-nan", [f'{LOAD_TIME}{{model_path="/models/m/1"}} NaN'], False, 1),
    ("attempts-negative", [attempt_line("/models/m/1", value="-3")], False, 1),
    ("bucket-nan", histogram_lines("m", counts=("1", "NaN", "3")), False, 5),
    ("bucket-inf", histogram_lines("m", counts=("1", "2", "+Inf")), False, 5),
    ("bucket-fraction", histogram_lines("m", counts=("1", "2.5", "3")), False, 5),
    ("buckets-decrease", histogram_lines("m", counts=("3", "2", "3")), False, 5),
    ("bucket-negative", histogram_lines("m", counts=("-1", "2", "3")), False, 5),
    ("le-abc", histogram_lines("m", limits=("10", "abc", "+Inf")), False, 5),
    ("le-unicode-digits", histogram_lines("m", limits=("10", "١٢٣", "+Inf")), False, 5),
    ("le-nan", histogram_lines("m", limits=("10", "NaN", "+Inf")), False, 5),
    ("le-negative", histogram_lines("m", limits=("-10", "18", "+Inf")), False, 5),
    ("le-not-increasing", histogram_lines("m", limits=("18", "10", "+Inf")), False, 5),
    ("le-twice", histogram_lines("m", limits=("10", "10", "+Inf")), False, 5),
    ("no-inf-bucket", histogram_lines("m", limits=("10", "18", "32.4")), False, 5),
    ("count-differs", histogram_lines("m", count_text="4"), False, 5),
    ("sum-nan", histogram_lines("m", sum_text="NaN"), False, 5),
    ("sum-negative", histogram_lines("m", sum_text="-5"), False, 5),
    ("no-sum", histogram_lines("m", sum_text=None), False, 4),
    ("sum-without-buckets", [f'{LATENCY}_sum{{model_name="m",API="predict",'
                             f'entrypoint="REST"}} 5'], False, 1),
    ("bucket-without-le", [f'{LATENCY}_bucket{{model_name="m"}} 1',
                           f'{LATENCY}_sum{{model_name="m"}} 1'], False, 2),
    ("not-a-histogram-sample", [f'{LATENCY}{{model_name="m"}} 1'], False, 1),
    ("counter-as-histogram", [f"# TYPE {COUNT} histogram",
                              f'{COUNT}_bucket{{model_name="m",status="OK",le="+Inf"}} 1'],
     False, 1),
    ("too-many-buckets", histogram_lines(
        "m", limits=[str(i) for i in range(MAX_BUCKETS + 1)] + ["+Inf"],
        counts=["1"] * (MAX_BUCKETS + 2), count_text="1", sum_text="1"), False,
     MAX_BUCKETS + 4),
    ("passthrough-gauge-nan", ["# TYPE :tensorflow:core:g gauge", ":tensorflow:core:g NaN"],
     True, 1),
    ("passthrough-gauge-inf", ["# TYPE :tensorflow:core:g gauge", ":tensorflow:core:g -Inf"],
     True, 1),
    ("passthrough-counter-negative", ["# TYPE :tensorflow:core:c counter",
                                      ":tensorflow:core:c -1"], True, 1),
    ("passthrough-reserved-label", ["# TYPE :tensorflow:core:g gauge",
                                    ':tensorflow:core:g{__name__="x"} 1'], True, 1),
    ("passthrough-duplicate", ["# TYPE :tensorflow:core:g gauge", ':tensorflow:core:g{a="1"} 1',
                               ':tensorflow:core:g{a="1"} 2'], True, 1),
    ("passthrough-bad-histogram", ["# TYPE :tensorflow:core:hist histogram"] + [
        line.replace(LATENCY, ":tensorflow:core:hist")
        for line in histogram_lines("m", limits=("abc", "18", "+Inf"))], True, 5),
    ("passthrough-le-label-twice", ["# TYPE :tensorflow:core:hist histogram",
                                    ':tensorflow:core:hist_bucket{le="1",le="+Inf"} 1',
                                    ':tensorflow:core:hist_sum{le="1"} 1',
                                    ':tensorflow:core:hist_count{le="1"} 1'], True, 3),
    ("passthrough-name-clash", ["# TYPE :tensorflow:core:a:b counter",
                                ":tensorflow:core:a:b 1",
                                "# TYPE :tensorflow:core:a_b_total gauge",
                                ":tensorflow:core:a_b_total 1"], True, 1),
]


@pytest.mark.parametrize("lines, passthrough, invalid", [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_samples_are_dropped_and_counted_the_rest_exported(lines, passthrough, invalid,
                                                                   promtool):
    native, drops = collector(passthrough=passthrough)
    metrics = native.convert(page_of(lines, count_line("fine"), histogram_lines("fine")))
    samples = parsed_samples(metrics)
    assert value(samples, "tfserving_requests_total", model="fine", status="OK") == 1
    assert value(samples, "tfserving_request_duration_seconds_count", model="fine",
                 api="predict", entrypoint="rest") == 3
    assert not [key for key in samples if ("model", "m") in key[1]]
    assert drops.value("native_invalid") == invalid
    assert drops.value("native_series") == 0
    assert native.last_problem  # described, for the log
    for accept in ("text/plain", OPENMETRICS):
        result = promtool_check_metrics(exposition(metrics, accept), promtool)
        assert result.returncode in (0, 3), result.stdout + result.stderr  # 3: lint only
        assert "error" not in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("lines, expected, invalid", [
    # The same TF series twice: the first is kept.
    ([count_line("m", value="3"), count_line("m", value="4")], 3, 1),
    # The same TF series with its labels in another order: the same series.
    ([count_line("m", value="3"), f'{COUNT}{{status="OK",model_name="m"}} 4'], 3, 1),
    # Two TF series that map to one exported series (a label the bridge drops): summed.
    ([count_line("m", value="3"), count_line("m", value="4", extra=',signature="s"')], 7, 0),
    ([count_line("m", value="3"), count_line("m", value="4", extra=',signature="s"'),
      count_line("m", value="5", extra=',signature="s"')], 7, 1),
], ids=["twice", "reordered", "summed", "summed-then-twice"])
def test_duplicate_counters(lines, expected, invalid):
    native, drops = collector()
    samples = parsed_samples(native.convert(page_of(lines)))
    assert value(samples, "tfserving_requests_total", model="m", status="OK") == expected
    assert drops.value("native_invalid") == invalid


def test_predict_and_Predict_runtime_latency_are_summed_not_duplicated():
    # runtime_latency has no entrypoint label: api_label() maps both spellings to "predict".
    native, drops = collector()
    page = page_of(histogram_lines("m", name=RUNTIME, api="Predict", third="TF1"),
                   histogram_lines("m", name=RUNTIME, api="predict", third="TF1",
                                   counts=("2", "2", "5"), count_text="5", sum_text="100"))
    samples = parsed_samples(native.convert(page))
    labels = {"model": "m", "api": "predict", "runtime": "TF1"}
    assert value(samples, "tfserving_runtime_duration_seconds_count", **labels) == 8
    assert value(samples, "tfserving_runtime_duration_seconds_bucket", le="1e-05", **labels) == 3
    assert value(samples, "tfserving_runtime_duration_seconds_sum", **labels) == \
        pytest.approx(145e-6)
    assert drops.value("native_invalid") == 0


@pytest.mark.parametrize("second, invalid", [
    (histogram_lines("m", limits=("10", "32.4", "+Inf")), 5),  # other limits: cannot be summed
    (histogram_lines("m"), 5),                                  # the same series twice
], ids=["other-buckets", "twice"])
def test_histograms_that_cannot_be_summed_keep_the_first(second, invalid):
    native, drops = collector()
    samples = parsed_samples(native.convert(page_of(histogram_lines("m"), second)))
    assert value(samples, "tfserving_request_duration_seconds_count", model="m",
                 api="predict", entrypoint="rest") == 3
    assert drops.value("native_invalid") == invalid


def test_model_paths_that_map_to_one_version_are_summed():
    native, drops = collector()
    page = page_of(attempt_line("/models/m/00000007"), attempt_line("/models/m/7/"),
                   attempt_line("/models/m/7", status="fail"))
    samples = parsed_samples(native.convert(page))
    assert value(samples, "tfserving_model_load_attempts_total", model="m", version="7",
                 status="success") == 2
    assert drops.value("native_invalid") == 0


@pytest.mark.parametrize("directory, version", [
    ("00000123", "123"), ("1", "1"), ("0", "0"),
    ("²", "²"), ("١٢٣", "١٢٣"), ("１２", "１２"), ("1" * 19, "1" * 19), ("1" * 20, "1" * 20),
    ("0" * 25, "0" * 25), ("12a", "12a"), ("", ""), ("+1", "+1"), ("1_000", "1_000"),
])
def test_only_ascii_digits_of_an_int64_are_a_version(directory, version):
    assert page_checks.version_label(directory) == version
    assert ModelPathMapper(dict)(f"/models/m/{directory}") == ("m", version) or directory == ""


@pytest.mark.parametrize("model_path", ["/models/m/²", "/models/m/١٢٣", "/models/m/" + "9" * 40])
def test_unicode_digits_in_model_path_are_exported_without_a_traceback(model_path, caplog):
    native, drops = collector()
    page = page_of(attempt_line(model_path), f'{LOAD_TIME}{{model_path="{model_path}"}} 10')
    with caplog.at_level(logging.WARNING):
        metrics = list(native.collect(FakeScrape(page.encode(), Deadline.after(10))))
    samples = parsed_samples(metrics)
    version = model_path.rsplit("/", 1)[1]
    assert value(samples, "tfserving_model_load_attempts_total", model="m", version=version,
                 status="success") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_le_abc_through_collect_is_counted_and_logged_once_not_a_traceback(caplog):
    native, drops = collector()
    page = page_of(histogram_lines("m", limits=("10", "abc", "+Inf")), histogram_lines("ok"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            samples = parsed_samples(list(native.collect(FakeScrape(page.encode(),
                                                                    Deadline.after(10)))))
    assert value(samples, "tfserving_request_duration_seconds_count", model="ok",
                 api="predict", entrypoint="rest") == 3
    assert drops.value("native_invalid") == 3 * 5
    assert [kind for kind, _ in drops.increments] == ["native_invalid"] * 3  # once a scrape
    assert "le='abc'" in native.last_problem
    warnings = [r for r in caplog.records if "invalid sample lines" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("page", [
    ':tensorflow:serving:request_count{model_name="m",status="OK"} 1_0\n',
    ':tensorflow:serving:request_count{model_name="m",status="OK"} ١\n',
    ':tensorflow:serving:request_count{model_name="m",status="OK"} infinity\n',
    'x{a="raw\nnewline"} 1\n:tensorflow:serving:request_count{model_name="m"} 1_0\n',
], ids=["underscore", "arabic-digit", "infinity", "line-by-line"])
def test_values_python_would_accept_are_not_numbers_on_the_page(page):
    with pytest.raises(PageError, match="is not a number|not a metric sample"):
        collector()[0].convert(page)


@pytest.mark.parametrize("body, error", [
    (page_of(count_line("模型🙂")).encode(), None),
    (page_of(count_line("m")).encode() + b'x{a="\xff"} 1\n', "not UTF-8"),
    (b"# TYPE \xff counter\n", "not UTF-8"),
], ids=["wide-characters", "invalid-utf8", "invalid-utf8-in-type"])
def test_a_bytes_page_is_decoded_a_slice_at_a_time(body, error):
    native, _ = collector()
    if error:
        with pytest.raises(PageError, match=error):
            native.convert(body)
        return
    samples = parsed_samples(native.convert(body))
    assert value(samples, "tfserving_requests_total", model="模型🙂", status="OK") == 1


def test_drops_are_counted_once_per_kind_per_scrape():
    native, drops = collector(max_models=1)
    page = page_of(count_line("a"), count_line("b"), count_line("c"),
                   count_line("a", status="X", value="NaN"),
                   histogram_lines("a", counts=("3", "2", "3")))
    for _ in range(2):
        native.convert(page)
    assert sorted(drops.increments) == [("native_invalid", 6), ("native_invalid", 6),
                                        ("native_series", 2), ("native_series", 2)]


HOSTILE = page_of(
    count_line("a", value="NaN"), count_line("a"), count_line("a"), count_line("b", value="-2"),
    histogram_lines("a"), histogram_lines("a", api="Predict", third="GRPC"),
    histogram_lines("b", limits=("abc", "18", "+Inf")), histogram_lines("c", count_text="9"),
    histogram_lines("d", counts=("5", "1", "2")), histogram_lines("e", sum_text="+Inf"),
    histogram_lines("f", name=RUNTIME, api="Predict", third="TF1"),
    histogram_lines("f", name=RUNTIME, api="predict", third="TF1"),
    attempt_line("/models/a/²"), attempt_line("/models/a/00000001"),
    [f'{QUEUING}_bucket{{thread_pool_name="p",le="{limit}"}} {index}'
     for index, limit in enumerate(E33 + ["+Inf"])],
    f'{QUEUING}_sum{{thread_pool_name="p"}} 1.27482e+06',
    f'{QUEUING}_count{{thread_pool_name="p"}} 33',
    ["# TYPE :tensorflow:core:graph_runs counter", ":tensorflow:core:graph_runs{} 7",
     "# TYPE :tensorflow:core:g gauge", ':tensorflow:core:g{a="1"} NaN',
     ':tensorflow:core:g{a="2"} 2', "# TYPE :tensorflow:core:hist histogram",
     ':tensorflow:core:hist_bucket{le="1"} 1', ':tensorflow:core:hist_bucket{le="+Inf"} 2',
     ':tensorflow:core:hist_sum{} 3', ':tensorflow:core:hist_count{} 2'])


@pytest.mark.parametrize("passthrough", [False, True])
@pytest.mark.parametrize("accept", ["text/plain", OPENMETRICS])
def test_the_whole_output_of_a_hostile_page_is_valid(passthrough, accept, promtool):
    native, drops = collector(passthrough=passthrough)
    metrics = native.convert(HOSTILE)
    text = exposition(metrics, accept)
    families = list(parse_openmetrics(text) if accept == OPENMETRICS else parse_text(text))
    assert families
    result = promtool_check_metrics(text, promtool)
    if accept == OPENMETRICS:
        # promtool reads the text format: an OpenMetrics counter's HELP names the family
        # without _total, which it reports as "no help text" (a lint finding, exit 3), as it
        # does for the exporter's own counters. Anything else would be an error.
        findings = (result.stdout + result.stderr).strip().splitlines()
        assert result.returncode in (0, 3), findings
        assert all(line.endswith("_total no help text") for line in findings), findings
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    samples = parsed_samples(metrics)
    assert value(samples, "tfserving_requests_total", model="a", status="OK") == 1
    assert value(samples, "tfserving_request_duration_seconds_count", model="a",
                 api="predict", entrypoint="grpc") == 3
    assert value(samples, "tfserving_runtime_duration_seconds_count", model="f",
                 api="predict", runtime="TF1") == 6
    assert value(samples, "tfserving_batch_queuing_duration_seconds_count",
                 thread_pool="p") == 33
    assert value(samples, "tfserving_model_load_attempts_total", model="a", version="²",
                 status="success") == 1
    assert drops.value("native_invalid") == 2 + 1 + 4 * 5 + (1 if passthrough else 0)


def test_the_bucket_limit_texts_stay_as_before():
    assert [seconds_text(limit) for limit in ("10", "32.4", "1.27482e+06", "+Inf")] == \
        ["1e-05", "3.24e-05", "1.27482", "+Inf"]
    with pytest.raises(ValueError):
        seconds_text("abc")


# ---------------------------------------------------------------------------------------------
# 4. The property: whatever the page is made of, the output parses as OpenMetrics.

PIECES = st.sampled_from([
    f"# TYPE {COUNT} counter", f"# TYPE {LATENCY} histogram", f"# TYPE {RUNTIME} histogram",
    f"# TYPE {ATTEMPTS} counter", f"# TYPE {LOAD_TIME} counter",
    "# TYPE :tensorflow:core:c counter", "# TYPE :tensorflow:core:g gauge",
    "# TYPE :tensorflow:core:hist histogram", "# TYPE :tensorflow:core:c_total gauge",
    count_line("a"), count_line("b", value="5"), count_line("a", value="NaN"),
    count_line("a", value="-1"), count_line("a", value="+Inf"), count_line("c", status="X"),
    count_line("a", extra=',sig="s"'), f'{COUNT}{{status="OK",model_name="a"}} 2',
    *histogram_lines("a"), *histogram_lines("a", api="Predict", third="GRPC"),
    *histogram_lines("b", limits=("10", "abc", "+Inf")),
    *histogram_lines("b", counts=("3", "1", "2")), *histogram_lines("c", count_text="7"),
    *histogram_lines("d", name=RUNTIME, api="Predict", third="TF1"),
    *histogram_lines("d", name=RUNTIME, api="predict", third="TF1", limits=("10", "+Inf"),
                     counts=("1", "1"), count_text="1"),
    f'{LATENCY}_bucket{{model_name="a",API="predict",entrypoint="REST",le="1e999"}} 1',
    f'{LATENCY}_sum{{model_name="a",API="predict",entrypoint="REST"}} NaN',
    attempt_line("/models/a/1"), attempt_line("/models/a/²"), attempt_line("/models/a/١"),
    attempt_line("/models/b/00000002", value="NaN"),
    f'{LOAD_TIME}{{model_path="/models/a/1"}} 12', f'{LOAD_TIME}{{model_path="/models/a/1"}} -4',
    ":tensorflow:core:c 3", ":tensorflow:core:c NaN", ":tensorflow:core:c_total 1",
    ':tensorflow:core:g{a="1"} 1', ':tensorflow:core:g{a="1"} +Inf',
    ':tensorflow:core:g{__a="1"} 1',
    ':tensorflow:core:hist_bucket{le="1"} 1', ':tensorflow:core:hist_bucket{le="+Inf"} 2',
    ':tensorflow:core:hist_bucket{le="x"} 2', ":tensorflow:core:hist_sum{} 3",
    ":tensorflow:core:hist_count{} 2", ":tensorflow:core:hist_sum{} -3",
    count_line('q\\"uote\nnewline'), count_line("x" * (MAX_LABEL_TEXT + 1)),
])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PIECES, max_size=60), st.booleans(), st.integers(0, 30), st.integers(0, 4),
       st.integers(0, 20))
def test_any_page_of_valid_and_invalid_pieces_gives_valid_openmetrics(pieces, passthrough,
                                                                      max_series, max_models,
                                                                      max_passthrough):
    native, drops = collector(passthrough=passthrough, max_series=max_series,
                              max_models=max_models, known_models=lambda: ["b"],
                              max_passthrough_series=max_passthrough)
    try:
        metrics = native.convert("\n".join(pieces) + "\n")
    except PageError:
        return
    samples = parsed_samples(metrics)  # OpenMetrics and text both parse (no duplicates)
    bridged = [key for key in samples if key[0].startswith("tfserving_")]
    assert len(bridged) <= max_series
    assert len(samples) - len(bridged) <= max_passthrough
    models = {dict(key[1]).get("model") for key in bridged} - {None}
    assert len(models - {"b"}) <= max(max_models - ("b" in models), 0)
